"""The onnxruntime backend of ``load_learner``: parity with torch, the per-user graph cache, threads, auto, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import torch

from vision_tl.data.batch_tfms import imagenet_stats
from vision_tl.data.item_tfms import Resize
from vision_tl.inference import backends, graph_cache
from vision_tl.inference.load import load_learner
from vision_tl.inference.predict import Predictor
from vision_tl.inference.runners import OrtRunner, Runner, TorchRunner
from vision_tl.inference.vtl import read_vtl
from vision_tl.models.build import ModelConfig, build_model

from .helpers import VOCAB

pytestmark = [
    pytest.mark.slow,  # every new graph is an ONNX export (seconds)
    pytest.mark.skipif(not backends.onnxruntime_available(), reason="needs onnxruntime, onnx and onnxscript"),
]


def _predictor(activation: str = "softmax", seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    cfg = ModelConfig(arch="resnet10t", n_out=len(VOCAB), input_size=(32, 32))
    model = build_model(cfg, pretrained=False).eval()
    return Predictor(model, VOCAB, [Resize(32)], imagenet_stats, device="cpu", model_config=cfg,
                     multi_label=activation == "sigmoid")


@pytest.fixture(scope="module")
def _built(tmp_path_factory):
    """``(model.vtl, its graph cache)``: one export and one graph for the module."""
    folder, cache = tmp_path_factory.mktemp("ort"), tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(graph_cache.ENV_DIR, str(cache))
        path = _predictor().export(folder / "model.vtl")
        load_learner(path, device="cpu", backend="onnxruntime")
    return path, cache / "onnx"


@pytest.fixture
def built(_built, monkeypatch):
    """The module's ``.vtl`` file, with the cache that holds its graph as this test's cache."""
    monkeypatch.setenv(graph_cache.ENV_DIR, str(_built[1].parent))
    return _built[0]


@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_onnxruntime_gives_the_labels_and_probabilities_of_torch(activation, tmp_path, image_files, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "cache"))
    path = _predictor(activation).export(tmp_path / "model.vtl")
    ref = load_learner(path, device="cpu", backend="torch")
    ort = load_learner(path, device="cpu", backend="onnxruntime")
    assert (ref.backend, ort.backend, ort.activation) == ("torch", "onnxruntime", activation)
    assert isinstance(ort.runner, OrtRunner) and isinstance(ref.runner, TorchRunner)
    expected, got = ref.predict_batch(image_files, bs=8, progress=False), ort.predict_batch(image_files, bs=8, progress=False)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    assert ref.decode(expected) == ort.decode(got)
    sums = got.sum(1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-4) == (activation == "softmax")
    label, idx, probs = ort.predict(image_files[0])
    ref_label, ref_idx, _ = ref.predict(image_files[0])
    assert label == ref_label and torch.equal(torch.as_tensor(idx), torch.as_tensor(ref_idx))
    torch.testing.assert_close(probs, expected[0], atol=1e-4, rtol=0)


def test_loading_writes_nothing_beside_the_model_and_reuses_the_cached_graph(built, monkeypatch, image_files, tmp_path):
    cache_of = graph_cache.cache_dir()
    assert sorted(p.name for p in built.parent.iterdir()) == ["model.vtl"]
    sha = hashlib.sha256(built.read_bytes()).hexdigest()
    assert sorted(p.name for p in cache_of.iterdir()) == [f"{sha}.fp32.onnx"]

    def no_build(*a, **k):
        raise AssertionError("the cached graph should have been used")

    monkeypatch.setattr(backends, "build_graph", no_build)
    pred = load_learner(built, device="cpu", backend="onnxruntime")
    assert pred.backend == "onnxruntime"
    torch.testing.assert_close(pred.predict(image_files[0])[2],
                               load_learner(built, device="cpu", backend="torch").predict(image_files[0])[2],
                               atol=1e-4, rtol=0)
    moved = shutil.copy2(built, tmp_path / "renamed.vtl")  # found by content, not by name or folder
    assert load_learner(moved, device="cpu", backend="onnxruntime").backend == "onnxruntime"


def test_a_cached_graph_of_another_file_is_not_trusted(built, tmp_path, image_files):
    cache_of = graph_cache.cache_dir()
    path = _predictor(seed=1).export(tmp_path / "model.vtl")  # another model
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    old = next(cache_of.glob("*.onnx"))
    shutil.copy2(old, graph_cache.entry_path(sha))  # the right name with the other model's graph inside
    pred = load_learner(path, device="cpu", backend="onnxruntime")
    expected = load_learner(path, device="cpu", backend="torch").predict_batch(image_files[:6], progress=False)
    torch.testing.assert_close(pred.predict_batch(image_files[:6], progress=False), expected, atol=1e-4, rtol=0)
    assert graph_cache.entry_path(sha).read_bytes() != old.read_bytes()  # rebuilt in place
    graph_cache.entry_path(sha).unlink()


def test_an_unwritable_cache_loads_from_memory(built, tmp_path, monkeypatch, image_files):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")  # fails even for root, unlike chmod
    monkeypatch.setenv(graph_cache.ENV_DIR, str(blocker / "cache"))
    path = tmp_path / "model.vtl"
    shutil.copy2(built, path)
    pred = load_learner(path, device="cpu", backend="onnxruntime")
    assert pred.backend == "onnxruntime"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vtl", "not-a-folder"]
    expected = load_learner(path, device="cpu", backend="torch").predict(image_files[0])[2]
    torch.testing.assert_close(pred.predict(image_files[0])[2], expected, atol=1e-4, rtol=0)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user (root writes anyway)")
def test_a_read_only_model_folder_is_left_untouched(built, tmp_path, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "cache"))
    folder = tmp_path / "models"
    folder.mkdir()
    path = folder / "model.vtl"
    shutil.copy2(built, path)
    folder.chmod(0o555)
    try:
        assert load_learner(path, device="cpu", backend="onnxruntime").backend == "onnxruntime"
        assert [p.name for p in folder.iterdir()] == ["model.vtl"]
    finally:
        folder.chmod(0o755)


def test_threads_follow_torch_or_num_threads(built):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert load_learner(built, device="cpu", backend="onnxruntime").num_threads == 1
        assert load_learner(built, device="cpu", backend="onnxruntime", num_threads=3).num_threads == 3
    finally:
        torch.set_num_threads(before)


def test_auto_picks_onnxruntime_on_the_cpu(built, monkeypatch):
    assert load_learner(built, device="cpu", backend="auto").backend == "onnxruntime"
    monkeypatch.delenv("VISION_TL_BACKEND", raising=False)
    assert load_learner(built, device="cpu").backend == "onnxruntime"  # auto is the default
    monkeypatch.setenv("VISION_TL_BACKEND", "torch")
    assert load_learner(built, device="cpu").backend == "torch"


def test_auto_falls_back_to_torch_when_the_model_does_not_export(built, tmp_path, monkeypatch):
    monkeypatch.setenv(graph_cache.ENV_DIR, str(tmp_path / "empty-cache"))
    path = tmp_path / "model.vtl"
    shutil.copy2(built, path)

    def fails(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(backends, "build_graph", fails)
    with pytest.warns(UserWarning, match="does not run in onnxruntime.*unsupported operator"):
        assert load_learner(path, device="cpu", backend="auto").backend == "torch"
    with pytest.raises(RuntimeError, match="unsupported operator"):
        load_learner(path, device="cpu", backend="onnxruntime")


def test_auto_uses_torch_without_onnxruntime_and_asking_for_it_says_what_to_install(built, monkeypatch):
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    assert load_learner(built, device="cpu", backend="auto").backend == "torch"
    with pytest.raises(ImportError, match=r"vision_tl\[onnx\]"):
        load_learner(built, device="cpu", backend="onnxruntime")


def test_auto_uses_torch_off_the_cpu_and_onnxruntime_refuses_it(built):
    pred = load_learner(built, device="cpu", backend="torch")

    class OnGpu(Runner):  # as if loaded on a GPU (none here): only the device is read
        name, device = "torch", torch.device("cuda")

    pred.runner = OnGpu()
    vtl = read_vtl(built)
    assert backends.make_runner(pred, vtl, "auto") is pred.runner
    with pytest.raises(ValueError, match="runs on the CPU, got device 'cuda'"):
        backends.make_runner(pred, vtl, "onnxruntime")


@pytest.mark.parametrize("kwargs, match", [({"backend": "tensorrt"}, "backend must be one of .* got 'tensorrt'"),
                                           ({"precision": "fp16"}, "precision must be one of .* got 'fp16'"),
                                           ({"num_threads": 0}, "num_threads must be a positive int .* got 0")])
def test_bad_backend_arguments_are_refused_naming_the_value(built, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_learner(built, device="cpu", **kwargs)


def test_cli_predict_and_evaluate_take_backend(built, class_folder, capsys):
    from vision_tl.cli import main

    out = {}
    for backend in ("torch", "onnxruntime"):
        assert main(["predict", str(built), str(class_folder), "--json", "--device", "cpu", "--backend", backend]) == 0
        out[backend] = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in out["torch"]] == [r["label"] for r in out["onnxruntime"]]
    assert max(abs(a["prob"] - b["prob"]) for a, b in zip(out["torch"], out["onnxruntime"])) < 1e-4
    assert main(["evaluate", str(built), str(class_folder), "--json", "--device", "cpu", "--backend", "onnxruntime"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == len(out["torch"])
    with pytest.raises(SystemExit) as e:
        main(["predict", str(built), str(class_folder), "--backend", "tensorrt"])
    assert e.value.code == 2
