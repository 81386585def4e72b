"""The model card: how a model was made, recorded in every export, and written out as a README.

``card_entry(learn)`` is what ``export`` adds to the manifest under ``"card"``: the data's
fingerprint (file count and a SHA-256 of the sorted ``file<TAB>label`` lines, names relative to
the data folder), the split (seed, sizes), the recipe and hyper-parameters, every epoch's results
over every fit, EMA when used, and the library versions. No clock time goes in: the same learner
still exports the same bytes. ``card_summary`` gives the lines ``vision-tl info`` prints;
``model_card`` writes a Hugging Face-style model card (YAML front matter, then Markdown) from a
manifest (``read_manifest(path)``), with no network.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from pathlib import Path
from typing import Any

__all__ = ["card_entry", "card_summary", "data_fingerprint", "epoch_rows", "model_card"]


def _label_names(ds: Any, i: int) -> str:
    labels, vocab = getattr(ds, "labels", None), list(getattr(ds, "vocab", []) or [])
    if labels is None:
        return ""
    y = labels[i]
    if hasattr(y, "tolist"):  # a numpy or torch value
        y = y.tolist()

    def name(k: Any) -> str:  # class indices name their class; a regression target is its own number
        return str(vocab[k]) if isinstance(k, int) and 0 <= k < len(vocab) else str(k)

    if isinstance(y, (tuple, list)):  # a label set is unordered; a regression vector keeps its order
        names = [name(k) for k in y]
        return ",".join(sorted(names) if all(isinstance(k, int) for k in y) else names)
    return name(y)


def _item_name(item: Any, root: Path | None) -> str:
    if isinstance(item, (str, Path)):
        p = Path(item)
        if root is not None:
            try:
                return p.resolve().relative_to(root).as_posix()
            except ValueError:
                pass
        return p.as_posix()
    return repr(item)[:200]


def data_fingerprint(dls: Any) -> dict[str, Any]:
    """``{"n_files", "sha256"}`` of the training and validation items with their labels (order-free)."""
    root = getattr(dls, "path", None)
    root = Path(root).resolve() if root is not None else None
    lines = []
    for ds in (getattr(dls, "train_ds", None), getattr(dls, "valid_ds", None)):
        items = list(getattr(ds, "items", []) or [])
        lines += [f"{_item_name(it, root)}\t{_label_names(ds, i)}" for i, it in enumerate(items)]
    lines.sort()
    return {"n_files": len(lines), "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def _clean(v: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, unknown objects their repr."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return repr(v)


def _versions() -> dict[str, str]:
    import numpy
    import timm
    import torch
    import torchvision

    from .. import __version__

    return {"vision_tl": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__, "numpy": numpy.__version__}


def _epochs(learn: Any) -> dict[str, list]:
    """Every epoch of every finished fit as ``{"columns": [...], "rows": [[...], ...]}`` (a table keeps its
    column order in the manifest, whose JSON keys are sorted)."""
    rec = getattr(learn, "recorder", None)
    fits = getattr(rec, "fits", []) or []
    cols = ["epoch", "fit", "frozen"]
    for f in fits:
        cols += [c for c in f["columns"] if c not in cols]
    rows, n = [], 0
    for f in fits:
        for row in f["rows"]:
            d = {"epoch": n, "fit": f["phase"], "frozen": f["frozen"], **dict(zip(f["columns"], row))}
            rows.append([d.get(c) for c in cols])
            n += 1
    return {"columns": cols, "rows": rows}


def epoch_rows(card: dict[str, Any]) -> list[dict[str, Any]]:
    """The card's epochs as one dict per epoch (column name -> value)."""
    table = card.get("epochs") or {}
    if not isinstance(table, dict):
        return []
    cols = list(table.get("columns") or [])
    return [dict(zip(cols, r)) for r in table.get("rows") or []]


def card_entry(learn: Any) -> dict[str, Any]:
    """``{"card": {...}}``: how ``learn``'s model was made (see the module docstring), for the manifest."""
    from ..train.ema import EMACallback
    from ..train.trackers.base import run_params

    dls = learn.dls
    train = getattr(dls, "train", None)
    n_train = len(dls.train_ds) if hasattr(dls, "train_ds") else None
    n_valid = len(dls.valid_ds) if hasattr(dls, "valid_ds") else None
    params = run_params(learn)
    for k in ("n_train", "n_valid", "seed"):
        params.pop(k, None)
    card: dict[str, Any] = {
        "data": {**data_fingerprint(dls), "folder": Path(getattr(dls, "path", ".") or ".").resolve().name},
        "split": {"seed": getattr(train, "seed", None), "n_train": n_train, "n_valid": n_valid},
        "recipe": params,
        "epochs": _epochs(learn),
        "versions": _versions(),
    }
    ema = next((c for c in getattr(learn, "cbs", []) if isinstance(c, EMACallback)), None)
    if ema is not None and ema.average is not None:
        card["ema"] = {"decay": ema.decay, "warmup": ema.warmup, "updates": ema.n_updates,
                       "weights": "average" if ema.holds_average else "live"}
    return {"card": _clean(card)}


# ----- reading it back ----------------------------------------------------------------------------------
def _metric_columns(epochs: list[dict[str, Any]]) -> list[str]:
    skip = {"epoch", "fit", "frozen"}
    cols: list[str] = []
    for e in epochs:
        cols += [k for k in e if k not in skip and k not in cols]
    return cols


