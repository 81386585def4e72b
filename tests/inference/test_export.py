"""Export to one .vtl file and load it back: same predictions, and a clear error for every bad file."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import pytest
import torch

from vision_tl.inference import vtl as ex
from vision_tl.inference.load import load_learner
from vision_tl.inference.vtl import ExportFormatError, read_manifest, write_vtl


def _rewrite(path, manifest_edit=None, tensors_edit=None, dest=None):
    """Re-write an export with an edited manifest or tensors, with valid checksums."""
    from safetensors.torch import load_file

    m = read_manifest(path)
    m.pop("weights_sha256")
    sd = load_file(str(path))
    if manifest_edit:
        manifest_edit(m)
    if tensors_edit:
        tensors_edit(sd)
    return write_vtl(dest or path, sd, m)


def test_export_writes_one_safetensors_file_with_manifest(exported):
    path, pred = exported
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["model.vtl"]
    m = read_manifest(path)
    assert m["format"] == "vision_tl.learner" and m["format_version"] == 1  # single-label: version 1 (multi-label: 2)
    assert (m["multi_label"], m["activation"], m["threshold"]) == (False, "softmax", None)
    assert m["vocab"] == pred.vocab
    assert m["model_config"]["arch"] == "resnet10t"
    assert m["item_tfms"] == [t.to_dict() for t in pred.item_tfms]
    assert m["normalize"]["mean"] == pytest.approx(list(pred.normalize[0]))
    assert m["input_size"] == [32, 32]
    assert {"vision_tl", "torch", "timm"} <= set(m["versions"])


def test_loaded_predictor_matches_original(exported, image_files):
    path, pred = exported
    loaded = load_learner(path, device="cpu")
    assert loaded.vocab == pred.vocab
    for f in image_files[:4]:
        label, idx, probs = pred.predict(f)
        label2, idx2, probs2 = loaded.predict(f)
        assert (label, idx) == (label2, idx2)
        torch.testing.assert_close(probs, probs2)


@pytest.mark.slow
def test_load_in_fresh_process_gives_same_predictions(exported, image_files, tmp_path):
    path, pred = exported
    files = [str(f) for f in image_files[:5]]
    code = (
        "import json, sys\n"
        "from vision_tl import load_learner\n"
        "p = load_learner(sys.argv[1], device='cpu')\n"
        "print(json.dumps(p.predict_batch(sys.argv[2:], bs=2, progress=False).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), *files], capture_output=True, text=True,
                         check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    probs = torch.tensor(json.loads(out.stdout.strip().splitlines()[-1]))
    expected = torch.stack([pred.predict(f)[2] for f in files])
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-4)


def test_export_to_same_name_replaces_file_and_leaves_no_temp(exported, tmp_path, image_files):
    path, pred = exported
    before = pred.predict(image_files[0])[2]
    with torch.no_grad():
        pred.model[-1][-1].weight.mul_(3.0)  # sharper probabilities: a visibly different model
    after = pred.predict(image_files[0])[2]
    assert not torch.allclose(before, after)
    with pytest.warns(UserWarning, match="replacing the existing file"):
        pred.export(path)  # same name again (like fastai): replaced with a warning, no temp file left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vtl"]
    torch.testing.assert_close(load_learner(path, device="cpu").predict(image_files[0])[2], after)


def test_exporting_the_same_model_twice_gives_the_same_bytes(predictor, tmp_path):
    # a file hash users can compare: safetensors orders metadata at random, the export must not
    blobs = {predictor.export(tmp_path / f"m{i}.vtl").read_bytes() for i in range(6)}
    assert len(blobs) == 1


@pytest.mark.parametrize("norm", [{"mean": [0.5], "std": [0.1, 0.2]}, {"mean": "abc", "std": "def"},
                                  {"mean": [0.5, 0.5, 0.5], "std": [0.0, 1.0, 1.0]}])
def test_bad_normalization_in_a_resigned_manifest_names_the_file(exported, tmp_path, norm):
    path, _ = exported
    bad = _rewrite(path, manifest_edit=lambda m: m.update(normalize=norm), dest=tmp_path / "bad.vtl")
    with pytest.raises(ExportFormatError, match=r"bad\.vtl.*manifest is invalid"):
        load_learner(bad, device="cpu")


def test_exported_file_is_readable_by_others_as_the_umask_allows(predictor, tmp_path):
    # another account or a container serving the model must be able to read it (not 0600)
    mask = os.umask(0o022)
    try:
        f = predictor.export(tmp_path / "shared.vtl")
    finally:
        os.umask(mask)
    assert f.stat().st_mode & 0o777 == 0o644


def test_failed_export_leaves_earlier_file_intact(exported, tmp_path, monkeypatch):
    path, pred = exported
    before = path.read_bytes()

    def disk_full(fd):  # the new bytes are written to the temporary file, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(ex.os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"), pytest.warns(UserWarning, match="replacing"):
        write_vtl(path, {"w": torch.ones(2)}, {"format": "x"})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vtl"]


def test_export_without_model_config_is_refused(predictor, tmp_path):
    predictor.model_config = None
    with pytest.raises(ValueError, match="model_config"):
        predictor.export(tmp_path / "m.vtl")
    assert not (tmp_path / "m.vtl").exists()


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.vtl"):
        load_learner(tmp_path / "nope.vtl")


@pytest.mark.parametrize("keep", [0, 5, 100, -1000, -1])
def test_truncated_file_is_a_clear_error(exported, tmp_path, keep):
    path, _ = exported
    data = path.read_bytes()
    bad = tmp_path / "bad.vtl"
    bad.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(ExportFormatError, match="bad.vtl.*truncated"):
        load_learner(bad)


def test_edited_manifest_is_detected(exported, tmp_path):
    path, _ = exported
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = data[8:8 + n].replace(b"circle", b"CIRCLE")  # same length: still a valid safetensors file
    bad = tmp_path / "edited.vtl"
    bad.write_bytes(data[:8] + header + data[8 + n:])
    with pytest.raises(ExportFormatError, match="edited.vtl.*manifest does not match its checksum"):
        load_learner(bad)


def test_flipped_weight_bytes_are_detected(exported, tmp_path):
    path, _ = exported
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "flipped.vtl"
    bad.write_bytes(bytes(data))
    with pytest.raises(ExportFormatError, match="flipped.vtl.*weights do not match their checksum"):
        load_learner(bad)


def test_weights_not_matching_manifest_name_the_mismatch(exported, tmp_path):
    path, _ = exported
    bad = _rewrite(path, manifest_edit=lambda m: m.update(vocab=["a", "b", "c", "d"]) or
                   m["model_config"].update(n_out=4), dest=tmp_path / "mismatch.vtl")
    with pytest.raises(ExportFormatError, match=r"mismatch.vtl.*shape mismatch.*\(3, .*\(4, "):
        load_learner(bad)


def test_missing_tensor_is_named(exported, tmp_path):
    path, _ = exported
    victim = sorted(read_manifest_tensors(path))[0]
    bad = _rewrite(path, tensors_edit=lambda sd: sd.pop(victim), dest=tmp_path / "missing.vtl")
    with pytest.raises(ExportFormatError, match=f"1 missing \\({victim}\\)"):
        load_learner(bad)


def read_manifest_tensors(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return list(f.keys())


def test_invalid_model_config_is_a_clear_error(exported, tmp_path):
    path, _ = exported
    bad = _rewrite(path, manifest_edit=lambda m: m["model_config"].update(arch=""), dest=tmp_path / "cfg.vtl")
    with pytest.raises(ExportFormatError, match="cfg.vtl"):
        load_learner(bad)


@pytest.mark.parametrize("version", [ex.FORMAT_VERSION + 1, 0])
def test_other_format_version_names_both_versions(exported, tmp_path, version):
    path, _ = exported

    def edit(m):
        m["format_version"] = version
        m["versions"]["vision_tl"] = "9.9.9"

    bad = _rewrite(path, manifest_edit=edit, dest=tmp_path / "other.vtl")
    import vision_tl

    with pytest.raises(ExportFormatError) as info:
        load_learner(bad)
    msg = str(info.value)
    assert "other.vtl" in msg and "9.9.9" in msg and vision_tl.__version__ in msg
    assert f"format version {version}" in msg
    assert ("upgrade vision_tl" in msg) == (version > ex.FORMAT_VERSION)


def test_weights_only_safetensors_checkpoint_is_refused(predictor, tmp_path):
    from safetensors.torch import save_file

    f = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in predictor.model.state_dict().items()}, str(f))
    with pytest.raises(ExportFormatError, match="weights.safetensors.*without a vision_tl manifest"):
        load_learner(f)


def test_torch_save_checkpoint_is_refused_without_unpickling(predictor, tmp_path):
    f = tmp_path / "model.pth"
    torch.save(predictor.model.state_dict(), f)
    with pytest.raises(ExportFormatError, match="model.pth.*PyTorch checkpoint.*never unpickles"):
        load_learner(f)


class _Boom:
    """Unpickling this would write a marker file: loading must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_fastai_style_pkl_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"
    # fastai's learn.export is torch.save of a pickled Learner (zip with data.pkl naming fastai)
    f = tmp_path / "export.pkl"
    with zipfile.ZipFile(f, "w") as z:
        z.writestr("export/data.pkl", pickle.dumps({"cls": "fastai.learner.Learner", "x": _Boom(str(marker))}))
    with pytest.raises(ExportFormatError, match="export.pkl.*fastai export"):
        load_learner(f)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Boom(str(marker))))
    with pytest.raises(ExportFormatError, match="raw.pkl.*pickle"):
        load_learner(raw)
    assert not marker.exists()


