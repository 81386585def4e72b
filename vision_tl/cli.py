"""The ``vision-tl`` command: train, predict, evaluate, lr-find, export-onnx, info, quantize and the demo.

Exit codes: 0 ok, 2 usage error (argparse), 1 runtime failure with a one-line cause on stderr
(a bad path, an unreadable image, a corrupt model file); ``--debug`` shows the traceback instead.
Output files (``--csv``, plots) are written whole or not at all (temporary sibling + rename). A file
name that is not valid UTF-8 is written to the CSV as its own bytes (so the CSV names the exact file)
and shown on the terminal with ``\\xNN`` escapes.
Nothing heavy is imported until a subcommand runs, so ``vision-tl --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import cli_card
from .cli_bad import good_images, report_skipped, warn_trained_on, with_error_rows
from .cli_data import (
    SPLIT_FOLDERS,
    CLIError,
    check_data_folder,
    check_split_images,
    dataloaders_from_args,
    expand_images,
    labelled_files,
    one_class_error,
    parse_label_from,
)
from .cli_doctor import add_parser as add_doctor_parser
from .cli_doctor import cmd_doctor
from .cli_messages import cli_warnings, one_line, quiet_broken_pipe, say
from .cli_output import report_evaluation, save_figure, write_csv
from .cli_quantize import add_parser as add_quantize_parser
from .cli_quantize import cmd_quantize
from .cli_serve import add_parser as add_serve_parser
from .cli_serve import cmd_serve
from .cli_track import add_train_args, finish, train_callbacks

PROG = "vision-tl"


# ---------------------------------------------------------------- argument parsing
def _label_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--label-from", nargs="+", default=["folder"], metavar="HOW",
        help="how to label images: 'folder' (parent folder name, the default), "
        "'name-re PATTERN' (first group of a regex on the file name, e.g. '^(.+)_\\d+\\.jpg$'), "
        "'csv FILE' (columns: file name, label; FILE relative to DATA)",
    )
    p.add_argument("--label-delim", default=" ", metavar="DELIM",
                   help="multi-label: the separator of the labels in a CSV cell (default: a space)")


def _train_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, nargs="?", metavar="DATA", help="folder of images")
    _label_args(p)
    p.add_argument("--arch", default="resnet34", help="timm model name (default: %(default)s)")
    p.add_argument("--size", type=int, default=224, help="image size in pixels (default: %(default)s)")
    p.add_argument("--bs", type=int, default=None,
                   help="batch size (default: from the data: up to 64, about 8 or more steps per epoch)")
    p.add_argument("--valid-pct", type=float, default=0.2,
                   help="fraction held out for validation when DATA has no train/ and valid/ folders (default: %(default)s)")
    p.add_argument("--train", metavar="NAME", help="the training subfolder of DATA (default: found among "
                   + ", ".join(f"{t}/+{v}/" for t, v in SPLIT_FOLDERS) + ")")
    p.add_argument("--valid", metavar="NAME", help="the validation subfolder of DATA (with --train)")
    p.add_argument("--seed", type=int, default=42, help="seed for the split and the augmentations (default: %(default)s)")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=True,
                   help="start from ImageNet weights (downloaded once, or --weights FILE) (default: on)")
    p.add_argument("--weights", type=Path, help="local pretrained weights file (.safetensors or .pth) for the body")
    p.add_argument("--weights-map", metavar="MAP",
                   help="rename the --weights file's keys: by-order (pair tensors in order and shape, reported), "
                        "a .json file of {regex: replacement}, or REGEX=REPLACEMENT,... pairs")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader worker processes (default: automatic)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--multi-label", action="store_true",
                   help="each image has a set of labels (--label-from csv, cells split on --label-delim): "
                   "sigmoid outputs, a 0.5 threshold, BCE loss")
    p.add_argument("--valid-col", metavar="COLUMN",
                   help="with --label-from csv: a true/false column choosing the validation rows (default: "
                   "the column is_valid when the CSV has one, else a random --valid-pct split)")
    _skip_bad_arg(p, "validation images that cannot be read (checked before the first batch; by default "
                  "they stop the run at once, all listed)")


def _skip_bad_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--skip-bad", action="store_true", help=f"leave out {what}")


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default=None,
                   help="what runs the model: onnxruntime (CPU; the graph is cached next to the model file), "
                   "torch, or auto = onnxruntime on the CPU when it works, else torch (default: "
                   "$VISION_TL_BACKEND, else auto)")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                   help="int8: the model's int8 graph in onnxruntime on the CPU (added by `vision-tl quantize`); "
                   "never chosen unless asked for (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vision-tl`` (imports nothing heavy)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Transfer learning for image classification, fastai-style: train a classifier on a "
        "folder of images, save it as one .vtl file, predict with it anywhere.",
        epilog="examples:\n"
        "  vision-tl train pets/images --label-from name-re '^(.+)_\\d+\\.jpg$' --epochs 3 --out pets.vtl\n"
        "  vision-tl predict pets.vtl photo.jpg more_photos/ '*.png' --top-k 3\n"
        "  vision-tl evaluate pets.vtl holdout/ --confusion-matrix cm.png\n"
        "  vision-tl demo --out demo_out\n\n"
        "exit codes: 0 ok, 1 failure (one-line cause on stderr), 2 usage error",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on failure")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="fine-tune a pretrained model on a folder of images, export a .vtl file",
                       description="Fine-tune a pretrained model (fastai's fine_tune) and export it as one .vtl file.")
    _train_data_args(p)
    p.add_argument("--epochs", type=int, default=3, help="epochs after the frozen epoch (default: %(default)s)")
    p.add_argument("--freeze-epochs", type=int, default=1, help="epochs with the body frozen (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="base learning rate (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("model.vtl"), help="the exported model (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_train_args(p)

    p = sub.add_parser("predict", help="predict the class of images with a .vtl model",
                       description="Predict images (files, folders, glob patterns) with an exported model.")
    p.add_argument("model", type=Path, help="an exported .vtl file")
    p.add_argument("images", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", type=int, default=1, help="show the K most likely classes (default: %(default)s)")
    p.add_argument("--csv", type=Path, help="also write the predictions to this CSV file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--bs", type=int, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding worker processes (default: automatic)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    _backend_arg(p)
    p.add_argument("--overwrite", action="store_true", help="replace --csv if it exists")
    _skip_bad_arg(p, "images that cannot be read and predict the others (the bad ones get an error column; "
                  "by default they stop the run at once, all listed)")

    p = sub.add_parser("evaluate", help="accuracy, error rate and confusion matrix on labelled images",
                       description="Evaluate an exported model on a labelled folder of images.")
    p.add_argument("model", type=Path, help="an exported .vtl file")
    p.add_argument("data", type=Path, nargs="?", metavar="DATA", help="folder of labelled images")
    _label_args(p)
    p.add_argument("--confusion-matrix", type=Path, metavar="PNG", help="write the confusion matrix plot here")
    p.add_argument("--bs", type=int, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding worker processes (default: automatic)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    _backend_arg(p)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace the PNG if it exists")
    _skip_bad_arg(p, "images that cannot be read (by default they stop the run at once, all listed)")

    p = sub.add_parser("lr-find", help="find a good learning rate (prints the suggestion, writes the plot)",
                       description="Run the learning-rate finder on DATA; print the suggestion and plot loss vs lr.")
    _train_data_args(p)
    p.add_argument("--plot", type=Path, default=Path("lr_find.png"), help="the plot (default: %(default)s)")
    p.add_argument("--num-it", type=int, default=100,
                   help="mini-batches to try at most; the run stops early once the loss diverges (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace --plot if it exists")

    p = sub.add_parser("export-onnx", help="convert a .vtl model to ONNX (normalization inside the graph)",
                       description="Convert an exported model to ONNX. The graph takes RGB images as NCHW "
                       "uint8 (0-255), or float32 in [0, 1] with --input-dtype float32, and outputs probabilities.")
    p.add_argument("model", type=Path, help="an exported .vtl file")
    p.add_argument("out", type=Path, help="the .onnx file to write")
    p.add_argument("--input-dtype", choices=["uint8", "float32"], default="uint8", help="(default: %(default)s)")
    p.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime's outputs with torch's")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")

    p = sub.add_parser("info", help="show what a .vtl file holds (architecture, classes, transforms, versions)")
    p.add_argument("model", type=Path, help="an exported .vtl file")
    p.add_argument("--json", action="store_true", help="print the whole manifest as JSON")

    p = sub.add_parser("demo", help="fastai lesson 1 end to end (offline synthetic pets, or --real)",
                       description="Train cats-vs-dogs end to end, export, reload, predict, and write plots.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: %(default)s)")
    p.add_argument("--real", action="store_true", help="download the real Oxford-IIIT Pet set and ImageNet weights")
    p.add_argument("--arch", default=None,
                   help="model (default: resnet18 offline, resnet34.tv_in1k (torchvision's weights) with --real)")
    p.add_argument("--epochs", type=int, default=1, help="(default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="image size (default: 64 offline, 224 with --real)")
    p.add_argument("--n-images", type=int, default=400, help="synthetic images (default: %(default)s)")
    p.add_argument("--bs", type=int, default=None, help="batch size (default: 32 offline, 64 with --real, as fastai)")
    p.add_argument("--seed", type=int, default=42, help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="also print what the demo measured as JSON")
    add_quantize_parser(sub)
    add_serve_parser(sub)
    add_doctor_parser(sub)
    cli_card.add_parser(sub)
    for sp in sub.choices.values():  # `vision-tl predict ... --debug` works as well as before the command
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback on failure")
        sp.set_defaults(subparser=sp)
    return parser


# ---------------------------------------------------------------- helpers
def _check_new(path: Path | None, overwrite: bool, flag: str) -> None:
    """Refuse to replace a user's file unless ``--overwrite`` was given (checked before any work)."""
    if path is not None and path.exists() and not overwrite:
        raise CLIError(f"{flag} {str(path)!r} already exists (pass --overwrite to replace it)")


