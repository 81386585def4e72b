"""Seeded synthetic image sets: the offline demo's data and the test suite's fixtures.

The images are small JPEGs whose class is visible (a pattern and a colour cast per class, with
noise, random sizes and positions), so a tiny network trained from scratch learns them in a
minute on a CPU. Nothing here touches the network.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

# Oxford-IIIT Pet breeds: cat breeds are capitalised, dog breeds are not (fastai lesson 1's rule).
PET_CAT_BREEDS = (
    "Abyssinian", "Bengal", "Birman", "Bombay", "British_Shorthair", "Egyptian_Mau",
    "Maine_Coon", "Persian", "Ragdoll", "Russian_Blue", "Siamese", "Sphynx",
)
PET_DOG_BREEDS = (
    "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "boxer",
    "chihuahua", "english_cocker_spaniel", "english_setter", "german_shorthaired",
    "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger", "miniature_pinscher",
    "newfoundland", "pomeranian", "pug", "saint_bernard", "samoyed", "scottish_terrier",
    "shiba_inu", "staffordshire_bull_terrier", "wheaten_terrier", "yorkshire_terrier",
)

# one visual "style" per class index: (pattern, colour cast)
_PATTERNS = ("vstripes", "disc", "hstripes", "square", "checker", "ring", "diagonal", "cross")
_CASTS = (
    (200, 110, 40), (40, 90, 200), (60, 170, 70), (180, 60, 160),
    (200, 190, 50), (50, 180, 190), (120, 120, 120), (150, 80, 60),
)


def synthetic_image(style: int, rng: random.Random, size: tuple[int, int] = (96, 128)) -> Image.Image:
    """Draw one RGB image of class ``style`` (any int; styles repeat after 8) at ``size`` (h, w)."""
    h, w = size
    pattern, cast = _PATTERNS[style % len(_PATTERNS)], _CASTS[style % len(_CASTS)]
    jitter = [max(0, min(255, c + rng.randint(-40, 40))) for c in cast]
    bg = tuple(max(0, min(255, c // 3 + rng.randint(0, 60))) for c in jitter)
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    fg = tuple(jitter)
    step = max(4, min(h, w) // rng.randint(5, 8))
    cx, cy = rng.randint(w // 4, 3 * w // 4), rng.randint(h // 4, 3 * h // 4)
    r = rng.randint(min(h, w) // 5, min(h, w) // 3)
    if pattern == "vstripes":
        for x in range(rng.randint(0, step), w, 2 * step):
            draw.rectangle([x, 0, x + step - 1, h], fill=fg)
    elif pattern == "hstripes":
        for y in range(rng.randint(0, step), h, 2 * step):
            draw.rectangle([0, y, w, y + step - 1], fill=fg)
    elif pattern == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif pattern == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif pattern == "checker":
        for y in range(0, h, step):
            for x in range((y // step % 2) * step, w, 2 * step):
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=fg)
    elif pattern == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=max(2, r // 3))
    elif pattern == "diagonal":
        for k in range(-h, w, 2 * step):
            draw.line([k, 0, k + h, h], fill=fg, width=step)
    else:  # cross
        draw.rectangle([cx - r, cy - r // 3, cx + r, cy + r // 3], fill=fg)
        draw.rectangle([cx - r // 3, cy - r, cx + r // 3, cy + r], fill=fg)
    # a little noise so that no two images are alike
    noise = Image.effect_noise((w, h), rng.uniform(8, 24)).convert("RGB")
    img = Image.blend(img, noise, 0.12)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def _random_size(rng: random.Random, min_side: int, max_side: int) -> tuple[int, int]:
    return rng.randint(min_side, max_side), rng.randint(min_side, max_side)


def make_synthetic_folder(
    path: str | Path,
    classes: Sequence[str] = ("circle", "square", "stripes"),
    n_per_class: int = 12,
    splits: Sequence[str] | None = None,
    seed: int = 0,
    min_side: int = 48,
    max_side: int = 96,
    ext: str = ".jpg",
) -> Path:
    """Write a folder-per-class image set and return its root.

    With ``splits=None`` the layout is ``path/<class>/<class>_<i>.jpg``; with
    ``splits=("train", "valid")`` it is ``path/<split>/<class>/...`` with ``n_per_class`` images per
    class in every split. Same arguments, same bytes.
    """
    root = Path(path)
    rng = random.Random(seed)
    for split in splits or (None,):
        for idx, cls in enumerate(classes):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                img = synthetic_image(idx, rng, _random_size(rng, min_side, max_side))
                img.save(folder / f"{cls}_{i}{ext}", quality=90)
    return root


def make_synthetic_pets(
    path: str | Path,
    n_images: int = 200,
    seed: int = 42,
    min_side: int = 64,
    max_side: int = 160,
    n_breeds: int | None = None,
) -> Path:
    """Write a pets-like set named as Oxford-IIIT Pet does (``images/Breed_N.jpg``) and return ``path``.

    Cats (capitalised breeds) and dogs (lower-case breeds) differ visibly, so fastai's lesson-1
    rule ``is_cat = lambda f: f[0].isupper()`` is learnable. ``n_breeds`` limits breeds per species.
    """
    root = Path(path)
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cats = PET_CAT_BREEDS[:n_breeds] if n_breeds else PET_CAT_BREEDS
    dogs = PET_DOG_BREEDS[:n_breeds] if n_breeds else PET_DOG_BREEDS
    counters: dict[str, int] = {}
    for _ in range(n_images):
        is_cat = rng.random() < 0.33  # the real set is about one third cats
        breed = rng.choice(cats if is_cat else dogs)
        counters[breed] = counters.get(breed, 0) + 1
        # species decides the style; breeds add variety through the random draw
        img = synthetic_image(0 if is_cat else 1, rng, _random_size(rng, min_side, max_side))
        img.save(images / f"{breed}_{counters[breed]}.jpg", quality=90)
    return root


# multi-label: each label is a shape drawn in its own colour
_MULTI_SHAPES = {
    "circle": (230, 40, 40), "square": (40, 200, 60), "triangle": (50, 90, 240), "cross": (235, 220, 40),
    "ring": (220, 60, 220), "bar": (40, 220, 230),
}


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: tuple) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) // 2, (y0 + y1) // 2, (x1 - x0) // 2
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        draw.rectangle([x0, cy - r // 3, x1, cy + r // 3], fill=fill)
        draw.rectangle([cx - r // 3, y0, cx + r // 3, y1], fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(2, r // 3))
    else:  # bar
        draw.rectangle([x0, cy - r // 4, x1, cy + r // 4], fill=fill)


def make_synthetic_multi_label(
    path: str | Path,
    n_images: int = 64,
    classes: Sequence[str] = ("circle", "square", "triangle", "cross", "ring"),
    max_labels: int = 3,
    valid_pct: float = 0.25,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a multi-label set (fastai's planet/PASCAL layout) and return ``path``.

    ``path/images/img_<i>.jpg`` shows 1 to ``max_labels`` distinct shapes, each in its own colour (the
    labels); ``path/labels.csv`` has columns ``fname`` (``images/img_<i>.jpg``), ``labels`` (space-separated, in
    ``classes`` order) and ``is_valid`` (the last ``valid_pct`` of the rows). Same arguments, same bytes.
    Classes: any of circle, square, triangle, cross, ring, bar.
    """
    unknown = [c for c in classes if c not in _MULTI_SHAPES]
    if unknown or not 1 <= max_labels <= min(4, len(classes)):  # one shape per quadrant
        raise ValueError(f"classes must be some of {list(_MULTI_SHAPES)} and max_labels in [1, {min(4, len(classes))}], "
                         f"got {list(classes)!r} and {max_labels}")
    root = Path(path)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n_valid = round(n_images * valid_pct)
    rows = ["fname,labels,is_valid"]
    cells = [(cx, cy) for cy in range(2) for cx in range(2)]  # one shape per quadrant: they never overlap
    for i in range(n_images):
        labels = sorted(rng.sample(range(len(classes)), rng.randint(1, max_labels)))
        bg = tuple(rng.randint(0, 70) for _ in range(3))
        img = Image.new("RGB", (size, size), bg)
        draw = ImageDraw.Draw(img)
        half = size // 2
        for k, (qx, qy) in zip(labels, rng.sample(cells, len(labels))):
            r = rng.randint(half // 3, half // 2 - 2)
            cx, cy = qx * half + rng.randint(r, half - r), qy * half + rng.randint(r, half - r)
            fill = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in _MULTI_SHAPES[classes[k]])
            _draw_shape(draw, classes[k], (cx - r, cy - r, cx + r, cy + r), fill)
        noise = Image.effect_noise((size, size), rng.uniform(8, 20)).convert("RGB")
        Image.blend(img, noise, 0.1).save(root / "images" / f"img_{i:03d}.jpg", quality=90)
        names = " ".join(classes[k] for k in labels)
        rows.append(f"images/img_{i:03d}.jpg,{names},{i >= n_images - n_valid}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root