def test_random_bytes_are_a_clear_error(tmp_path):
    f = tmp_path / "junk.vtl"
    f.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00" + b"not json at all!" + b"\0" * 64)
    with pytest.raises(ExportFormatError, match="junk.vtl.*header is corrupt"):
        load_learner(f)
    f.write_bytes(os.urandom(4096))
    with pytest.raises(ExportFormatError, match="junk.vtl"):
        load_learner(f)


def test_directory_is_refused(tmp_path):
    with pytest.raises(ExportFormatError, match="directory"):
        load_learner(tmp_path)


def test_custom_item_transform_is_refused_at_export(predictor, tmp_path):
    predictor.item_tfms = [lambda img, train: img]
    with pytest.raises(ValueError, match="cannot be saved"):
        predictor.export(tmp_path / "m.vtl")
    assert not (tmp_path / "m.vtl").exists()


def test_batch_resize_and_no_normalization_survive_export(predictor, tmp_path, image_files):
    from vision_tl import aug_transforms

    predictor.batch_tfms = aug_transforms(size=24)
    predictor.normalize = None
    predictor.to("cpu")
    loaded = load_learner(predictor.export(tmp_path / "m.vtl"), device="cpu")
    assert loaded.normalize is None
    assert [t.to_dict() for t in loaded.batch_tfms] == [t.to_dict() for t in predictor.batch_tfms]
    torch.testing.assert_close(loaded.predict(image_files[0])[2], predictor.predict(image_files[0])[2])


def test_fastai_cpu_flag_loads_on_cpu(exported):
    path, _ = exported
    assert load_learner(path, cpu=True).device.type == "cpu"
    with pytest.raises(ValueError, match="cpu=True contradicts"):
        load_learner(path, device="cuda", cpu=True)


def test_unknown_architecture_names_the_timm_versions(exported, tmp_path):
    path, _ = exported
    bad = _rewrite(path, manifest_edit=lambda m: m["model_config"].update(arch="resnet_from_the_future"),
                   dest=tmp_path / "future_arch.vtl")
    with pytest.raises(ExportFormatError, match=r"future_arch.vtl.*resnet_from_the_future.*exported with timm"):
        load_learner(bad)
