"""What the ``vision-tl`` command reads: image files and their labels (``--label-from``), the
train/valid folders, and the DataLoaders ``train``/``lr-find`` build from them.

Every failure is a :class:`CLIError` with one line that names the path and says what to pass instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_GLOB_CHARS = set("*?[")
# train/valid folder pairs found without --train/--valid (fastai's sets: MNIST has training/ and testing/)
SPLIT_FOLDERS = (("train", "valid"), ("train", "val"), ("training", "validation"), ("training", "testing"),
                 ("train", "test"))
_NAME_RE_EXAMPLE = "--label-from name-re '^(.+)_\\d+\\.jpg$'"


class CLIError(Exception):
    """A failure to report in one line with exit code 1."""


def parse_label_from(spec: Sequence[str]) -> tuple[str, str | None]:
    """``['folder']`` / ``['name-re', PATTERN]`` / ``['csv', FILE]`` -> ``(kind, arg)``."""
    kind, args = spec[0], list(spec[1:])
    needs = {"folder": 0, "name-re": 1, "csv": 1}
    if kind not in needs:
        raise CLIError(f"--label-from must be folder, name-re PATTERN or csv FILE, got {kind!r}")
    if len(args) != needs[kind]:
        raise CLIError(f"--label-from {kind} takes {needs[kind]} argument(s), got {args!r}")
    return kind, (args[0] if args else None)


def expand_images(specs: Sequence[str]) -> list[Path]:
    """Files, folders (recursively, image files only) and glob patterns -> a list of files, in order."""
    import glob

    from vision_tl import get_image_files

    out: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = get_image_files(path)
            if not found:
                raise CLIError(f"no image files in folder {spec!r}")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif _GLOB_CHARS & set(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
            if not found:
                raise CLIError(f"no files match {spec!r}")
            out.extend(found)
        else:
            raise CLIError(f"no such file or folder: {spec!r}")
    return out


def labelled_files(data: Path, label_from: Sequence[str], label_delim: str | None = None) -> tuple[list[Path], list]:
    """The image files under ``data`` and their labels, by ``--label-from``; with ``label_delim`` (multi-label,
    csv only) each label is the list of labels in its cell."""
    from vision_tl import RegexLabeller, df_files_labels, get_image_files, label_items, parent_label

    kind, arg = parse_label_from(label_from)
    check_data_folder(data)
    if kind == "csv":
        import pandas as pd

        csv = data / arg
        if not csv.is_file():
            raise CLIError(f"no CSV file {str(csv)!r}")
        if label_delim is not None:
            from vision_tl import split_labels

            files, cells = df_files_labels(pd.read_csv(csv), data, allow_empty=True)
            return files, [split_labels(v, label_delim) for v in cells]
        return df_files_labels(pd.read_csv(csv), data)  # the same reading as ImageDataLoaders.from_csv
    files = get_image_files(data)
    if not files:
        raise CLIError(f"no image files in {str(data)!r}")
    func = parent_label if kind == "folder" else RegexLabeller(arg)
    return files, label_items(files, func)


def dataloaders_from_args(args: argparse.Namespace) -> Any:
    """DataLoaders for ``train`` and ``lr-find`` from DATA and ``--label-from``."""
    from vision_tl import ImageDataLoaders, Resize, aug_transforms

    kind, arg = parse_label_from(args.label_from)
    check_data_folder(args.data)
    if getattr(args, "valid_col", None) is not None and kind != "csv":
        raise CLIError(f"--valid-col names a column of the --label-from csv FILE; labels come from {kind!r}")
    common = dict(item_tfms=Resize(args.size), batch_tfms=aug_transforms(), bs=args.bs, seed=args.seed,
                  num_workers=args.num_workers, device=args.device)
    if kind == "folder":
        split = args.split = split_folders(args.data, args.train, args.valid)
        check_folder_classes(args.data, split)
        if split is not None:
            return ImageDataLoaders.from_folder(args.data, train=split[0], valid=split[1], valid_pct=None, **common)
        return ImageDataLoaders.from_folder(args.data, valid_pct=args.valid_pct, **common)
    if kind == "name-re":
        from vision_tl import get_image_files

        return ImageDataLoaders.from_name_re(args.data, get_image_files(args.data), arg, valid_pct=args.valid_pct,
                                             **common)
    import pandas as pd

    delim = args.label_delim if args.multi_label else None
    csv = args.data / arg
    if not csv.is_file():
        raise CLIError(f"--label-from csv: no CSV file {str(csv)!r}")
    df = pd.read_csv(csv)
    valid_col = csv_valid_column(df, getattr(args, "valid_col", None), csv)
    if valid_col is not None:
        args.split_how = f"the {valid_col!r} column of {arg}"
    return ImageDataLoaders.from_df(df, args.data, valid_pct=args.valid_pct, label_delim=delim,
                                    valid_col=valid_col, **common)


def csv_valid_column(df: Any, valid_col: str | None, csv: Path) -> str | None:
    """The column that chooses the validation rows: ``--valid-col``, else ``is_valid`` when the CSV has it
    (as ``ImageDataLoaders.from_csv`` users write it), else None for a random split."""
    if valid_col is None:
        return "is_valid" if "is_valid" in df.columns else None
    if valid_col not in df.columns:
        raise CLIError(f"--valid-col {valid_col!r}: no such column in {str(csv)!r} (columns: {list(df.columns)})")
    return valid_col


def check_data_folder(data: Path) -> None:
    """DATA must be an existing folder: say which of the two it is not."""
    if not data.exists():
        raise CLIError(f"DATA folder {str(data)!r} does not exist")
    if not data.is_dir():
        raise CLIError(f"DATA {str(data)!r} is a file, not a folder of images")


def bad_images_error(bad: Sequence[Any], what: str) -> CLIError:
    """One line naming every unreadable file (``ImageError``s) and the way past them."""
    listed = "; ".join(f"{e.path}: {e.reason}" for e in bad)
    return CLIError(f"{len(bad)} {what} image(s) cannot be read (fix or remove them, or pass --skip-bad to "
                    f"leave them out): {listed}")


def check_split_images(dls: Any, skip_bad: bool) -> None:
    """Look at every validation file before the first batch (and, with ``--skip-bad``, every training file):
    stop at once naming each unreadable one, or leave them out and say how many."""
    import warnings

    from .data.check import drop_items, find_bad_images

    sets = [("validation", dls.valid_ds)] + ([("training", dls.train_ds)] if skip_bad else [])
    for what, ds in sets:
        bad = find_bad_images(ds.items)
        if not bad:
            continue
        if not skip_bad:
            raise bad_images_error(bad, what)
        drop_items(ds, [e.path for e in bad])
        if len(ds) == 0:
            raise CLIError(f"--skip-bad: none of the {len(bad)} {what} images can be read")
        listed = "; ".join(f"{e.path}: {e.reason}" for e in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        warnings.warn(f"--skip-bad: left out {len(bad)} {what} image(s) that cannot be read: {listed}", stacklevel=2)


def split_folders(data: Path, train: str | None = None, valid: str | None = None) -> tuple[str, str] | None:
    """The ``(train, valid)`` subfolders of ``data``: ``--train``/``--valid`` when given (both must exist),
    else the first pair of ``SPLIT_FOLDERS`` present; None for a random split."""
    if train or valid:
        if not (train and valid):
            raise CLIError("--train and --valid go together: give both folder names")
        for flag, name in (("--train", train), ("--valid", valid)):
            if not (data / name).is_dir():
                raise CLIError(f"{flag} {name!r}: no folder {str(data / name)!r}")
        return train, valid
    return next(((t, v) for t, v in SPLIT_FOLDERS if (data / t).is_dir() and (data / v).is_dir()), None)


def one_class_error(data: Path, name: str, why: str) -> CLIError:
    return CLIError(
        f"{str(data)!r} has one class ({name!r}, the folder its images are in){why}; label the images another "
        f"way, e.g. {_NAME_RE_EXAMPLE} (the first group of a regex on the file name) or --label-from csv "
        "FILE, or put each class in its own subfolder")


def check_folder_classes(data: Path, split: tuple[str, str] | None) -> None:
    """Refuse, with a way forward, a folder whose images are all in one folder (labelled by folder)."""
    from .data.sources import get_image_files

    files = [f for sub in (split or ("",)) for f in get_image_files(data / sub)]
    classes = {f.parent.name for f in files}
    if len(classes) == 1:
        raise one_class_error(data, classes.pop(), ": a classifier needs two or more")
