"""Distributed training: torchrun's environment, rank-0 guards, gathering, and 2-process gloo runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from vision_tl.train import distributed as D
from vision_tl.train.distributed_callback import DistributedTrainer

# ---------------------------------------------------------------- environment


def test_plain_run_is_a_single_process_rank_0():
    env = D.DistEnv.from_env({})
    assert (env.rank, env.world_size, env.local_rank) == (0, 1, 0)
    assert env.is_main and not env.is_distributed


def test_torchrun_variables_are_read():
    env = D.DistEnv.from_env(
        {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
         "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (5, 8, 1, 4)
    assert (env.master_addr, env.master_port) == ("10.0.0.1", 29500)
    assert env.is_distributed and not env.is_main


@pytest.mark.parametrize(
    "environ, words",
    [
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, ["RANK", "2"]),
        ({"WORLD_SIZE": "two"}, ["WORLD_SIZE", "'two'"]),
        ({"WORLD_SIZE": "0"}, ["WORLD_SIZE", "0"]),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"}, ["MASTER_ADDR", "torchrun"]),
    ],
)
def test_inconsistent_environment_names_the_variable_and_value(environ, words):
    with pytest.raises(ValueError) as err:
        D.DistEnv.from_env(environ)
    for word in words:
        assert word in str(err.value)


def test_setup_without_launcher_does_not_start_a_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    env = D.setup_distributed()
    assert not env.is_distributed and not D.is_dist_initialized()
    assert D.get_world_size() == 1 and D.is_main_process()


def test_bad_backend_is_refused():
    with pytest.raises(ValueError, match="'mpi'"):
        D.setup_distributed(backend="mpi")


# ---------------------------------------------------------------- single-process behaviour of the guards


def test_guards_run_the_body_once_in_a_single_process(tmp_path):
    calls = []

    @D.rank0_only
    def write(p: Path) -> Path:
        calls.append(p)
        p.write_text("x")
        return p

    with D.rank0_first():
        out = write(tmp_path / "f.txt")
    D.barrier()
    assert out == tmp_path / "f.txt" and calls == [out] and out.read_text() == "x"


@pytest.fixture
def _tiny_learner(tiny_dls):
    """The helper below, its data from the ``tiny_dls`` fixture."""

    def _tiny_learner(tmp_path):
        from vision_tl.train.learner import TrainingLearner

        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(4, 3))
        return TrainingLearner(tiny_dls(n=16), model, path=tmp_path, device="cpu", splitter=lambda m: [list(m.parameters())])

    return _tiny_learner


def test_distrib_ctx_without_torchrun_trains_as_usual(tmp_path, monkeypatch, _tiny_learner):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    learn = _tiny_learner(tmp_path)
    with learn.distrib_ctx() as same:
        assert same is learn and not any(isinstance(c, DistributedTrainer) for c in learn.cbs)
        learn.fit(1)
    assert not D.is_dist_initialized() and isinstance(learn.model, torch.nn.Sequential)
    assert len(learn.recorder.values) == 1


def test_distributed_trainer_without_a_process_group_says_how_to_launch(tmp_path, _tiny_learner):
    learn = _tiny_learner(tmp_path)
    learn.add_cb(DistributedTrainer())
    with pytest.raises(RuntimeError, match="torchrun"):
        learn.fit(1)


# ---------------------------------------------------------------- putting shards back in order


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (6, 3), (1, 2), (5, 4)])
def test_interleaved_shards_of_a_padded_sampler_give_the_dataset_in_order(n, world):
    data = torch.arange(n) * 10
    bs = 2
    shards = [data[list(DistributedSampler(range(n), world, r, shuffle=False))] for r in range(world)]
    # gather batch by batch, as the validation loop does, trimming with the count still to come
    got, seen = [], 0
    for start in range(0, len(shards[0]), bs):
        batch = D.interleave_shards([s[start:start + bs] for s in shards], n - seen)
        seen += len(batch)
        got.append(batch)
    assert torch.equal(torch.cat(got), data)


def test_interleave_shards_rejects_nothing_to_gather():
    with pytest.raises(ValueError, match="shards"):
        D.interleave_shards([])


# ---------------------------------------------------------------- real process groups (gloo, 2 CPU ranks)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: Path | str, args: list[str], nproc: int = 2, timeout: float = 180, gpu: bool = False) -> str:
    """Launch ``script`` (or ``-m module``) on ``nproc`` CPU processes with torchrun on 127.0.0.1.

    Returns the processes' stdout; fails the test with the output when any process fails.
    """
    target = ["-m", script[3:]] if isinstance(script, str) and script.startswith("-m ") else [str(script)]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
        "--master-addr=127.0.0.1", f"--master-port={_free_port()}", *target, *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "HF_HUB_OFFLINE": "1"}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout


HELPERS_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    from vision_tl.train import distributed as D

    out = Path(sys.argv[1])
    env = D.setup_distributed()
    assert D.is_dist_initialized() and D.default_backend() == "gloo"
    rank = env.rank
    report = {"rank": rank, "world": D.get_world_size()}
    # uneven first dimensions: rank r holds r + 2 rows
    parts = D.all_gather_tensor(torch.full((rank + 2, 3), float(rank)))
    report["gathered_shapes"] = [list(p.shape) for p in parts]
    report["gathered_values"] = [p.mean().item() for p in parts]
    # buffers: each rank starts different; rank 0's copy wins
    bn = torch.nn.BatchNorm1d(3)
    bn.running_mean.fill_(rank + 1.0)
    D.broadcast_buffers(bn)
    report["running_mean"] = bn.running_mean.tolist()
    report["seed"] = D.broadcast_int(1234 if rank == 0 else -1)

    @D.rank0_only
    def write():
        (out / f"written_by_{rank}.txt").write_text("x")
        return "done"

    report["rank0_only"] = write()
    report["file_visible_after_barrier"] = (out / "written_by_0.txt").exists()
    with D.rank0_first():
        marker = out / "first.txt"
        if not marker.exists():
            marker.write_text(str(rank))
    report["first"] = marker.read_text()
    # an unseeded split differs between processes: refused on every rank, naming the fix
    class DS:
        def __init__(self, items):
            self.items = items
    D.check_same_split(DS(["a.jpg", "b.jpg"]), DS(["c.jpg"]))
    try:
        D.check_same_split(DS(["a.jpg", "b.jpg"]), DS([f"rank{rank}.jpg"]))
        report["split_error"] = None
    except ValueError as e:
        report["split_error"] = str(e)
    (out / f"report_{rank}.json").write_text(json.dumps(report))
    D.teardown_distributed()
    assert not D.is_dist_initialized()
    """
)


