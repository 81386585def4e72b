"""The Learner's behaviour on tiny in-memory data and a tiny conv net (fast, CPU)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from vision_tl import Learner, vision_learner  # noqa: E402
from vision_tl.metrics import accuracy, metric_name, top_k_accuracy  # noqa: E402
from vision_tl.models.heads import create_head  # noqa: E402
from vision_tl.train.callbacks import Callback, GradientAccumulation, GradientClip  # noqa: E402
from vision_tl.train.learner import TrainingOOMError  # noqa: E402
from vision_tl.train.lr_find import minimum, slide, steep, suggest_lrs, valley  # noqa: E402
from vision_tl.train.schedule import one_cycle_lr  # noqa: E402
from vision_tl.train.tracking import CheckpointCallback, CSVLogger, EarlyStoppingCallback, SaveModelCallback  # noqa: E402


def tiny_model(c: int = 3) -> nn.Sequential:
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
    )
    return nn.Sequential(body, create_head(16, c, lin_ftrs=[16]))


@pytest.fixture
def make_learner(tiny_dls):
    """The helper below, its data from the ``tiny_dls`` fixture."""

    def make_learner(tmp_path, **kwargs) -> Learner:
        kwargs.setdefault("metrics", accuracy)
        return Learner(tiny_dls(), tiny_model(), path=tmp_path, device="cpu", **kwargs)

    return make_learner


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Events(Callback):
    def __init__(self):
        self.events, self.lrs = [], []

    def __call__(self, event):
        self.events.append(event)
        if event == "before_batch" and self.learn.training:
            self.lrs.append((self.learn.fit_index, self.learn.pct_train, self.learn.group_lrs()))


def test_default_splitter_gives_early_body_late_body_and_head(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    body, head = learn.model[0], learn.model[1]
    ids = [{id(p) for p in g} for g in learn.param_groups]
    assert ids == [{id(p) for m in body[:3] for p in m.parameters()},  # first conv + bn
                   {id(p) for m in body[3:] for p in m.parameters()},  # second conv + bn
                   {id(p) for p in head.parameters()}]


@pytest.mark.parametrize("train_bn", [True, False])
def test_frozen_groups_do_not_change_and_batchnorm_follows_train_bn(tmp_path, train_bn, make_learner):
    learn = make_learner(tmp_path, train_bn=train_bn)
    learn.freeze()
    before = snapshot(learn.model)
    learn.fit(1, 1e-2)
    after = learn.model.state_dict()
    assert torch.equal(before["0.0.weight"], after["0.0.weight"])  # frozen conv
    assert torch.equal(before["0.3.weight"], after["0.3.weight"])
    assert not torch.equal(before["1.4.weight"], after["1.4.weight"])  # head trains
    assert torch.equal(before["0.1.weight"], after["0.1.weight"]) != train_bn  # frozen group's BN


def test_unfreeze_trains_everything(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    learn.freeze()
    learn.unfreeze()
    before = snapshot(learn.model)
    learn.fit(1, 1e-2)
    assert not torch.equal(before["0.0.weight"], learn.model.state_dict()["0.0.weight"])


def test_fine_tune_on_a_one_group_model_trains_the_whole_model_in_both_phases(tmp_path, make_learner):
    """fastai: freeze() on a single parameter group freezes nothing (that group is the last one)."""
    learn = make_learner(tmp_path, splitter=lambda m: [list(m.parameters())])
    trainable = []

    class Probe(Callback):
        def before_fit(self):
            trainable.append(all(p.requires_grad for p in self.learn.model.parameters()))

    before = snapshot(learn.model)
    learn.fine_tune(1, cbs=Probe())
    assert trainable == [True, True] and len(learn.recorder.values) == 1
    assert not torch.equal(before["0.0.weight"], learn.model.state_dict()["0.0.weight"])


def test_lr_of_wrong_length_names_group_count(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    with pytest.raises(ValueError, match="3 parameter groups"):
        learn.fit(1, [1e-3, 1e-2])


def test_fine_tune_follows_fastais_recipe_and_records_applied_lrs(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    ev = Events()
    frozen_during = []

    class Probe(Callback):
        def before_fit(self):
            frozen_during.append(not self.learn.raw_model[0][0].weight.requires_grad)

    learn.fine_tune(1, base_lr=2e-3, freeze_epochs=1, cbs=[ev, Probe()])
    assert frozen_during == [True, False]
    phase1 = [(pct, lrs) for fi, pct, lrs in ev.lrs if fi == 0]
    phase2 = [(pct, lrs) for fi, pct, lrs in ev.lrs if fi == 1]
    assert len(phase1) == len(phase2) == len(learn.dls.train)
    for pct, lrs in phase1:  # slice(base_lr), pct_start=0.99, div=25
        expect = [one_cycle_lr(pct, hi, 25, 1e5, 0.99) for hi in (2e-4, 2e-4, 2e-3)]
        assert lrs == pytest.approx(expect)
    for pct, lrs in phase2:  # base_lr/2, slice(base_lr/2/100, base_lr/2), pct_start=0.3, div=5
        expect = [one_cycle_lr(pct, hi, 5, 1e5, 0.3) for hi in (1e-5, 1e-4, 1e-3)]
        assert lrs == pytest.approx(expect)
    assert learn.recorder.lrs[0] == pytest.approx(phase2[0][1])  # the recorder sees the same values


def test_events_fire_in_order(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    ev = Events()
    learn.fit(1, cbs=ev)
    e = ev.events
    assert e[:11] == ["before_fit", "before_epoch", "before_train", "before_batch", "after_pred", "after_loss",
                      "before_backward", "after_backward", "before_step", "after_step", "after_batch"]
    assert e[-3:] == ["after_validate", "after_epoch", "after_fit"]
    assert e.index("after_train") < e.index("before_validate") < e.index("before_metrics") < e.index("after_validate")
    assert ev not in learn.cbs  # fit(cbs=...) callbacks are removed afterwards


def test_nan_loss_stops_training_and_names_the_batch(tmp_path, make_learner):
    calls = {"n": 0}

    def loss_func(pred, targ):
        calls["n"] += 1
        loss = nn.functional.cross_entropy(pred, targ)
        return loss * float("nan") if calls["n"] == 3 else loss

    learn = make_learner(tmp_path, loss_func=loss_func)
    with pytest.warns(RuntimeWarning, match="nan at epoch 0, batch 2"):
        learn.fit(3)
    assert learn.nan_at == (0, 2) and len(learn.recorder.values) == 0


def test_nan_in_the_frozen_phase_stops_fine_tune(tmp_path, make_learner):
    def loss_func(pred, targ):
        return nn.functional.cross_entropy(pred, targ) * float("nan")

    learn = make_learner(tmp_path, loss_func=loss_func)
    with pytest.warns(RuntimeWarning) as record:
        learn.fine_tune(2)
    messages = [str(w.message) for w in record]
    assert any("nan at epoch 0, batch 0" in m for m in messages)
    assert any("unfrozen phase was not run" in m for m in messages)
    assert learn.fit_index == 0  # the unfrozen phase never started


def test_resume_keeps_the_best_so_far_of_save_model_and_early_stopping(tmp_path, tiny_dls):
    # the run is stopped after epoch 3 of 6; epoch 1 was the best. A resumed SaveModelCallback must
    # remember that, or it takes epoch 3 for an improvement and reloads the wrong weights at the end
    class Stop(Exception):
        pass

    class StopAt(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.epoch == 3 and self.learn.iter == 1:
                raise Stop()

    def run(path, extra=(), resume=None):
        torch.manual_seed(0)
        learn = Learner(tiny_dls(n=48, seed=1), tiny_model(), path=path, device="cpu", metrics=accuracy)
        stop = EarlyStoppingCallback(patience=10)
        learn.fit_one_cycle(6, 0.5, cbs=[SaveModelCallback(fname="best"), stop, *extra], resume=resume)
        return learn, stop

    reference, ref_stop = run(tmp_path / "ref")
    with pytest.raises(Stop):
        run(tmp_path / "cut", [CheckpointCallback("ck"), StopAt()])
    resumed, res_stop = run(tmp_path / "cut", [CheckpointCallback("ck")], resume="ck")
    assert resumed.recorder.values == reference.recorder.values
    assert res_stop.wait == ref_stop.wait
    for k, v in reference.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_a_partial_metric_is_named_after_its_function():
    from functools import partial

    assert metric_name(partial(top_k_accuracy, k=2)) == "top_k_accuracy"


def test_out_of_memory_says_so_and_suggests_smaller_bs(tmp_path, make_learner):
    class OOM(Callback):
        def before_batch(self):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    learn = make_learner(tmp_path)
    with pytest.raises(TrainingOOMError, match=r"bs=8.*bs=4"):
        learn.fit(1, cbs=OOM())


def test_early_stopping_stops_after_patience(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    learn.fit(10, cbs=EarlyStoppingCallback(monitor="accuracy", min_delta=10, patience=2))
    assert len(learn.recorder.values) == 3  # best at epoch 0, no improvement for 2 epochs


def test_save_model_callback_reloads_the_best_epoch(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    weights = []

    class Keep(Callback):
        order = 51

        def after_epoch(self):
            weights.append(snapshot(self.learn.model))

    learn.fit_one_cycle(3, 1e-2, cbs=[Keep(), SaveModelCallback(fname="best")])
    best = min(range(3), key=lambda i: learn.recorder.values[i][1])
    assert (tmp_path / "models" / "best.pth").is_file()
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights[best][k]), k


def test_csv_logger_writes_a_row_per_epoch_and_warns_before_replacing(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    learn.fit(2, cbs=CSVLogger())
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["epoch", "train_loss", "valid_loss", "accuracy"]
    rows = [ln.split(",") for ln in lines[1:]]
    assert [r[0] for r in rows] == ["0", "1"]  # one row per epoch, in order
    for row, values in zip(rows, learn.recorder.values):  # the recorder's numbers: losses and accuracy
        assert [float(v) for v in row[1:4]] == pytest.approx(values[:3], rel=1e-4, abs=1e-5)
    with pytest.warns(UserWarning, match="replacing"):
        learn.fit(1, cbs=CSVLogger())


def test_gradient_accumulation_steps_every_n_acc_samples(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    ev = Events()
    learn.fit(1, cbs=[ev, GradientAccumulation(n_acc=16)])  # batches of 8, 8, 8, 8, 4 samples
    assert ev.events.count("after_backward") == 5
    assert ev.events.count("after_step") == 2  # after 16 and 32 samples; the last 4 never reach 16


def test_gradient_clip_bounds_the_norm(tmp_path, make_learner):
    norms = []

    class Norm(Callback):
        order = 6

        def before_step(self):
            grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    learn = make_learner(tmp_path)
    learn.fit(1, 1e-2, cbs=[GradientClip(0.01), Norm()])
    assert max(norms) <= 0.01 + 1e-6


def test_save_and_load_round_trip_model_and_optimizer(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    learn.fit(1)
    f = learn.save("stage-1")
    assert f == tmp_path / "models" / "stage-1.pth"
    saved, opt_state = snapshot(learn.model), copy.deepcopy(learn.opt.state_dict())
    learn.fit(1)
    learn.load("stage-1")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, saved[k])
    assert torch.equal(learn.opt.state_dict()["state"][0]["exp_avg"], opt_state["state"][0]["exp_avg"])
    with pytest.raises(FileNotFoundError, match="nope"):
        learn.load("nope")


def test_lr_find_restores_the_model_and_suggests(tmp_path, make_learner):
    import matplotlib

    matplotlib.use("Agg")
    learn = make_learner(tmp_path)
    before = snapshot(learn.model)
    assert learn.lr_find(num_it=20, show_plot=False)._fields == ("valley",)  # fastai's default
    funcs = (minimum, steep, valley, slide)
    sugg = learn.lr_find(num_it=20, suggest_funcs=funcs)
    assert type(sugg).__name__ == "SuggestedLRs" and sugg._fields == ("minimum", "steep", "valley", "slide")
    lrs, losses = learn.recorder.lr_find_lrs, learn.recorder.lr_find_losses
    assert 3 <= len(lrs) == len(losses) <= 20
    assert lrs == pytest.approx([1e-7 * 1e8 ** (i / 19) for i in range(len(lrs))])  # 1e-7 to 10 in 20 steps
    want = suggest_lrs(lrs, losses, funcs, num_it=20)  # the suggestions come from the curve it recorded
    assert tuple(sugg) == pytest.approx(tuple(want))
    assert all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())
    assert learn.opt is None  # a fresh optimizer for the real fit


def test_same_seed_gives_same_weights(tmp_path, make_learner):
    results = []
    for _ in range(2):
        torch.manual_seed(42)
        learn = make_learner(tmp_path)
        learn.fit_one_cycle(2, 1e-2)
        results.append(snapshot(learn.model))
    assert all(torch.equal(v, results[1][k]) for k, v in results[0].items())


def test_validate_and_get_preds_cover_the_whole_valid_set(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    learn.fit(1)
    loss, acc = learn.validate()
    probs, targs, losses = learn.get_preds(with_loss=True)
    assert probs.shape == (12, 3) and targs.shape == (12,) and losses.shape == (12,)
    assert probs.sum(1) == pytest.approx(torch.ones(12), abs=1e-5)
    assert float(losses.mean()) == pytest.approx(loss, rel=1e-4)
    assert float(accuracy(probs, targs)) == pytest.approx(acc)


def _conv_dtypes(learn: Learner) -> list[torch.dtype]:
    """The dtypes the first conv computes in, one per forward pass (autocast shows here)."""
    dtypes: list[torch.dtype] = []
    learn.model[0][0].register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    return dtypes


def test_bf16_autocast_trains_on_cpu(tmp_path, make_learner):
    learn = make_learner(tmp_path).to_bf16(force=True)
    dtypes, before = _conv_dtypes(learn), snapshot(learn.model)
    learn.fit(1)
    assert set(dtypes) == {torch.bfloat16} and len(dtypes) == len(learn.dls.train) + len(learn.dls.valid)
    assert not torch.equal(before["0.0.weight"], learn.model.state_dict()["0.0.weight"])
    assert torch.isfinite(torch.tensor(learn.recorder.values[-1][:2])).all()
    assert learn.to_fp32().scaler is None


def test_plot_loss_is_agg_safe(tmp_path, make_learner):
    import matplotlib

    matplotlib.use("Agg")
    learn = make_learner(tmp_path)
    learn.fit(2)
    ax = learn.recorder.plot_loss(skip_start=0)
    train, valid = ax.lines
    rec = learn.recorder
    assert list(train.get_ydata()) == pytest.approx(rec.losses) and len(rec.losses) == 2 * len(learn.dls.train)
    assert list(valid.get_xdata()) == rec.iters and list(valid.get_ydata()) == pytest.approx([v[1] for v in rec.values])
    assert list(learn.recorder.plot_loss(skip_start=3).lines[0].get_ydata()) == pytest.approx(rec.losses[3:])


def test_layer_decay_gives_geometric_group_lrs(tiny_dls):
    learn = vision_learner(tiny_dls(), "resnet10t", pretrained=False, layer_decay=0.5, lr=1e-3, device="cpu")
    assert learn.n_groups == 6
    learn.create_opt()
    assert learn.group_lrs() == pytest.approx([1e-3 * 0.5**k for k in range(5, -1, -1)])


def test_raw_model_unwraps_wrappers(tmp_path, make_learner):
    learn = make_learner(tmp_path)
    inner = learn.model

    class Wrapper(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m

    learn.model = Wrapper(inner)
    assert learn.raw_model is inner


def test_fp16_uses_a_grad_scaler(tmp_path, make_learner):
    learn = make_learner(tmp_path).to_fp16(force=True)
    dtypes = _conv_dtypes(learn)
    learn.fit(1)
    assert set(dtypes) == {torch.float16}
    assert isinstance(learn.scaler, torch.amp.GradScaler) and learn.scaler.is_enabled()
    assert torch.isfinite(torch.tensor(learn.recorder.values[-1][:2])).all()


@pytest.mark.slow
def test_epoch_table_is_one_html_table_in_a_notebook(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r})\n"  # a kernel: not pytest's path
        "from tests.tinydata import TinyDLs\n"
        "from torch import nn\n"
        "from vision_tl.train.learner import TrainingLearner\n"
        "m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))\n"
        f"TrainingLearner(TinyDLs(), m, device='cpu', path={str(tmp_path)!r}).fit(2)\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=300).execute()
    # with ipywidgets installed the progress bars are widget outputs of their own: count the tables only
    tables = [o for o in nb.cells[0].outputs if o.output_type == "display_data" and "<table>" in o.data.get("text/html", "")]
    assert len(tables) == 1  # updated in place, not one per epoch
    html, text = tables[0].data["text/html"], tables[0].data["text/plain"]
    assert html.startswith("<table>") and "<th>train_loss</th>" in html
    assert text.startswith("epoch") and "valid_loss" in text


@pytest.mark.parametrize("arch", ["resnet10t", "torchvision_resnet18"])
def test_model_config_rebuilds_the_same_network(arch, tiny_dls):
    """load_learner rebuilds from learn.model_config: names and shapes must match the trained model."""
    import torchvision

    from vision_tl.models.build import build_model

    spec = torchvision.models.resnet18 if arch.startswith("torchvision") else arch
    learn = vision_learner(tiny_dls(), spec, pretrained=False, lin_ftrs=[32], ps=0.1, device="cpu")
    rebuilt = build_model(learn.model_config)
    want = {k: v.shape for k, v in learn.raw_model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == want
    assert learn.model_config.source == ("torchvision" if arch.startswith("torchvision") else "timm")


def test_fine_tune_phases_see_different_shuffles(tmp_path, make_learner):
    """The frozen and the unfrozen epoch of fine_tune must not replay the same batch order."""
    orders: dict[int, list[list[int]]] = {}

    class Order(Callback):
        def before_batch(self):
            orders.setdefault(self.learn.fit_index, []).append(self.learn.yb[0].tolist())

    learn = make_learner(tmp_path)
    learn.fine_tune(1, freeze_epochs=1, cbs=[Order()])
    assert set(orders) == {0, 1}
    assert orders[0] != orders[1]
    assert learn.epochs_done == 2
