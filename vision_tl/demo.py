"""The main job: fastai lesson 1 (cats vs dogs) end to end with the public API.

Offline by default: a synthetic, pets-like set named like Oxford-IIIT Pet (``images/Breed_N.jpg``,
capitalised breed = cat) is written into the output folder, a small network is fine-tuned on it,
the error rate is printed, the learner is exported, loaded back and asked for a few predictions,
and three plots are written (loss curve, confusion matrix, top losses). Pretrained weights are used
when a cached copy exists or the hub answers; otherwise the demo says so and starts from random
initialisation. ``real=True`` runs fastai's recipe on the real Oxford-IIIT Pet set with an
ImageNet-pretrained resnet34 (downloads both).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

_MARKER = ".vision_tl_demo"  # marks a folder the demo created, so a rerun may replace its files
_OFFLINE_ARCH, _OFFLINE_SIZE = "resnet18", 64
# fastai's resnet34 is torchvision's ImageNet checkpoint; timm serves the same weights under this tag
_REAL_ARCH, _REAL_SIZE = "resnet34.tv_in1k", 224


def is_cat(fname: str) -> bool:
    """Oxford-IIIT Pet's rule: cat breeds are capitalised (``Bengal_12.jpg``), dog breeds are not."""
    return fname[0].isupper()


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _prepare_out(out: Path) -> Path:
    """Create ``out``; refuse a non-empty folder the demo did not create (never clobber user files)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"demo output {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise FileExistsError(
            f"demo output folder {str(out)!r} is not empty and was not made by the demo; "
            "choose another folder with --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("created by vision_tl.demo; a rerun replaces the files here\n")
    return out.resolve()  # absolute: learn.export resolves relative names against the data folder


def synthetic_pets(root: Path, n_images: int, seed: int) -> Path:
    """The offline data set under ``root``, generated once per (n_images, seed) and then reused."""
    from vision_tl import make_synthetic_pets

    path = root / f"synthetic_pets_n{n_images}_seed{seed}"
    if not (path / "done.json").exists():
        make_synthetic_pets(path, n_images=n_images, seed=seed)
        (path / "done.json").write_text(json.dumps({"n_images": n_images, "seed": seed}))
    return path


def _make_learner(dls: Any, arch: str, require_pretrained: bool) -> tuple[Any, bool]:
    """``vision_learner`` with pretrained weights when reachable, else random init (said aloud)."""
    from vision_tl import DownloadError, PretrainedWeightsError, error_rate, find_pretrained, vision_learner

    pretrained, weights, why = find_pretrained(arch)
    if pretrained:
        try:
            learn = vision_learner(dls, arch, metrics=error_rate, pretrained=weights is None, weights=weights)
            _say(f"using ImageNet-pretrained {arch} ({why})")
            return learn, True
        except (PretrainedWeightsError, DownloadError, OSError) as e:
            why = f"loading pretrained weights failed: {e}"
    if require_pretrained:
        raise RuntimeError(f"--real needs ImageNet-pretrained {arch} weights: {why}")
    _say(f"NOTE: training {arch} from RANDOM INITIALISATION ({why}). "
         "With pretrained weights reachable the demo uses them (transfer learning).")
    return vision_learner(dls, arch, metrics=error_rate, pretrained=False), False


def _loss_history() -> Any:
    """A callback that keeps every training loss and each epoch's validation loss across the two
    fits of ``fine_tune`` (the Recorder starts afresh with each fit)."""
    from vision_tl import Callback

    class LossHistory(Callback):
        def __init__(self) -> None:
            self.train: list[float] = []
            self.valid: list[tuple[int, float]] = []
            self.fit_starts: list[int] = []

        def before_fit(self) -> None:
            self.fit_starts.append(len(self.train))

        def after_batch(self) -> None:
            if self.learn.training:
                self.train.append(float(self.learn.loss))

        def after_epoch(self) -> None:
            if self.learn.val_results:
                self.valid.append((len(self.train), float(self.learn.val_results[0])))

    return LossHistory()


def _plot_losses(plt: Any, hist: Any) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(1, len(hist.train) + 1), hist.train, label="train (per batch)", alpha=0.8)
    if hist.valid:
        ax.plot(*zip(*hist.valid), "o-", label="valid (per epoch)")
    for i, start in enumerate(hist.fit_starts[1:], 1):
        ax.axvline(start + 0.5, color="grey", linestyle="--", label="unfreeze" if i == 1 else None)
    ax.set(xlabel="batch", ylabel="loss", yscale="log", title="fine_tune: head only, then all layers")
    ax.legend()
    return fig


def _plots(interp: Any, hist: Any, out: Path) -> list[Path]:
    """Loss curve, confusion matrix and top losses as PNGs in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    interp = copy.copy(interp)
    interp.vocab = [_species(v) for v in interp.vocab]  # the plots say cat/dog, as the console does, not True/False
    files = [_save(plt, _plot_losses(plt, hist), out / "loss_curve.png")]
    files.append(_save(plt, interp.plot_confusion_matrix(return_fig=True), out / "confusion_matrix.png"))
    files.append(_save(plt, interp.plot_top_losses(9, return_fig=True), out / "top_losses.png"))
    return files


