"""The package's layers point one way: data <- models <- train <- inference <- demo <- cli.

Two independent checks: import-linter's ``layers`` contract in pyproject.toml (``lint-imports``), and
an AST walk of every module that sees imports inside functions too, resolves relative imports, and
follows a public name imported from the package root (``from vision_tl import X``) to the module
``_EXPORTS`` says defines it (the root imports lazily, so a linter would not see that edge).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import vision_tl
from tests.import_targets import from_target

PKG = Path(vision_tl.__file__).parent
ROOT = PKG.parent

# lowest first; a module's layer is the first entry its dotted name starts with
LAYERS: list[tuple[str, ...]] = [
    ("vision_tl.files", "vision_tl.metrics", "vision_tl.basics"),
    ("vision_tl.data",),
    ("vision_tl.models",),
    ("vision_tl.train",),
    ("vision_tl.inference",),
    ("vision_tl.demo", "vision_tl.serve", "vision_tl.doctor"),
    ("vision_tl.cli", "vision_tl.cli_multi", "vision_tl.cli_data", "vision_tl.cli_output", "vision_tl.cli_quantize",
     "vision_tl.cli_serve", "vision_tl.cli_doctor", "vision_tl.cli_card", "vision_tl.cli_track", "vision_tl.cli_bad",
     "vision_tl.cli_messages"),
    ("vision_tl.all",),
]


def layer_of(module: str) -> int | None:
    """The layer index of a dotted module name (None for the package root itself)."""
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, target)`` for every import anywhere in ``tree`` (functions included), resolved to
    absolute names; ``from vision_tl import X`` resolves ``X`` through ``vision_tl._EXPORTS``."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = from_target(node, package)
            for a in node.names:
                if target == "vision_tl" and a.name in vision_tl._EXPORTS:
                    out.append((node.lineno, "vision_tl" + vision_tl._EXPORTS[a.name]))
                else:
                    out.append((node.lineno, f"{target}.{a.name}" if layer_of(target) is None else target))
    return out


def upward_imports(path: Path) -> list[str]:
    """The imports in ``path`` of a module in a higher layer than its own, as readable strings."""
    module = module_name(path)
    own = layer_of(module)
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for line, target in imported_modules(tree, module, path.name == "__init__.py"):
        if not target.startswith("vision_tl"):
            continue
        theirs = layer_of(target)
        if own is not None and theirs is not None and theirs > own:
            bad.append(f"{path.relative_to(ROOT)}:{line} ({module}) imports {target}")
    return bad


def test_every_module_belongs_to_a_layer():
    stray = [module_name(p) for p in PKG.rglob("*.py") if p != PKG / "__init__.py" and layer_of(module_name(p)) is None]
    assert stray == [], f"modules in no layer (add them to LAYERS here and to pyproject's contract): {stray}"


def test_no_module_imports_a_higher_layer_even_inside_functions():
    bad = [b for p in sorted(PKG.rglob("*.py")) for b in upward_imports(p)]
    assert bad == [], "upward imports:\n" + "\n".join(bad)


def test_the_ast_walk_sees_an_upward_import_inside_a_function():
    """The check above can fail: relative and public-name imports of the inference layer inside a
    function of a train module are both found and resolved."""
    src = "def f():\n    from ..inference.predict import Predictor\n    from vision_tl import load_learner\n"
    found = [t for _, t in imported_modules(ast.parse(src), "vision_tl.train.probe", is_package=False)]
    assert found == ["vision_tl.inference.predict", "vision_tl.inference.load"]
    assert all(layer_of(t) > layer_of("vision_tl.train.probe") for t in found)


def test_lint_imports_keeps_the_layers_contract():
    exe = Path(sys.executable).parent / "lint-imports"
    if not exe.exists():
        pytest.skip(f"import-linter is not installed next to {sys.executable} (pip install 'vision_tl[test]')")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_the_public_learner_adds_prediction_and_export_on_top_of_the_training_learner(tiny_dls):
    """train/ cannot import inference/, so the conveniences live on the inference layer's subclass,
    and that subclass is what ``vision_tl.Learner`` and ``vision_learner`` give users."""
    import inspect

    from vision_tl.train.learner import TrainingLearner as TrainLearner

    assert issubclass(vision_tl.Learner, TrainLearner) and vision_tl.Learner is not TrainLearner
    for name in ("predict", "predict_batch", "top_k", "tta", "show_results", "export", "export_onnx"):
        assert hasattr(vision_tl.Learner, name) and not hasattr(TrainLearner, name), name
    dls = tiny_dls(n=8, size=16)
    learn = vision_tl.vision_learner(dls, "resnet10t", pretrained=False, device="cpu")
    assert type(learn) is vision_tl.Learner and callable(learn.export)

    class MyLearner(vision_tl.Learner):
        pass

    assert type(vision_tl.vision_learner(dls, "resnet10t", pretrained=False, device="cpu",
                                         learner_cls=MyLearner)) is MyLearner
    # what help() shows is what a call does
    assert inspect.signature(vision_tl.vision_learner).parameters["learner_cls"].default is vision_tl.Learner
    assert vision_tl.cnn_learner is vision_tl.vision_learner
