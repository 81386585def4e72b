"""``vision-tl doctor``: check a labelled image folder (read-only), or apply / undo a decisions file.

The data and labelling options are ``train``'s (``--label-from``, ``--train``/``--valid``,
``--valid-pct``, ``--seed``), read by ``cli_data`` exactly as ``train`` reads them, so the doctor sees
the files, labels and split that training would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_data import SPLIT_FOLDERS, CLIError, dataloaders_from_args, labelled_files, parse_label_from

__all__ = ["add_parser", "cmd_doctor"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``doctor`` on the ``vision-tl`` subparsers."""
    p = sub.add_parser(
        "doctor", help="find unreadable files, duplicates, train/valid leaks, suspect labels, odd images",
        description="Check a labelled image folder without changing it: unreadable files, exact and near "
        "duplicates (leaks across train/valid, copies with different labels), suspect labels (confident "
        "learning on a pretrained model's embeddings), class balance and odd images. With --apply, act on "
        "a decisions CSV (deleted files go to a quarantine folder, never removed); --undo JOURNAL restores.",
        epilog="examples:\n  vision-tl doctor birds/ --html report.html --decisions decisions.csv\n"
        "  vision-tl doctor birds/ --apply decisions.csv\n  vision-tl doctor --undo birds.quarantine/.../journal.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, nargs="?", metavar="DATA", help="folder of images")
    p.add_argument("--label-from", nargs="+", default=None, metavar="HOW",
                   help="as for train: 'folder' (the default), 'name-re PATTERN' or 'csv FILE'")
    p.add_argument("--label-delim", default=" ", metavar="DELIM", help="multi-label CSV cells' separator")
    p.add_argument("--multi-label", action="store_true", help="labels are sets (CSV cells split on --label-delim)")
    p.add_argument("--valid-pct", type=float, default=0.2, help="random validation share without split folders "
                   "(default: %(default)s)")
    p.add_argument("--train", metavar="NAME", help="the training subfolder (default: found among "
                   + ", ".join(f"{t}/+{v}/" for t, v in SPLIT_FOLDERS) + ")")
    p.add_argument("--valid", metavar="NAME", help="the validation subfolder (with --train)")
    p.add_argument("--seed", type=int, default=42, help="seed of the split and the folds (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="REPORT.json", help="write the full report as JSON")
    p.add_argument("--html", type=Path, metavar="REPORT.html", help="write a self-contained HTML report")
    p.add_argument("--decisions", type=Path, metavar="CSV", help="write a decisions.csv draft to edit and --apply")
    p.add_argument("--arch", default="resnet18", help="the model whose embeddings judge the labels (default: %(default)s)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="use ImageNet weights (default: on)")
    p.add_argument("--weights", type=Path, help="local pretrained weights file for the model")
    p.add_argument("--weights-map", metavar="MAP", help="rename the --weights file's keys (as for train)")
    p.add_argument("--size", type=int, default=64, help="pixels the images are checked at (default: %(default)s)")
    p.add_argument("--near-distance", type=int, default=6,
                   help="near duplicates: perceptual hashes at most this many bits apart of 64 (default: %(default)s)")
    p.add_argument("--no-labels", action="store_true", help="skip the suspect-label check (no model)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding processes (default: one per core)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N for the model")
    p.add_argument("--apply", type=Path, metavar="DECISIONS.csv",
                   help="act on rows path,action (keep, delete or a class name): no checks are run")
    p.add_argument("--quarantine", type=Path, metavar="DIR", help="where --apply moves deleted files "
                   "(default: DATA.quarantine next to DATA)")
    p.add_argument("--undo", type=Path, metavar="JOURNAL", help="restore what an --apply run changed")
    p.add_argument("--overwrite", action="store_true", help="replace --json/--html/--decisions files")
    return p


def _check_new(path: Path | None, overwrite: bool, flag: str) -> None:
    if path is not None and path.exists() and not overwrite:
        raise CLIError(f"{flag} {str(path)!r} already exists (pass --overwrite to replace it)")


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run ``vision-tl doctor``."""
    from vision_tl.doctor.apply import apply_decisions, undo_decisions

    if args.undo is not None:
        done = undo_decisions(args.undo)
        print(f"undone: {done['moved_back']} file(s) moved back, {done['restored']} label file(s) restored, "
              f"{done['removed_folders']} folder(s) removed")
        return 0
    if args.data is None:
        raise CLIError("the following arguments are required: DATA (or --undo JOURNAL)")
    args.label_from = args.label_from or ["folder"]
    kind, arg = parse_label_from(args.label_from)
    if args.apply is not None:
        return _apply(args, kind, arg, apply_decisions)
    for path, flag in ((args.json, "--json"), (args.html, "--html"), (args.decisions, "--decisions")):
        _check_new(path, args.overwrite, flag)
    report = _diagnose(args)
    print(report.summary())
    for r in report["label_issues"][:5]:
        print(f"  suspect: {r['path']}  given {r['given']}, looks like {r['suggested']} (score {r['score']:.3f})")
    for path, save in ((args.json, report.save_json), (args.html, report.save_html),
                       (args.decisions, report.save_decisions)):
        if path is not None:
            print(f"wrote {save(path)}")
    return 0


def _diagnose(args: argparse.Namespace):
    from vision_tl import parse_weights_map
    from vision_tl.doctor.run import diagnose, files_of_dls

    if args.weights is not None and not args.weights.is_file():
        raise CLIError(f"--weights file not found: {str(args.weights)!r}")
    wmap = None
    if args.weights_map is not None:
        if args.weights is None:
            raise CLIError("--weights-map renames the keys of a --weights file: pass --weights FILE too")
        try:
            wmap = parse_weights_map(args.weights_map)
        except ValueError as e:
            raise CLIError(str(e)) from None
    ns = argparse.Namespace(**{**vars(args), "bs": 8, "num_workers": 0, "device": "cpu"})
    dls = dataloaders_from_args(ns)  # the files, labels and split `vision-tl train` would use
    files, labels, is_valid = files_of_dls(dls)
    return diagnose(files, labels, is_valid, root=args.data, arch=args.arch, pretrained=args.pretrained,
                    weights=args.weights, weights_map=wmap, size=args.size, near_distance=args.near_distance,
                    check_labels=not args.no_labels, multi_label=bool(dls.multi_label), seed=args.seed,
                    num_workers=args.num_workers, device=args.device, progress=sys.stderr.isatty())


def _apply(args: argparse.Namespace, kind: str, arg: str | None, apply_decisions) -> int:
    from vision_tl.doctor.decisions import DELETE, KEEP, read_decisions

    if kind == "name-re" and any(a not in (KEEP, DELETE) for _, a in read_decisions(args.apply)):
        raise CLIError("labels come from file names (--label-from name-re): relabelling would rename files; "
                       "only keep and delete can be applied")
    _, labels = labelled_files(args.data, args.label_from)
    classes = sorted({str(v) for v in labels})
    journal = apply_decisions(args.apply, args.data, label_csv=arg if kind == "csv" else None, classes=classes,
                              quarantine=args.quarantine)
    import json

    ops = json.loads(journal.read_text(encoding="utf-8"))["ops"]
    moved = sum(op["op"] == "move" for op in ops)
    rewritten = sum(op["op"] == "rewrite" for op in ops)
    print(f"applied {str(args.apply)!r}: {moved} file(s) moved, {rewritten} label file(s) rewritten")
    print(f"journal: {journal}\nundo with: vision-tl doctor --undo {journal}")
    return 0
