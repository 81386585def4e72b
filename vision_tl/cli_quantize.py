"""``vision-tl quantize MODEL --calib DIR``: add an int8 graph to an existing ``.vtl`` file.

The labelled images of DIR are split: half calibrate onnxruntime's static int8 quantization (at most
256), the others check int8 against fp32 (at most 1000). When int8 loses more than ``--max-drop``
accuracy points the command fails with the figures and the file is left as it was; otherwise the file
is rewritten atomically with the int8 graph and the measured drop (``vision-tl info`` shows it), and
``--precision int8`` on ``predict``/``evaluate`` (``load_learner(path, precision="int8")``) runs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli_data import CLIError, labelled_files, parse_label_from

__all__ = ["add_parser", "cmd_quantize"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``quantize`` on the ``vision-tl`` subcommands."""
    p = subparsers.add_parser(
        "quantize", help="add an int8 graph to a .vtl model, checked against fp32 on labelled images",
        description="Quantize a .vtl model to int8 (onnxruntime static QDQ, per-channel weights) and store the "
        "int8 graph in the file. DIR's labelled images are split: half calibrate (at most 256), the others check "
        "accuracy (at most 1000). Refused, and the file left as it was, when int8 loses more than --max-drop "
        "accuracy points.")
    p.add_argument("model", type=Path, help="an exported .vtl file (rewritten in place, atomically)")
    p.add_argument("--calib", dest="data", type=Path, required=True, metavar="DIR",
                   help="folder of labelled images the model was not trained on (e.g. its validation images)")
    p.add_argument("--label-from", nargs="+", default=["folder"], metavar="HOW",
                   help="how to label DIR's images: 'folder' (parent folder name, the default), 'name-re PATTERN', "
                   "'csv FILE' (as for evaluate)")
    p.add_argument("--label-delim", default=" ", metavar="DELIM",
                   help="multi-label: the separator of the labels in a CSV cell (default: a space)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="accuracy points int8 may lose against fp32 on the check images (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def cmd_quantize(args: argparse.Namespace) -> int:
    """Run ``vision-tl quantize``: calibrate, check, store (or refuse with the figures)."""
    from vision_tl.inference.int8 import quantize_vtl
    from vision_tl.inference.vtl import read_manifest

    multi = bool(read_manifest(args.model).get("multi_label"))  # checks the file before any image is read
    if multi and parse_label_from(args.label_from)[0] != "csv":
        raise CLIError("a multi-label model is calibrated on a CSV of label lists: pass --label-from csv FILE")
    files, labels = labelled_files(args.data, args.label_from, args.label_delim if multi else None)
    if len(files) < 2:
        raise CLIError(f"--calib {str(args.data)!r} has {len(files)} labelled image(s): int8 needs some to calibrate "
                       "and others to check accuracy on (a few hundred is best)")
    report = quantize_vtl(args.model, files, labels, max_drop=args.max_drop,
                          calibrated_on=f"{len(files)} images of {str(args.data)!r}")
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"int8 stored in {args.model}: {report.summary()}")
        print(f"use it with: vision-tl predict {args.model} IMAGES --precision int8")
    return 0