def _num(v: Any) -> str:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def card_summary(manifest: dict[str, Any]) -> str:
    """The card's facts in a few lines (``vision-tl info``); a note when the file has no card."""
    card = manifest.get("card")
    if not isinstance(card, dict):
        return "model card:    none (exported before model cards were recorded)"
    data, split, recipe = card.get("data") or {}, card.get("split") or {}, card.get("recipe") or {}
    epochs = epoch_rows(card)
    last = epochs[-1] if epochs else {}
    final = ", ".join(f"{k} {_num(v)}" for k, v in last.items() if k not in ("epoch", "fit", "frozen")) or "none"
    how = ", ".join(f"{k.removeprefix('recipe.')}={json.dumps(v)}" for k, v in recipe.items()
                    if k.startswith("recipe.") and v is not None)
    lines = [
        f"data:          {data.get('n_files')} files in {data.get('folder')!r}, fingerprint {str(data.get('sha256'))[:16]}",
        f"split:         {split.get('n_train')} train / {split.get('n_valid')} valid, seed {split.get('seed')}",
        f"recipe:        {recipe.get('recipe') or 'unknown'}({how}), batch size {recipe.get('batch_size')}",
        f"trained:       {len(epochs)} epoch(s); last: {final}",
    ]
    if card.get("ema"):
        e = card["ema"]
        lines.append(f"EMA:           decay {e.get('decay')}, {e.get('updates')} updates, exported weights: {e.get('weights')}")
    return "\n".join(lines)


def _yaml_list(key: str, values: list[str]) -> list[str]:
    return [f"{key}:"] + [f"- {json.dumps(v)}" for v in values]


def model_card(manifest: dict[str, Any], name: str = "model.vtl") -> str:
    """A Hugging Face-style model card (README.md) from a ``.vtl`` file's manifest (``read_manifest``).

    YAML front matter (``library_name``, ``tags``, ``metrics``, ``pipeline_tag``), then classes, intended
    use, training data, recipe, an evaluation table with every epoch, limitations and how to load it
    (``name``: the file's name, used in the examples).
    """
    m = manifest
    card = m.get("card") if isinstance(m.get("card"), dict) else {}
    cfg, vocab = m.get("model_config") or {}, [str(v) for v in m.get("vocab") or []]
    arch, multi = str(cfg.get("arch", "unknown")), bool(m.get("multi_label"))
    epochs = epoch_rows(card)
    cols = _metric_columns(epochs)
    metrics = [c for c in cols if c not in ("train_loss", "valid_loss") and not c.startswith("raw_")]
    data, split, recipe = card.get("data") or {}, card.get("split") or {}, card.get("recipe") or {}
    size = m.get("input_size") or cfg.get("input_size")
    task = "multi-label image classification" if multi else "image classification"
    out = ["---", "library_name: vision_tl", "pipeline_tag: image-classification",
           *_yaml_list("tags", ["vision_tl", "image-classification", "timm", arch] + (["multi-label"] if multi else [])),
           *_yaml_list("metrics", metrics or ["accuracy"]), "---", "",
           f"# {arch} for {task} ({len(vocab)} classes)", "",
           f"Fine-tuned with vision_tl {(card.get('versions') or m.get('versions') or {}).get('vision_tl', '')}; "
           f"one file, `{name}`, holds the weights, the classes and the preprocessing.", "",
           "## Classes", "", ", ".join(f"`{v}`" for v in vocab) or "(none: a regression model)", "",
           "## Intended use", "",
           f"{task.capitalize()} of images like the training images below, into the {len(vocab)} classes above. "
           f"Inputs are resized to {'x'.join(map(str, size)) if size else 'the training size'} px and normalized as "
           "recorded in the file. It is not meant for images unlike the training data, nor for decisions about "
           "people without a human check.", "",
           "## Training data", ""]
    if data:
        out += [f"- {data.get('n_files')} images from the folder `{data.get('folder')}` (fingerprint: SHA-256 "
                f"`{data.get('sha256')}` of the sorted file names with their labels)",
                f"- split: {split.get('n_train')} training / {split.get('n_valid')} validation images, seed "
                f"{split.get('seed')}", ""]
    else:
        out += ["Not recorded (the file was exported before model cards were).", ""]
    out += ["## Training recipe", ""]
    out += [f"- {k}: `{json.dumps(v)}`" for k, v in recipe.items()] or ["Not recorded."]
    if card.get("ema"):
        e = card["ema"]
        out.append(f"- EMA of weights: decay {e.get('decay')} (warmup {e.get('warmup')}), {e.get('updates')} updates; "
                   f"the file holds the {e.get('weights')} weights")
    out += ["", "## Evaluation", ""]
    if epochs:
        out += ["Measured on the validation split after each epoch (`frozen`: the body was frozen):", "",
                "| epoch | frozen | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
        out += [f"| {e['epoch']} | {'yes' if e.get('frozen') else 'no'} | " + " | ".join(_num(e.get(c)) for c in cols)
                + " |" for e in epochs]
    else:
        out.append("No training epochs recorded.")
    out += ["", "## Limitations", "",
            "- The figures above come from the validation split of the same folder as the training images: "
            "expect lower accuracy on images taken elsewhere, with other cameras, lighting or backgrounds.",
            f"- It always answers with one of its {len(vocab)} classes" + (" (or none above the threshold)" if multi else "")
            + ", even for an image of something else.",
            "- Biases of the training data (how many images per class, where they came from) carry over.", "",
            "## How to use", "", "```python", "from vision_tl import load_learner", "",
            f"learn = load_learner({name!r})", "print(learn.predict('image.jpg'))", "```", "",
            "or `vision-tl predict " + name + " image.jpg`.", "",
            "## Versions", "",
            ", ".join(f"{k} {v}" for k, v in sorted((card.get("versions") or m.get("versions") or {}).items())), ""]
    return "\n".join(out)
