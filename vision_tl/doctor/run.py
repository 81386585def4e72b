"""``vision_tl.doctor``: every check on a labelled image set, read-only, in one call."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .duplicates import exact_groups, near_groups, near_pairs
from .odd import odd_images
from .report import DoctorReport
from .scan import scan_files

__all__ = ["doctor", "diagnose"]


def files_of_dls(dls: Any) -> tuple[list[Path], list[str], list[bool]]:
    """The image files of a DataLoaders (train, then valid), their labels as text, and whether each is valid."""
    files, labels, valid = [], [], []
    for ds, is_valid in ((dls.train_ds, False), (dls.valid_ds, True)):
        vocab = [str(v) for v in ds.vocab]
        for item, y in zip(ds.items, ds.labels or [None] * len(ds.items)):
            if not isinstance(item, (str, Path)):
                raise ValueError(f"the doctor checks image files; this DataLoaders holds {type(item).__name__} items")
            files.append(Path(item))
            labels.append(" ".join(vocab[k] for k in y) if isinstance(y, tuple) else "" if y is None else vocab[y])
            valid.append(is_valid)
    return files, labels, valid


def doctor(source: Any, *, valid_pct: float = 0.2, seed: int = 42, train: str = "train", valid: str = "valid",
           **kwargs: Any) -> DoctorReport:
    """Check a labelled image set; returns a :class:`DoctorReport`. It never changes the data.

    Args:
        source: a folder of ``<class>/<image>`` (split by its ``train``/``valid`` subfolders when both
            exist, else at random with ``valid_pct`` and ``seed``, as ``ImageDataLoaders.from_folder``),
            or any DataLoaders of image files (``ImageDataLoaders.from_csv(...)``, ``from_name_re``...):
            the doctor checks the items and split that training would use.
        **kwargs: passed to :func:`diagnose` (``arch``, ``weights``, ``size``, ``near_distance``, ...).

    Example:
        >>> report = doctor("data/birds")               # doctest: +SKIP
        >>> report.save_html("birds.html"); report.save_decisions("decisions.csv")  # doctest: +SKIP
    """
    if isinstance(source, (str, Path)):
        from ..data.factories import ImageDataLoaders

        root = Path(source)
        split = (root / train).is_dir() and (root / valid).is_dir()
        dls = ImageDataLoaders.from_folder(root, train=train, valid=valid, valid_pct=None if split else valid_pct,
                                           seed=seed, bs=8, num_workers=0, device="cpu")
    else:
        dls, root = source, Path(getattr(source, "path", "."))
    files, labels, is_valid = files_of_dls(dls)
    kwargs.setdefault("seed", seed)
    return diagnose(files, labels, is_valid, root=root, multi_label=bool(getattr(dls, "multi_label", False)),
                    **kwargs)


def diagnose(files: Sequence[str | Path], labels: Sequence[str], is_valid: Sequence[bool], root: str | Path = ".",
             *, arch: Any = "resnet18", pretrained: bool = True, weights: str | Path | None = None,
             weights_map: Any = None, size: int = 64, near_distance: int = 8, near_whash: int = 1, check_labels: bool = True,
             multi_label: bool = False, seed: int = 42, num_workers: int | None = None,
             device: str | None = None, progress: bool = True) -> DoctorReport:
    """The checks on explicit ``files``, their ``labels`` and whether each is in the validation set.

    Near duplicates are pairs whose perceptual hashes (DCT, 64 bits) differ in at most ``near_distance``
    bits, confirmed by wavelet hashes at most ``near_whash`` bits apart (re-encoded, resized and lightly
    cropped copies keep both; distinct images that only look alike, such as two handwritten 1s, rarely
    do). Suspect labels use ``arch``'s embeddings at ``size`` pixels (``pretrained``/``weights``/``weights_map``
    as for ``vision_learner``)."""
    if not len(files) == len(labels) == len(is_valid):
        raise ValueError(f"{len(files)} files, {len(labels)} labels and {len(is_valid)} split flags: they must match")
    if not 0 <= near_distance < 64:
        raise ValueError(f"near_distance must be in [0, 63] bits, got {near_distance}")
    times: dict[str, float] = {}
    t = time.perf_counter()
    scans = scan_files(files, thumb=size, num_workers=num_workers, progress=progress)
    times["scan"] = time.perf_counter() - t
    paths = [str(f) for f in files]

    t = time.perf_counter()
    exact = exact_groups([s.sha256 if s.reason is None else None for s in scans])
    first_of = {i: g[0] for g in exact for i in g}
    reps = [s.phash if first_of.get(i, i) == i else None for i, s in enumerate(scans)]
    pairs = {(i, j) for i, j in near_pairs(reps, near_distance)
             if bin(scans[i].whash ^ scans[j].whash).count("1") <= near_whash}
    copies: dict[int, list[int]] = {}
    for i in range(len(scans)):
        copies.setdefault(first_of.get(i, i), []).append(i)
    near = [sorted(j for i in g for j in copies[i]) for g in near_groups(len(scans), pairs)]
    times["duplicates"] = time.perf_counter() - t

    issues, notes, checked = [], [], False
    if check_labels and multi_label:
        notes.append("suspect labels not checked: multi-label data")
    elif check_labels:
        from .labels import embed, suspect_labels

        t = time.perf_counter()
        ok = [i for i, s in enumerate(scans) if s.reason is None]
        emb = embed([scans[i].thumb for i in ok], arch=arch, pretrained=pretrained, weights=weights,
                    weights_map=weights_map, device=device, progress=progress, seed=seed)
        found, note = suspect_labels(emb, [labels[i] for i in ok], seed=seed)
        issues, checked = [(ok[i], sug, score) for i, sug, score in found], note is None or "one image" in note
        notes += [note] if note else []
        times["labels"] = time.perf_counter() - t

    def group(kind: str, g: list[int]) -> dict:
        return {"kind": kind, "paths": [paths[i] for i in g], "labels": [labels[i] for i in g],
                "leak": len({bool(is_valid[i]) for i in g}) > 1, "conflict": len({labels[i] for i in g}) > 1}

    counts = Counter(labels)
    data = {
        "files": len(paths),
        "classes": dict(sorted(counts.items())),
        "unreadable": [{"path": paths[i], "reason": s.reason} for i, s in enumerate(scans) if s.reason is not None],
        "duplicates": [group("exact", g) for g in exact] + [group("near", g) for g in near],
        "label_issues": sorted(({"path": paths[i], "given": labels[i], "suggested": sug, "score": round(score, 6)}
                                for i, sug, score in issues), key=lambda r: r["score"]),
        "odd": [{"path": paths[i], "reason": why} for i, why in odd_images(scans)],
        "split": {"train": sum(not v for v in is_valid), "valid": sum(bool(v) for v in is_valid)},
        "imbalance_ratio": round(max(counts.values()) / min(counts.values()), 3) if counts else None,
        "labels_checked": checked,
        "root": str(root),
        "notes": notes,
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }
    thumbs = {paths[i]: s.thumb for i, s in enumerate(scans) if s.thumb is not None}
    return DoctorReport(data, thumbs)
