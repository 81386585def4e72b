"""The multi-label side of ``vision-tl predict`` and ``evaluate`` (a model exported with ``multi_label``).

``cli.py`` calls these when the loaded model is multi-label: predictions are label sets (every class
above the model's threshold) with each class's probability; evaluation reports per-class
precision/recall/F1, the micro/macro/samples averages and one 2x2 confusion matrix per class.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from vision_tl import MultiLabelInterpretation

from .cli_bad import good_images, report_skipped, warn_trained_on, with_error_rows
from .cli_data import CLIError, labelled_files, parse_label_from
from .cli_output import report_evaluation, write_csv


def predict_multi(args: argparse.Namespace, pred: Any, all_files: list[Path], probs: Any,
                  errors: dict[str, str]) -> int:
    """Multi-label predictions: the labels above the model's threshold, and every class's probability
    (``errors``: the files ``--skip-bad`` left out, which get an error instead)."""
    files = [f for f in all_files if str(f) not in errors]
    rows = [{"file": str(f), "labels": labs, "probs": {c: round(p, 6) for c, p in zip(pred.vocab, row)}}
            for f, labs, row in zip(files, pred.decode(probs), probs.tolist())]
    if args.skip_bad:
        rows = with_error_rows(rows, all_files, errors, {"labels": None, "probs": {}})
    extra = ["error"] if args.skip_bad else []
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\t".join(["file", "labels", *pred.vocab, *extra]))
        for r in rows:
            probs_cells = [f"{r['probs'][c]:.4f}" for c in pred.vocab] if r["probs"] else ["-"] * pred.c
            labels = " ".join(r["labels"] or []) or "-"
            print("\t".join([r["file"], labels, *probs_cells, *([r["error"]] if extra else [])]))
    if args.csv is not None:
        write_csv(args.csv, ["file", "labels", *pred.vocab, *extra],
                  ([r["file"], " ".join(r["labels"] or []), *(r["probs"].get(c, "") for c in pred.vocab),
                    *([r["error"]] if extra else [])] for r in rows))
        print(f"wrote {len(rows)} predictions to {args.csv}", file=sys.stderr)
    report_skipped(errors, "their rows hold the error instead of a prediction")
    return 0


def evaluate_multi(args: argparse.Namespace, pred: Any) -> int:
    """``evaluate`` for a multi-label model: per-class precision/recall/F1, the averages, a 2x2 matrix per class."""
    if parse_label_from(args.label_from)[0] != "csv":
        raise CLIError("a multi-label model is evaluated on a CSV of label lists: pass --label-from csv FILE")
    all_files, label_sets = labelled_files(args.data, args.label_from, args.label_delim)
    unknown = sorted({lab for labs in label_sets for lab in labs} - set(pred.vocab))
    if unknown:
        raise CLIError(f"labels {unknown[:5]!r} in {str(args.data)!r} are not classes of the model {pred.vocab!r}")
    files, errors = good_images(all_files, args.skip_bad)
    label_sets = [labs for f, labs in zip(all_files, label_sets) if str(f) not in errors]
    report_skipped(errors, "left out of the metrics")
    warn_trained_on(args.model, files)
    targets = torch.zeros(len(files), pred.c)
    for i, labs in enumerate(label_sets):
        targets[i, [pred.vocab.index(lab) for lab in labs]] = 1.0
    probs = pred.predict_batch(files, bs=args.bs, num_workers=args.num_workers, progress=sys.stderr.isatty())
    interp = MultiLabelInterpretation(pred.vocab, probs, targets, pred.thresh, items=files)
    result = {"n_images": len(files), "threshold": pred.thresh, "accuracy_multi": interp.accuracy(),
              **{f"{avg}_avg": s for avg, s in interp.averages().items()},
              "per_class": interp.classification_report(),
              "confusion_matrix": interp.confusion_matrix().tolist(), "vocab": pred.vocab}
    summary = f"{len(files)} images  accuracy_multi {result['accuracy_multi']:.4f}  threshold {pred.thresh}"
    return report_evaluation(args, interp, result, summary, "confusion matrices (one per class)")