def _positive(value: Any, flag: str) -> None:
    if value is not None and value < 1:
        raise CLIError(f"{flag} must be >= 1, got {value}")


def _learner(args: argparse.Namespace) -> Any:
    from vision_tl import (
        F1ScoreMulti,
        PretrainedWeightsError,
        accuracy,
        accuracy_multi,
        error_rate,
        parse_weights_map,
        vision_learner,
    )

    if args.weights is not None and not args.weights.is_file():
        raise CLIError(f"--weights file not found: {str(args.weights)!r}")
    weights_map = None
    if args.weights_map is not None:
        if args.weights is None:
            raise CLIError("--weights-map renames the keys of a --weights file: pass --weights FILE too")
        try:
            weights_map = parse_weights_map(args.weights_map)
        except ValueError as e:
            raise CLIError(str(e)) from None
    dls = dataloaders_from_args(args)
    check_split_images(dls, args.skip_bad)
    metrics = [accuracy_multi, F1ScoreMulti()] if dls.multi_label else [accuracy, error_rate]
    try:
        return vision_learner(dls, args.arch, metrics=metrics, pretrained=args.pretrained,
                              weights=args.weights, weights_map=weights_map)
    except PretrainedWeightsError as e:
        if getattr(e, "why", None) is None:
            raise
        raise CLIError(f"could not load pretrained weights for --arch {args.arch} ({e.why}); without network "
                       "access, pass a local file with --weights FILE (.safetensors or .pth), or --no-pretrained"
                       ) from None


