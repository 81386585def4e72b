"""Unreadable images on the command line: found before any work (``find_bad_images``), then either a stop
naming every one, or, with ``--skip-bad``, left out and reported (``predict`` gives them an error column).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_data import bad_images_error

__all__ = ["good_images", "report_skipped", "warn_trained_on", "with_error_rows"]


def good_images(files: Sequence[Path], skip_bad: bool, what: str = "") -> tuple[list[Path], dict[str, str]]:
    """``(files that can be read, {bad file: why})``; without ``skip_bad`` a bad file is a one-line error
    naming all of them."""
    from vision_tl import find_bad_images

    bad = find_bad_images(files)
    if bad and not skip_bad:
        raise bad_images_error(bad, what or "input")
    errors = {str(e.path): e.reason for e in bad}
    return [f for f in files if str(f) not in errors], errors


def with_error_rows(rows: list[dict], all_files: Sequence[Path], errors: dict[str, str],
                    blank: dict[str, Any]) -> list[dict]:
    """``rows`` (one per good file, in order) with a row for each bad file at its place, holding ``error``."""
    good = iter(rows)
    out = []
    for f in all_files:
        if str(f) in errors:
            out.append({"file": str(f), **blank, "error": errors[str(f)]})
        else:
            out.append({**next(good), "error": ""})
    return out


def report_skipped(errors: dict[str, str], what_happened: str) -> None:
    """One line on stderr: how many files ``--skip-bad`` passed over, and what became of them."""
    if errors:
        print(f"--skip-bad: {len(errors)} image(s) could not be read, {what_happened} "
              f"(first: {next(iter(errors))}: {next(iter(errors.values()))})", file=sys.stderr)


def warn_trained_on(model_file: Path, files: Sequence[Path]) -> None:
    """Warn when ``evaluate`` is about to score images the model was trained on (the export lists them)."""
    from vision_tl import read_manifest

    from .inference.train_items import trained_on

    seen = trained_on(read_manifest(model_file), files)
    if seen:
        warnings.warn(f"{len(seen)} of the {len(files)} images were in the model's training set (same name "
                      f"and size, e.g. {seen[0]}): these scores are optimistic; evaluate on images the model "
                      "has not seen", stacklevel=2)
