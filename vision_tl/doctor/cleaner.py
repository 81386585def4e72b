"""``ImageClassifierCleaner``: fastai's notebook widget for cleaning a set after the first model.

Pick a class and Train/Valid; the images labelled with that class show highest loss first, each with a
Keep / Delete / <class> choice. Unlike fastai's, the choices are kept for every class and split while
you switch between them; ``to_decisions("decisions.csv")`` writes them all for ``vision-tl doctor --apply``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .decisions import DELETE, write_decisions
from .deps import require

__all__ = ["ImageClassifierCleaner"]

KEEP_OPT, DELETE_OPT = "<Keep>", "<Delete>"
SPLITS = ("Train", "Valid")


def _png(path: str, height: int) -> bytes:
    from vision_tl.data.images import ImageError, open_image

    try:
        img = open_image(path, draft_size=(height, height))
    except ImageError:
        return b""
    img.thumbnail((height * 2, height))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class ImageClassifierCleaner:
    """Review a Learner's data, highest loss first, and mark images to delete or relabel.

    Args:
        learn: a single-label Learner (its DataLoaders hold image files).
        max_n: at most this many images per class and split, the highest losses.
        height: thumbnail height in pixels.

    ``cleaner.delete()`` / ``cleaner.change()`` answer for the class and split on screen (indices into
    ``cleaner.fns``, as fastai's); ``cleaner.choices`` holds every choice made, by file.
    """

    def __init__(self, learn: Any, max_n: int = 100, height: int = 128):
        widgets = require("ipywidgets")
        if getattr(learn.dls, "multi_label", False):
            raise ValueError("ImageClassifierCleaner works on single-label data; this Learner is multi-label")
        self.learn, self.max_n, self.height = learn, int(max_n), int(height)
        self.vocab = [str(v) for v in learn.dls.vocab]
        self._by_split: dict[int, list[tuple[str, int, float]]] = {}
        for ds_idx, ds in enumerate((learn.dls.train_ds, learn.dls.valid_ds)):
            _, targets, losses = learn.get_preds(ds_idx=ds_idx, with_loss=True)[:3]
            self._by_split[ds_idx] = [(str(item), int(t), float(loss))
                                      for item, t, loss in zip(ds.items, targets.tolist(), losses.tolist())]
        self.choices: dict[str, str] = {}  # path -> "delete" or a class name (Keep is the default: no entry)
        self.dd_cats = widgets.Dropdown(options=self.vocab, description="Class")
        self.dd_ds = widgets.Dropdown(options=list(SPLITS), description="Split")
        self.grid = widgets.Box(layout=widgets.Layout(display="flex", flex_flow="row wrap"))
        self.widget = widgets.VBox([widgets.HBox([self.dd_cats, self.dd_ds]), self.grid])
        self.dd_cats.observe(lambda _: self._show(), names="value")
        self.dd_ds.observe(lambda _: self._show(), names="value")
        self.fns: list[str] = []
        self.dropdowns: list[Any] = []
        self._show()

    def _show(self) -> None:
        """Fill the grid with the current class and split, each image's choice as it was left."""
        widgets = require("ipywidgets")
        cat = self.vocab.index(self.dd_cats.value)
        rows = [r for r in self._by_split[SPLITS.index(self.dd_ds.value)] if r[1] == cat]
        rows = sorted(rows, key=lambda r: -r[2])[: self.max_n]
        self.fns = [r[0] for r in rows]
        opts = [KEEP_OPT, DELETE_OPT] + self.vocab
        self.dropdowns, boxes = [], []
        for path, _, loss in rows:
            choice = self.choices.get(path)
            dd = widgets.Dropdown(options=opts, value=DELETE_OPT if choice == DELETE else choice or KEEP_OPT,
                                  layout=widgets.Layout(width="max-content"))
            dd.observe(lambda change, p=path: self._choose(p, change["new"], self.dd_cats.value), names="value")
            img = widgets.Image(value=_png(path, self.height), format="png",
                                layout=widgets.Layout(height=f"{self.height}px"))
            boxes.append(widgets.VBox([img, widgets.Label(f"loss {loss:.3f}"), dd]))
            self.dropdowns.append(dd)
        self.grid.children = tuple(boxes)

    def _choose(self, path: str, value: str, label: str) -> None:
        if value in (KEEP_OPT, label):  # its own class: nothing to change
            self.choices.pop(path, None)
        else:
            self.choices[path] = DELETE if value == DELETE_OPT else value

    def delete(self) -> list[int]:
        """Indices into ``fns`` (the images on screen) marked Delete."""
        return [i for i, dd in enumerate(self.dropdowns) if dd.value == DELETE_OPT]

    def change(self) -> list[tuple[int, str]]:
        """``(index into fns, new class)`` for the images on screen given another class."""
        return [(i, dd.value) for i, dd in enumerate(self.dropdowns)
                if dd.value not in (KEEP_OPT, DELETE_OPT, self.dd_cats.value)]

    def to_decisions(self, path: str | Path) -> Path:
        """Write every choice (all classes and splits) as ``path,action,why`` rows for ``--apply``."""
        return write_decisions(path, [(p, a, "ImageClassifierCleaner") for p, a in sorted(self.choices.items())])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