# ---------------------------------------------------------------- subcommands
def cmd_train(args: argparse.Namespace) -> int:
    check_data_folder(args.data)  # in the order a user fixes things: the data first, then the output file
    _check_new(args.out, args.overwrite, "--out")
    cbs = train_callbacks(args)
    learn = _learner(args).add_cbs(cbs)
    learn.progress.progress, learn.progress.every = ("silent" if args.quiet else None), args.log_every
    if os.environ.get("RANK", "0") == "0" and not args.quiet:  # under torchrun, rank 0 speaks
        print(_plan(args, learn), flush=True)
    try:
        with learn.distrib_ctx():  # data-parallel when launched by torchrun, else a no-op
            learn.fine_tune(args.epochs, base_lr=args.lr, freeze_epochs=args.freeze_epochs)
            loss, acc, err = (float(v) for v in learn.validate()[:3])
        path = learn.export(args.out.resolve(), verbose=False)  # `saved PATH` below says where
    finally:
        finish(cbs)
    if path is None:  # a torchrun rank other than 0: rank 0 reports and writes
        return 0
    if learn.dls.multi_label:
        print(f"valid loss {loss:.4f}  accuracy_multi {acc:.4f}  f1 (macro) {err:.4f}")
    else:
        print(f"valid loss {loss:.4f}  accuracy {acc:.4f}  error rate {err:.4f}")
    print(f"saved {path}")
    return 0


