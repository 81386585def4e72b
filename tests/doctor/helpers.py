"""Plain helpers of the doctor tests (data makers, constants), imported by the test
modules and by ``conftest.py``'s fixtures; fixtures stay in ``conftest.py``."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Planted:
    root: Path
    flipped: list[str] = field(default_factory=list)  # paths (as given) whose folder is the wrong class
    unreadable: list[str] = field(default_factory=list)
    exact: list[tuple[str, str]] = field(default_factory=list)  # (original, copy)
    near: list[tuple[str, str]] = field(default_factory=list)
    leak: list[tuple[str, str]] = field(default_factory=list)  # (train original, valid copy)


def folder_hashes(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) -> sha256 of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_digits_set(root: Path, n: int = 300, n_flip: int = 15, size: int = 32, seed: int = 0) -> Planted:
    from PIL import Image
    from sklearn import datasets as sk_datasets  # the doctor extra (conftest skips without it)

    X, y = sk_datasets.load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))[:n]
    flip = set(idx[rng.choice(n, n_flip, replace=False)].tolist())
    out = Planted(root)
    written: list[tuple[Path, Image.Image]] = []
    for k, i in enumerate(idx):
        label = int(y[i])
        if i in flip:
            label = int((label + rng.integers(1, 10)) % 10)
        split = "valid" if k % 4 == 0 else "train"
        d = root / split / str(label)
        d.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((X[i].reshape(8, 8) * 255 / 16).astype(np.uint8)).convert("RGB")
        img = img.resize((size, size), Image.BILINEAR)
        path = d / (f"{i}.jpg" if k % 5 == 0 else f"{i}.png")
        img.save(path, quality=95) if path.suffix == ".jpg" else img.save(path)
        if i in flip:
            out.flipped.append(str(path))
        else:
            written.append((path, img))
    train = [(p, im) for p, im in written if p.parts[-3] == "train"]
    # exact copies: the same bytes under another name, same class
    for p, _ in train[:4]:
        q = p.with_name(f"copy_{p.name}")
        shutil.copyfile(p, q)
        out.exact.append((str(p), str(q)))
    # near copies: re-encoded, resized, lightly cropped
    for n_, (p, im) in enumerate(train[4:10]):
        q = p.with_name(f"near_{p.stem}.jpg")
        if n_ % 3 == 0:
            im.save(q, quality=70)
        elif n_ % 3 == 1:
            im.resize((size + size // 4,) * 2, Image.BICUBIC).save(q, quality=90)
        else:
            im.crop((1, 1, size - 1, size - 1)).save(q, quality=90)
        out.near.append((str(p), str(q)))
    # a train/valid leak: one exact and one near copy of train images in valid, same class
    for p, im in train[10:12]:
        q = root / "valid" / p.parent.name / f"leak_{p.name}"
        q.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, q) if p.suffix == ".png" else im.save(q.with_suffix(".png"))
        out.leak.append((str(p), str(q if q.exists() else q.with_suffix(".png"))))
    # broken files, each a kind
    d = root / "train" / "0"
    jpg = next(p for p, _ in written if p.suffix == ".jpg")
    (d / "truncated.jpg").write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.jpg").write_text("this is not an image\n")
    (d / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(200))
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # 400 M pixels declared in a small file
    out.unreadable = [str(d / n_) for n_ in ("truncated.jpg", "empty.png", "notes.jpg", "garbage.png", "bomb.png")]
    return out
