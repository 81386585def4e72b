"""Every tutorial notebook runs top to bottom in its fast mode; a failing cell fails the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_cats_vs_dogs.ipynb", "02_your_own_images.ipynb", "03_inference.ipynb",
         "04_multi_label_and_datablock.ipynb"]


def _run(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = dict(os.environ, VISION_TL_NOTEBOOK_FAST="1", HF_HUB_OFFLINE="1", MPLBACKEND="Agg",
               VISION_TL_HOME=str(cwd / "home"))
    env.pop("VISION_TL_MIRROR", None)
    # jupyter_client starts kernel specs that say "python" with this interpreter (sys.executable)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    return nb


def test_notebooks_are_committed_without_outputs():
    for name in NAMES:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{name} has outputs"


def _text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell showed as text: its streams (stdout, stderr), results and errors."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(str(out.get("data", {}).get("text/plain", "")))
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def _images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_in_fast_mode(name, tmp_path):
    nb = _run(name, tmp_path)  # a cell that raises makes execute() raise CellExecutionError: the test fails
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    # what a user reads: no warning about the front end (ipywidgets comes with the notebooks extra) or the data
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        text = _text(cell)
        assert "IProgress" not in text and "TqdmWarning" not in text, cell.source
        assert "Warning" not in text, (cell.source, text)
    for cell in code:  # a Figure returned by a cell's last line is drawn twice by Jupyter's inline backend
        assert "<Figure size" not in _text(cell) and _images(cell) <= 1, cell.source
    if name == "01_cats_vs_dogs.ipynb":  # offline, the answer on screen says why it may be wrong
        last = _text(code[-1])
        assert "exported to" in last and "it is a" in last and "random weights" in last
    if name == "04_multi_label_and_datablock.ipynb":
        threshold = next(_text(c) for c in code if "near = " in c.source)
        assert "threshold" in threshold and "within 1% of the best" in threshold


def test_the_notebooks_extra_brings_a_front_end_and_widgets_and_nb_data_is_ignored():
    import re
    import subprocess

    line = re.search(r"^notebooks = \[(.*)\]$", (NOTEBOOKS.parent / "pyproject.toml").read_text(), re.M).group(1)
    names = {re.match(r'\s*"([\w-]+)', d).group(1) for d in line.split(",")}
    assert {"jupyterlab", "ipywidgets"} <= names
    readme = (NOTEBOOKS.parent / "README.md").read_text()
    assert 'pip install -e ".[notebooks]"' in readme and "jupyter lab notebooks/" in readme
    r = subprocess.run(["git", "check-ignore", "-q", "notebooks/nb_data/pets/images/a.jpg"], cwd=NOTEBOOKS.parent)
    assert r.returncode == 0, "running a notebook leaves notebooks/nb_data/: .gitignore must cover it"


def test_committed_notebooks_match_their_builder():
    """Edit ``notebooks/build_notebooks.py`` and rerun it: the two must not drift apart."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert sorted(builder.NOTEBOOKS) == NAMES
    for name, cells in builder.NOTEBOOKS.items():
        committed = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in committed.cells] == [src for _, src in cells], f"rebuild {name}"