def _plan(args: argparse.Namespace, learn: Any) -> str:
    """What ``train`` is about to do, printed before the first batch."""
    dls = learn.dls
    vocab = [str(v) for v in dls.vocab]
    n_train, n_valid = len(dls.train_ds), len(dls.valid_ds)
    split = getattr(args, "split", None)
    how = (f"folders {split[0]}/ and {split[1]}/" if split else getattr(args, "split_how", None) or
           f"a random {args.valid_pct:.0%} of the images, seed {args.seed}")
    bs = f"{dls.bs}" if args.bs is not None else f"{dls.bs} (from the data: {len(dls.train)} steps per epoch)"
    weights = (f"pretrained weights from {str(args.weights)!r}" if args.weights is not None
               else "pretrained" if args.pretrained else "randomly initialised (--no-pretrained)")
    shown = ", ".join(vocab[:8]) + (", ..." if len(vocab) > 8 else "")
    return "\n".join([
        f"training {args.arch} ({weights}) on {learn.device}",
        f"  data:   {str(args.data)!r}: {n_train + n_valid} images, {len(vocab)} classes ({shown})",
        f"  split:  {n_train} train / {n_valid} valid ({how})",
        f"  plan:   {args.freeze_epochs} frozen + {args.epochs} unfrozen epoch(s) at {args.size} px, batch size "
        f"{bs}, base lr {args.lr:g} -> {str(args.out)!r}",
    ])


def cmd_predict(args: argparse.Namespace) -> int:
    """``vision-tl predict``; under ``torchrun --nproc_per_node=N`` the processes share the files and rank 0
    writes the output, identical to a single-process run."""
    rank, distributed = launched_by_torchrun()
    try:
        return _predict(args, rank, distributed)
    finally:
        if distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _predict(args: argparse.Namespace, rank: int, distributed: bool) -> int:
    import json

    from vision_tl import PeerFailed, load_learner

    all_files = expand_images(args.images)
    _check_new(args.csv, args.overwrite, "--csv")
    device = args.device or (distributed and _local_cuda())
    pred = load_learner(args.model, device=device or None, backend=args.backend, precision=args.precision)
    if args.top_k > pred.c:
        raise CLIError(f"--top-k must be at most {pred.c} (the number of classes), got {args.top_k}")
    if distributed and not args.skip_bad:  # each rank reads its share and reports its own bad files, once
        files, errors = all_files, {}
    else:  # the same check on every rank gives the same list; rank 0 reports it
        files, errors = good_images(all_files, args.skip_bad)
    try:
        probs = pred.predict_batch(files, bs=args.bs, num_workers=args.num_workers,
                                   progress=sys.stderr.isatty() and rank == 0, distributed=distributed)
    except PeerFailed:  # another process could not read one of its files, and said which
        return 1
    if rank != 0:  # under torchrun, rank 0 prints and writes for all
        return 0
    if pred.multi_label:
        from .cli_multi import predict_multi

        return predict_multi(args, pred, all_files, probs, errors)
    values, idxs = probs.topk(args.top_k, dim=1)
    rows = [
        {"file": str(f), "label": pred.vocab[i[0]], "prob": round(v[0], 6),
         "top_k": [{"label": pred.vocab[j], "prob": round(p, 6)} for p, j in zip(v, i)]}
        for f, v, i in zip(files, values.tolist(), idxs.tolist())
    ]
    if args.skip_bad:  # every file gets its row, in the order given: the bad ones with their error
        rows = with_error_rows(rows, all_files, errors, {"label": None, "prob": None, "top_k": []})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("\t".join(_predictions_header(args.top_k) + (["error"] if args.skip_bad else [])))
        for r in rows:
            cells = [f"{t['label']}\t{t['prob']:.4f}" for t in r["top_k"]] or ["-\t-"] * args.top_k
            print("\t".join([_printable(r["file"]), *cells, *([r.get("error", "")] if args.skip_bad else [])]))
    if args.csv is not None:
        _write_predictions_csv(args.csv, rows, args.top_k, args.skip_bad)
        print(f"wrote {len(rows)} predictions to {args.csv}", file=sys.stderr)
    report_skipped(errors, "their rows hold the error instead of a prediction")
    return 0


