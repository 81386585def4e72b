"""A ``Predictor`` holds one runner: any ``Runner`` subclass plugs in without touching the predictor."""

from __future__ import annotations

import pytest
import torch

from vision_tl.data.item_tfms import Resize
from vision_tl.inference.runners import Runner, TorchRunner


class FixedRunner(Runner):
    """A stand-in for a new kind of runner (say, TensorRT): always says class 2, and records the batches."""

    name = "fixed"

    def __init__(self) -> None:
        self.batches: list[tuple] = []

    def __call__(self, xb: torch.Tensor) -> torch.Tensor:
        assert xb.dtype == torch.uint8 and xb.ndim == 4 and xb.shape[1] == 3
        self.batches.append(tuple(xb.shape))
        return torch.tensor([[0.1, 0.2, 0.7]]).repeat(len(xb), 1)


def test_a_new_runner_serves_predict_predict_batch_and_top_k(predictor, image_files):
    runner = FixedRunner()
    predictor.runner = runner
    assert predictor.backend == "fixed" and predictor.device == torch.device("cpu")
    label, idx, probs = predictor.predict(image_files[0])
    assert (label, int(idx)) == (predictor.vocab[2], 2)
    assert predictor.top_k(image_files[0], k=2) == [(predictor.vocab[2], pytest.approx(0.7)),
                                                    (predictor.vocab[1], pytest.approx(0.2))]
    probs = predictor.predict_batch(image_files[:5], bs=2, progress=False)
    assert probs.shape == (5, 3) and predictor.decode(probs) == [predictor.vocab[2]] * 5
    assert runner.batches == [(1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32)]
    assert "backend=fixed" in repr(predictor)


def test_the_torch_runner_is_the_default_and_follows_the_spec(predictor, image_files):
    assert isinstance(predictor.runner, TorchRunner) and predictor.backend == "torch"
    before = predictor.predict(image_files[0])[2]
    predictor.normalize = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # the runner is rebuilt with the new spec
    assert predictor.runner.spec is predictor.spec
    assert not torch.allclose(predictor.predict(image_files[0])[2], before)


def test_a_graph_runner_refuses_spec_changes_it_cannot_follow(predictor):
    predictor.runner = FixedRunner()
    predictor.item_tfms = [Resize(32, method="squish")]  # item transforms run in the predictor: fine
    with pytest.raises(ValueError, match="the fixed backend has the batch transforms, normalization and activation"):
        predictor.normalize = ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])


def test_a_runner_that_cannot_move_says_which_backend_to_use(predictor):
    predictor.runner = FixedRunner()
    assert predictor.to("cpu").backend == "fixed"
    with pytest.raises(ValueError, match="the fixed backend runs on cpu, got device 'cuda'.*backend='torch'"):
        predictor.to("cuda")
    torch_runner = TorchRunner(predictor.model, predictor.spec, "cpu")
    assert torch_runner.to("cpu") is not torch_runner and torch_runner.to("cpu").device == torch.device("cpu")


def test_from_spec_takes_a_runner(predictor, image_files):
    from vision_tl.inference.predict import Predictor

    other = Predictor.from_spec(predictor.model, predictor.vocab, predictor.spec, runner=FixedRunner())
    assert other.backend == "fixed" and other.spec is predictor.spec
    assert other.predict(image_files[0])[0] == predictor.vocab[2]