@pytest.mark.slow
def test_helpers_across_two_gloo_processes(tmp_path):
    script = tmp_path / "helpers.py"
    script.write_text(HELPERS_SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    torchrun(script, [str(out)])
    reports = [json.loads((out / f"report_{r}.json").read_text()) for r in range(2)]
    for r, rep in enumerate(reports):
        assert rep["rank"] == r and rep["world"] == 2
        assert rep["gathered_shapes"] == [[2, 3], [3, 3]]
        assert rep["gathered_values"] == [0.0, 1.0]
        assert rep["running_mean"] == [1.0, 1.0, 1.0]
        assert rep["seed"] == 1234
        assert rep["file_visible_after_barrier"] and rep["first"] == "0"
        assert "split differs" in rep["split_error"] and "seed" in rep["split_error"]
    assert reports[0]["rank0_only"] == "done" and reports[1]["rank0_only"] is None
    assert not (out / "written_by_1.txt").exists()


# ---------------------------------------------------------------- fine_tune on 2 ranks vs one process

FINE_TUNE_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path
    import torch
    from vision_tl import CSVLogger, ImageDataLoaders, Resize, SaveModelCallback, accuracy, vision_learner
    from vision_tl.train import distributed as D

    data, out, reports = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    torch.manual_seed(0)
    rank = D.DistEnv.from_env().rank
    dls = ImageDataLoaders.from_folder(data, valid_pct=0.25, seed=7, item_tfms=Resize(32), bs=4,
                                       num_workers=0, device=device)
    # each rank gets its own output folder, as on machines that share no disk: rank 1's must stay empty
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=accuracy, path=out / f"rank{rank}",
                           cbs=[CSVLogger(), SaveModelCallback(at_end=True)], device=device)
    with learn.distrib_ctx(sync_bn=device != "cpu"):
        assert D.get_world_size() == 2
        n_train_batches = len(dls.train)
        learn.fine_tune(1)
        val = learn.validate()
        learn.save("final")
    learn.export("export.vtl")
    sd = learn.model.state_dict()
    digest = hashlib.sha256(b"".join(sd[k].detach().cpu().numpy().tobytes() for k in sorted(sd))).hexdigest()
    report = {"val": val, "digest": digest, "n_train_batches": n_train_batches,
              "n_train_batches_after": len(dls.train), "wrapped": type(learn.model).__name__,
              "recorder": learn.recorder.values}
    (reports / f"rank{rank}.json").write_text(json.dumps(report))
    """
)


@pytest.mark.slow
def test_fine_tune_on_two_gloo_ranks_matches_one_process(class_folder, tmp_path):
    from vision_tl import ImageDataLoaders, Resize, accuracy, vision_learner

    script, out, reports = tmp_path / "ft.py", tmp_path / "out", tmp_path / "reports"
    script.write_text(FINE_TUNE_SCRIPT)
    reports.mkdir()
    torchrun(script, [str(class_folder), str(out), str(reports)])
    r0, r1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in range(2))

    # DDP kept the ranks in lockstep: identical weights, identical gathered metrics
    assert r0["digest"] == r1["digest"]
    assert r0["val"] == r1["val"] and r0["recorder"] == r1["recorder"]
    assert r0["wrapped"] == "Sequential"  # unwrapped after fit
    # the training set was sharded (27 items -> 14 per rank -> 3 batches of 4), then restored (6 batches)
    assert r0["n_train_batches"] == 3 and r0["n_train_batches_after"] == 6

    # only rank 0 wrote files
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["rank0/export.vtl", "rank0/history.csv", "rank0/models/final.pth", "rank0/models/model.pth"]

    # the gathered validation metrics equal one process validating the same weights
    dls = ImageDataLoaders.from_folder(class_folder, valid_pct=0.25, seed=7, item_tfms=Resize(32), bs=4,
                                       num_workers=0, device="cpu")
    learn = vision_learner(dls, "resnet10t", pretrained=False, metrics=accuracy, path=out / "rank0", device="cpu")
    learn.load("final", with_opt=False)
    loss, acc = learn.validate()
    assert r0["val"][1] == pytest.approx(acc, abs=1e-6)
    assert r0["val"][0] == pytest.approx(loss, rel=1e-4)


@pytest.mark.slow
def test_cli_train_under_torchrun_exports_once(class_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stdout = torchrun("-m vision_tl.cli", [
        "train", str(class_folder), "--arch", "resnet10t", "--no-pretrained", "--size", "32", "--bs", "4",
        "--epochs", "1", "--num-workers", "0", "--device", "cpu", "--out", str(out / "m.vtl")])
    assert stdout.count("saved ") == 1 and stdout.count("valid loss") == 1  # rank 0 reports, once
    assert [p.name for p in out.iterdir()] == ["m.vtl"]


@pytest.mark.gpu
@pytest.mark.slow
def test_fine_tune_on_two_gpus_with_nccl_and_sync_bn(class_folder, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices (NCCL refuses two ranks on one GPU)")
    script, out, reports = tmp_path / "ft.py", tmp_path / "out", tmp_path / "reports"
    script.write_text(FINE_TUNE_SCRIPT)
    reports.mkdir()
    torchrun(script, [str(class_folder), str(out), str(reports), "cuda"], gpu=True)
    r0, r1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in range(2))
    assert r0["digest"] == r1["digest"] and r0["val"] == r1["val"]
    assert not (out / "rank1").exists() and (out / "rank0" / "export.vtl").is_file()