def launched_by_torchrun() -> tuple[int, bool]:
    """``(rank, distributed)``: this process's rank and whether torchrun started several (``WORLD_SIZE`` > 1)."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return (int(rank), True) if world.isdigit() and int(world) > 1 and rank.isdigit() else (0, False)


def _local_cuda() -> str | None:
    """``cuda:LOCAL_RANK`` when CUDA is available (one GPU per process under torchrun), else None."""
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else None


def _predictions_header(k: int) -> list[str]:
    """``file, label, prob, label_2, prob_2, ...`` for the top ``k`` classes (the table and the CSV)."""
    return ["file", "label", "prob"] + [f"{c}_{n}" for n in range(2, k + 1) for c in ("label", "prob")]


def _write_predictions_csv(path: Path, rows: list[dict], k: int, error_col: bool = False) -> None:
    def cells(r: dict) -> list:
        top = [x for t in r["top_k"] for x in (t["label"], t["prob"])] or [""] * (2 * k)
        return [r["file"], *top, *([r.get("error", "")] if error_col else [])]

    write_csv(path, _predictions_header(k) + (["error"] if error_col else []), (cells(r) for r in rows))


def _printable(name: str) -> str:
    """A file name for the terminal: bytes that are not valid UTF-8 shown as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def cmd_evaluate(args: argparse.Namespace) -> int:

    import torch

    from vision_tl import ClassificationInterpretation, accuracy, load_learner

    if args.data is not None:
        check_data_folder(args.data)  # the data first, then the output file
    _check_new(args.confusion_matrix, args.overwrite, "--confusion-matrix")
    pred = load_learner(args.model, device=args.device, backend=args.backend, precision=args.precision)
    if pred.multi_label:
        from .cli_multi import evaluate_multi

        return evaluate_multi(args, pred)
    all_files, labels = labelled_files(args.data, args.label_from)
    unknown = sorted(set(labels) - set(pred.vocab))
    if unknown and parse_label_from(args.label_from)[0] == "folder" and len(set(labels)) == 1:
        raise one_class_error(args.data, labels[0], ", which is not a class of the model")
    if unknown:
        raise CLIError(f"labels {unknown[:5]!r} in {str(args.data)!r} are not classes of the model {pred.vocab!r}")
    files, errors = good_images(all_files, args.skip_bad)
    labels = [lab for f, lab in zip(all_files, labels) if str(f) not in errors]
    report_skipped(errors, "left out of the metrics")
    warn_trained_on(args.model, files)
    targets = torch.tensor([pred.vocab.index(lab) for lab in labels])
    probs = pred.predict_batch(files, bs=args.bs, num_workers=args.num_workers, progress=sys.stderr.isatty())
    interp = ClassificationInterpretation(pred.vocab, probs, targets, items=files)
    acc = float(accuracy(probs, targets))
    result = {"n_images": len(files), "accuracy": acc, "error_rate": 1 - acc,
              "confusion_matrix": interp.confusion_matrix().tolist(), "vocab": pred.vocab,
              "macro_avg": interp.macro_avg(), "macro_avg_left_out": interp.classes_without_images()}
    summary = f"{len(files)} images  accuracy {acc:.4f}  error rate {1 - acc:.4f}"
    return report_evaluation(args, interp, result, summary, "confusion matrix")


