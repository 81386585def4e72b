"""``vision-tl card MODEL.vtl``: print (or write) a Hugging Face-style model card for an exported model.

Everything comes from the file's manifest (its ``"card"`` entry: data fingerprint, split, recipe,
per-epoch results, versions); nothing is downloaded. ``vision-tl card model.vtl > README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_data import CLIError

__all__ = ["add_parser", "cmd_card"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``card`` on the ``vision-tl`` subcommands."""
    p = sub.add_parser("card", help="write a Hugging Face-style model card (README.md) for a .vtl model",
                       description="Print a model card (YAML front matter, classes, intended use, training data, "
                       "recipe, evaluation, limitations) for an exported model. No network is needed.")
    p.add_argument("model", type=Path, help="an exported .vtl file")
    p.add_argument("--out", type=Path, help="write the card to this file instead of printing it")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return p


def cmd_card(args: argparse.Namespace) -> int:
    """Print the card of ``args.model`` (or write it to ``args.out``)."""
    from vision_tl import model_card, read_manifest

    from .files import replacing

    if args.out is not None and args.out.exists() and not args.overwrite:
        raise CLIError(f"--out {str(args.out)!r} already exists (pass --overwrite to replace it)")
    text = model_card(read_manifest(args.model), name=args.model.name)
    if args.out is None:
        print(text, end="")
        return 0
    with replacing(args.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"saved {args.out}")
    return 0
