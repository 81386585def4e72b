"""docs/CONTRACTS.md stays true: its API part is what tools/gen_contracts.py generates from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gen_contracts.py"


def test_contracts_md_is_generated_from_the_current_code():
    r = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, (f"docs/CONTRACTS.md is out of date with the code. Regenerate it:\n\n"
                               f"    python tools/gen_contracts.py\n\n{r.stderr}")


def test_the_generated_part_follows_the_hand_written_conventions():
    text = (ROOT / "docs" / "CONTRACTS.md").read_text()
    conventions, marker, api = text.partition("<!-- Everything below is generated")
    assert marker and "## Conventions" in conventions and "uint8 HWC" in conventions
    assert "### train/learner.py" in api and "- class `TrainingLearner(Loop)`" in api
    assert "`.fine_tune(epochs: int, base_lr: float=0.002" in api  # a signature, as written in the source
