"""Where ``fine_tune(1)`` spends its time: torch.profiler's CPU table of one run (after a warm-up).

Same recipe and data as ``fit_overhead.py`` (resnet18 from torchvision, random init, 64 px, bs 32,
256 synthetic images of 375-500 px). Prints the top operators by self CPU time, and the share of
the main process spent outside the model (data loading, uint8 -> float, normalization).

    python benchmarks/profile_fit.py --workers 0 --rows 25
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fit_overhead import arch_of, make_dls, make_folder
from torch.profiler import ProfilerActivity, profile, record_function


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--workers", default="0", help="an int, or auto (the default for the device)")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args(argv)
    from vision_tl import error_rate, vision_learner

    with tempfile.TemporaryDirectory() as tmp:
        path = make_folder(args.dir or Path(tmp) / "imgs", 128, 2, 375, 500)
        for warm in (True, False):
            learn = vision_learner(make_dls(path, args), arch_of(args.arch), pretrained=False, metrics=error_rate)
            learn.remove_cb(learn.progress)
            if warm:
                learn.fine_tune(1)
                continue
            with profile(activities=[ProfilerActivity.CPU]) as prof, record_function("fine_tune"):
                learn.fine_tune(1)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
