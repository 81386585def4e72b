"""Issue 22, item 7: the README shows the CPU-only PyTorch install next to the quick start, and its
timings name the machine and its load."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _section(title: str) -> str:
    return README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_quick_start_shows_the_cpu_only_install_and_its_size():
    quick = _section("Quick start")
    assert "--index-url https://download.pytorch.org/whl/cpu" in quick
    assert re.search(r"\d+(\.\d+)? GB", quick) and "not measured" in quick.replace("have not measured", "not measured")


def test_timings_name_the_machine_and_its_load():
    for line_no, line in enumerate(README.splitlines(), 1):
        if re.search(r"\babout \d+ (s|minutes)\b", line):
            context = " ".join(README.splitlines()[max(0, line_no - 4):line_no + 2])  # the sentence around it
            assert "AMD EPYC" in context, line
            assert "idle" in context or "CI run" in context, line
