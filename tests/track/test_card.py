"""The model card: recorded by every export, shown by `vision-tl info`, written by `vision-tl card`."""

from __future__ import annotations

import hashlib

import pytest

from vision_tl import read_manifest
from vision_tl.cli import main
from vision_tl.inference.card import epoch_rows

from .helpers import epoch_values

pytestmark = pytest.mark.slow  # uses the shared tracked run (tracked_run)


def test_export_records_fingerprint_split_recipe_epochs_and_versions(tracked_run, small_folder):
    card = read_manifest(tracked_run.export)["card"]
    files = sorted(p for p in small_folder.rglob("*.jpg"))
    lines = sorted(f"{p.relative_to(small_folder).as_posix()}\t{p.parent.name}" for p in files)
    assert card["data"] == {"n_files": len(files), "folder": small_folder.name,
                            "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}
    assert card["split"] == {"seed": 7, "n_train": 9, "n_valid": 3}
    assert card["recipe"]["recipe"] == "fine_tune" and card["recipe"]["recipe.epochs"] == 1
    assert card["recipe"]["arch"] == "resnet10t" and card["recipe"]["batch_size"] == 4
    rows = epoch_rows(card)
    assert [r["frozen"] for r in rows] == [True, False]
    for name in ("train_loss", "valid_loss", "accuracy"):
        assert [r[name] for r in rows] == epoch_values(tracked_run, name)
    assert {"vision_tl", "torch", "timm", "python"} <= set(card["versions"])


def test_same_learner_exports_the_same_bytes(tracked_run, tmp_path):
    a, b = tracked_run.learn.export(tmp_path / "a.vtl"), tracked_run.learn.export(tmp_path / "b.vtl")
    assert a.read_bytes() == b.read_bytes()  # no clock time or object address in the card


def test_info_prints_the_cards_facts(tracked_run, capsys):
    assert main(["info", str(tracked_run.export)]) == 0
    out = capsys.readouterr().out
    assert "data:          12 files in" in out and "split:         9 train / 3 valid, seed 7" in out
    assert "recipe:        fine_tune(" in out and "trained:       2 epoch(s)" in out


def test_card_command_writes_a_hugging_face_style_card(tracked_run, capsys, tmp_path):
    import yaml

    assert main(["card", str(tracked_run.export)]) == 0
    text = capsys.readouterr().out
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["library_name"] == "vision_tl" and "image-classification" in meta["tags"]
    assert meta["metrics"] == ["accuracy"]
    for section in ("## Classes", "## Intended use", "## Training data", "## Training recipe", "## Evaluation",
                    "## Limitations"):
        assert section in body
    assert ", ".join(f"`{v}`" for v in tracked_run.vocab) in body
    table = [ln for ln in body.splitlines() if ln.startswith("| 1 | no |")]
    assert table and f"{epoch_values(tracked_run, 'valid_loss')[-1]:.4f}" in table[0]
    assert main(["card", str(tracked_run.export), "--out", str(tmp_path / "README.md")]) == 0
    assert (tmp_path / "README.md").read_text() == text
    assert main(["card", str(tracked_run.export), "--out", str(tmp_path / "README.md")]) == 1  # no --overwrite


def test_a_file_without_a_card_still_gets_one_from_its_manifest():
    from vision_tl.inference.card import card_summary, model_card

    m = {"model_config": {"arch": "resnet18"}, "vocab": ["cat", "dog"], "versions": {"vision_tl": "0.1.0"}}
    assert "none (exported before model cards" in card_summary(m)
    text = model_card(m)
    assert text.startswith("---\nlibrary_name: vision_tl\n") and "`cat`, `dog`" in text and "Not recorded" in text
