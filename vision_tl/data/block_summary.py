"""``DataBlock.summary``: one item through every step, and where and why the pipeline breaks."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .describe import GetterError, describe, describe_source, func_name
from .show import pipeline_summary
from .sources import LabelError
from .splitters import as_rows

if TYPE_CHECKING:
    from .datablock import DataBlock
    from .dataloaders import DataLoaders

__all__ = ["block_summary"]


def block_summary(block: DataBlock, source: Any, bs: int = 4) -> tuple[str, DataLoaders | None]:
    """The report (ends with "OK: ..." or "FAILED at <step>: <error>") and the DataLoaders, if built."""

    lines = [f"DataBlock summary for {describe_source(source)}", repr(block)]
    step, dls = f"get_items {func_name(block.get_items) if block.get_items else '(the source is the items)'}", None
    try:
        items = block.items_of(source)
        rows = as_rows(items)
        lines.append(f"{step}: {len(items)} items" + (f"; the first is {describe(rows[0])}" if len(items) else ""))
        if len(items) == 0:
            raise ValueError(f"no items found in {describe_source(source)}")
        step = f"splitter {func_name(block.splitter)}"
        train_idx, valid_idx = block.split(items)
        lines.append(f"{step}: {len(train_idx)} train, {len(valid_idx)} valid")
        if not train_idx:
            raise ValueError("the split left no training items")
        row = rows[train_idx[0]]
        step = f"get_x on {describe(row)}"
        x = block.x_of(row)
        lines.append(f"get_x: {describe(row)} -> {x!s}")
        step = f"get_y on {describe(row)}"
        y = block.y_of(row)
        lines.append(f"get_y: -> {y!r} (read by {block.target_block!r})")
        step = "get_x/get_y on every item, then the vocab"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                dls = block.dataloaders(source, bs=bs, num_workers=0)
            except LabelError as e:  # another item than the first: name the step and that item
                step = f"get_y on {e.path}"
                raise
            except GetterError as e:
                step = f"{e.step} on {describe(e.item)}"
                raise
            except FileNotFoundError:
                step = "get_x (the files it gave)"
                raise
        lines += [f"warning: {w.message}" for w in caught]
        lines.append(f"Vocab ({dls.c}): {dls.vocab[:20]}{'...' if len(dls.vocab) > 20 else ''}"
                     if dls.target_kind != "regression" else f"Regression targets: {dls.c} value(s) per image")
        step = "the pipeline"
        lines.append(pipeline_summary(dls))
    except Exception as e:  # noqa: BLE001 - the point is to report where it breaks
        lines.append(f"FAILED at {step}: {type(e).__name__}: {e}")
    return "\n".join(lines), dls