def _save(plt: Any, fig: Any, fname: Path) -> Path:
    fig = getattr(fig, "figure", fig) if fig is not None else plt.gcf()  # an Axes or a Figure
    fig.savefig(fname, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return fname


def _species(label: str) -> str:
    return "cat" if label == "True" else "dog"


def _examples(items: list[Path], n: int = 4) -> list[Path]:
    """A few validation images, cats and dogs alike (the list is sorted: cats first)."""
    cats = [f for f in items if is_cat(Path(f).name)]
    dogs = [f for f in items if not is_cat(Path(f).name)]
    return (cats[: n // 2] + dogs[: n - n // 2]) if cats and dogs else list(items[:n])


def _pets_dls(out: Path, real: bool, n_images: int, seed: int, size: int, bs: int) -> tuple[Path, Any]:
    """``(data folder, DataLoaders)``: Oxford-IIIT Pet (``real``) or the offline synthetic set, cats vs dogs."""
    from vision_tl import ImageDataLoaders, Resize, URLs, get_image_files, untar_data

    if real:
        _say(f"Oxford-IIIT Pet from {URLs.PETS} (downloaded once, then read from the cache)")
        path = untar_data(URLs.PETS)
    else:
        path = synthetic_pets(out / "data", n_images, seed)
        _say(f"offline: synthetic pets-like images in {path / 'images'} (Breed_N.jpg, cat = capitalised)")
    files = get_image_files(path / "images")
    return path, ImageDataLoaders.from_name_func(
        path, files, valid_pct=0.2, seed=seed, label_func=is_cat, item_tfms=Resize(size), bs=bs,
        num_workers=None if real else 0,  # real photos: the device's default (none on a small CPU)
    )


def run_demo(
    out: Path = Path("demo_out"),
    real: bool = False,
    arch: str | None = None,
    epochs: int = 1,
    size: int | None = None,
    n_images: int = 400,
    bs: int | None = None,
    seed: int = 42,
) -> dict:
    """Run lesson 1 (cats vs dogs) end to end and return what it measured.

    Returns ``{"error_rate", "files", "pretrained", "arch", "size", "predictions", "seconds", ...}``;
    ``files`` are the exported model and the plots written into ``out``.
    """
    from vision_tl import ClassificationInterpretation, error_rate, load_learner

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not real and n_images < 20:
        raise ValueError(f"n_images must be >= 20 for a train/valid split, got {n_images}")
    t0 = time.perf_counter()
    out = _prepare_out(Path(out))
    arch = arch or (_REAL_ARCH if real else _OFFLINE_ARCH)
    size = size or (_REAL_SIZE if real else _OFFLINE_SIZE)
    bs = bs or (64 if real else 32)  # --real: fastai's default batch size, as in the lesson
    path, dls = _pets_dls(out, real, n_images, seed, size, bs)
    _say(f"{len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, classes {dls.vocab}")
    import torch

    torch.manual_seed(seed)  # the new head's initial weights and dropout: the same run every time on a CPU
    learn, pretrained = _make_learner(dls, arch, require_pretrained=real)
    hist = _loss_history()
    learn.fine_tune(epochs, cbs=[hist])
    interp = ClassificationInterpretation.from_learner(learn)  # one validation pass for the error rate and plots
    err = float(error_rate(interp.probs, interp.targets))
    _say(f"error_rate: {err:.4f}  (accuracy {1 - err:.1%} on {len(dls.valid_ds)} validation images)")
    model_file = learn.export(out / "pets_classifier.vtl", verbose=False)  # the last line says where
    predictor = load_learner(model_file)
    predictions = []
    for f in _examples(dls.valid_ds.items):
        label, idx, probs = predictor.predict(f)
        said, truth = _species(label), _species(str(is_cat(Path(f).name)))
        predictions.append({"file": Path(f).name, "label": label, "prob": float(probs[idx]), "truth": truth})
        _say(f"predict {Path(f).name}: {said} (p={float(probs[idx]):.3f}; it is a {truth})")
    plots = _plots(interp, hist, out)
    seconds = time.perf_counter() - t0
    _say(f"wrote {model_file} and {', '.join(p.name for p in plots)} in {out} ({seconds:.0f} s)")
    return {
        "error_rate": err, "files": [Path(model_file), *plots], "pretrained": pretrained,
        "arch": arch, "size": size, "data": path, "n_train": len(dls.train_ds),
        "n_valid": len(dls.valid_ds), "predictions": predictions, "seconds": seconds,
    }