def cmd_lr_find(args: argparse.Namespace) -> int:
    check_data_folder(args.data)  # in the order a user fixes things: the data first, then the output file
    _check_new(args.plot, args.overwrite, "--plot")
    from vision_tl import minimum, steep, valley

    learn = _learner(args)
    print(f"lr-find: training {args.arch} on up to {args.num_it} mini-batches of {learn.dls.bs} images at a "
          "learning rate growing from 1e-07 to 10, stopping early once the loss diverges", flush=True)
    lrs = learn.lr_find(num_it=args.num_it, show_plot=False, suggest_funcs=(valley, minimum, steep))._asdict()
    done = len(learn.recorder.lr_find_lrs)
    if done < args.num_it:
        print(f"stopped after {done} of {args.num_it} mini-batches: the loss diverged at lr "
              f"{learn.recorder.lr_find_lrs[-1]:.2e}")
    print("suggested learning rates: " + "  ".join(f"{name} {float(v):.2e}" for name, v in lrs.items()))
    save_figure(learn.recorder.plot_lr_find(lrs).figure, args.plot)
    print(f"plot: {args.plot}")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from vision_tl import check_onnx, export_onnx, load_learner

    _check_new(args.out, args.overwrite, "OUT")
    pred = load_learner(args.model, device="cpu")
    path = export_onnx(pred, args.out, input_dtype=args.input_dtype)
    print(f"saved {path} (input: N x 3 x H x W RGB {args.input_dtype}; output: probabilities)")
    if not args.no_check:
        print(f"onnxruntime vs torch: max abs difference {check_onnx(path, pred):.2e}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from vision_tl import describe_manifest, read_manifest

    from .inference.card import card_summary

    manifest = read_manifest(args.model)
    print(json.dumps(manifest, indent=2) if args.json else describe_manifest(manifest, args.model.stat().st_size),
          flush=True)  # flushed here, so a closed pipe (`| head`) is met inside main
    if not args.json:
        print(card_summary(manifest), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import json

    try:
        from vision_tl import run_demo
    except ImportError as e:
        raise CLIError(f"the demo is not available in this installation ({e})") from None
    result = run_demo(out=args.out, real=args.real, arch=args.arch, epochs=args.epochs, size=args.size,
                      n_images=args.n_images, bs=args.bs, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "lr-find": cmd_lr_find,
            "export-onnx": cmd_export_onnx, "info": cmd_info, "demo": cmd_demo, "quantize": cmd_quantize,
            "serve": cmd_serve, "doctor": cmd_doctor, "card": cli_card.cmd_card}


def _one_line(e: BaseException) -> str:
    known = (CLIError, ValueError, FileNotFoundError, NotADirectoryError, FileExistsError, PermissionError)
    return one_line(e, known)


def _check_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Argument errors argparse cannot see alone: exit 2 with the usage line, like argparse's own."""
    try:
        if getattr(args, "label_from", None) is not None:
            if args.data is None and len(args.label_from) > 1 + (args.label_from[0] != "folder"):
                args.data = Path(args.label_from.pop())  # `--label-from name-re PAT DATA`: DATA was swallowed
            if args.data is None:
                raise CLIError("the following arguments are required: DATA")
            kind = parse_label_from(args.label_from)[0]
            if getattr(args, "multi_label", False) and kind != "csv":
                raise CLIError(f"--multi-label needs --label-from csv FILE (a column of label lists), got {kind!r}")
        for flag in ("epochs", "size", "bs", "top_k", "n_images", "num_it"):
            _positive(getattr(args, flag, None), f"--{flag.replace('_', '-')}")
        if getattr(args, "valid_pct", None) is not None and not 0 <= args.valid_pct < 1:
            raise CLIError(f"--valid-pct must be in [0, 1), got {args.valid_pct}")
        device = getattr(args, "device", None)
        if device is not None and not re.fullmatch(r"cpu|mps|cuda(:\d+)?", device):
            raise CLIError(f"--device must be cpu, cuda, cuda:N or mps, got {device!r}")
        if getattr(args, "arch", None):  # a typo answered at once: the check reads names, imports no torch
            from .models.names import check_arch_name

            try:
                check_arch_name(args.arch)
            except ValueError as e:
                raise CLIError(f"--arch: {e}") from None
    except CLIError as e:
        getattr(args, "subparser", parser).error(str(e))  # the subcommand's usage line, as argparse does


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vision-tl`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_usage(parser, args)
    try:
        with cli_warnings():  # `warning: ...`, one line each
            return COMMANDS[args.command](args)
    except BrokenPipeError:  # `vision-tl info --json | head`: the reader left; leave quietly, as Unix tools do
        return quiet_broken_pipe()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's contract: one line, exit code 1
        if args.debug:
            raise
        say(f"{PROG} {args.command}: error: {_one_line(e)}")  # on a line of its own, not after a progress bar
        return 1


if __name__ == "__main__":
    sys.exit(main())
