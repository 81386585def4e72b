"""Suspect labels: out-of-sample class probabilities from the pretrained model's embeddings, ranked by
confident learning (``cleanlab``).

Each image is embedded once by the pretrained body (global average pool of its features); a logistic
regression is fitted K times, each time on all folds but one, and predicts the fold it did not see.
Those out-of-sample probabilities go to ``cleanlab.filter.find_label_issues``, and every flagged image
gets cleanlab's label quality score (0: surely mislabelled, 1: surely right).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .deps import require

__all__ = ["embed", "out_of_sample_probs", "rank_label_issues"]


def embed(thumbs: Sequence[np.ndarray], arch: Any = "resnet18", pretrained: bool = True,
          weights: str | Path | None = None, weights_map: Any = None, bs: int = 128,
          device: str | None = None, progress: bool = True, seed: int = 0) -> np.ndarray:
    """``(n, features)`` float32 embeddings of uint8 HWC ``thumbs`` by ``arch``'s pretrained body."""
    import torch
    from tqdm.auto import tqdm

    from ..models.backbones import create_body

    with torch.random.fork_rng(devices=[]):  # random weights (--no-pretrained) are the same on every run
        torch.manual_seed(seed)
        body, _, stats = create_body(arch, pretrained=pretrained, weights=weights, weights_map=weights_map)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    body = body.eval().to(dev)
    mean = torch.tensor(stats["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(stats["std"], device=dev).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for s in tqdm(range(0, len(thumbs), bs), desc="embed (pretrained model)", unit="batch",
                      disable=not progress):
            x = torch.from_numpy(np.stack(thumbs[s:s + bs])).to(dev).permute(0, 3, 1, 2).float().div_(255)
            feats = body((x - mean) / std)
            out.append(feats.float().mean(dim=(2, 3)).cpu().numpy() if feats.ndim == 4 else feats.cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def out_of_sample_probs(emb: np.ndarray, labels: Sequence[int], n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """K-fold out-of-sample probabilities ``(n, n_classes)`` of a logistic regression on ``emb``.

    ``labels`` must be 0..C-1 with every class present at least twice (``n_folds`` shrinks to the
    smallest class count)."""
    require("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    y = np.asarray(labels)
    folds = min(n_folds, min(Counter(y.tolist()).values()))
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    # one BLAS thread: these matrices are small, and on a busy machine spinning BLAS threads made
    # the same fits 60x slower (measured: 86 s -> 1.4 s for 312 images, 5 folds)
    with threadpool_limits(1):
        return cross_val_predict(clf, emb, y, cv=cv, method="predict_proba")


def rank_label_issues(labels: Sequence[int], probs: np.ndarray) -> list[tuple[int, int, float]]:
    """``(index, suggested class, quality score)`` of the suspect labels, most suspect first."""
    require("cleanlab")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(labels)
    ranked = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    scores = get_label_quality_scores(y, probs, method="self_confidence")
    return [(int(i), int(probs[i].argmax()), float(scores[i])) for i in ranked]


def suspect_labels(emb: np.ndarray, labels: Sequence[str], seed: int = 0, n_folds: int = 5
                   ) -> tuple[list[tuple[int, str, float]], str | None]:
    """Suspect labels among string ``labels``: ``[(index, suggested label, score)]`` and a note when the
    check could not run on some (classes with one image) or any images."""
    counts = Counter(labels)
    usable = [i for i, lab in enumerate(labels) if counts[lab] >= 2]
    classes = sorted({labels[i] for i in usable})
    note = None
    if len(classes) < 2:
        return [], "suspect labels not checked: it needs two classes with two or more images each"
    left = sorted(lab for lab, c in counts.items() if c < 2)
    if left:
        note = f"suspect labels not checked for classes with one image: {left[:5]}"
    code = {c: k for k, c in enumerate(classes)}
    y = [code[labels[i]] for i in usable]
    probs = out_of_sample_probs(emb[usable], y, n_folds=n_folds, seed=seed)
    return [(usable[i], classes[s], score) for i, s, score in rank_label_issues(y, probs)], note
