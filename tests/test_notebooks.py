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


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_in_fast_mode(name, tmp_path):
    nb = _run(name, tmp_path)  # a cell that raises makes execute() raise CellExecutionError: the test fails
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")


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
