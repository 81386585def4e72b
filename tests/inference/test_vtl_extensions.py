"""The ``.vtl`` format's extension points: extra manifest entries and named payloads (``inference/vtl.py``)."""

from __future__ import annotations

import pytest
import torch

from vision_tl.inference import vtl
from vision_tl.inference.export import export_predictor
from vision_tl.inference.load import load_learner


def test_entries_and_payloads_travel_with_the_model(predictor, tmp_path, image_files):
    graph = bytes(range(256)) * 40
    path = export_predictor(predictor, tmp_path / "m.vtl", entries={"card": {"epochs": 3}}, payloads={"blob": graph})
    m = vtl.read_manifest(path)
    assert m["card"] == {"epochs": 3} and m["format_version"] == vtl.PAYLOAD_VERSION
    assert m["payloads"]["blob"]["bytes"] == len(graph)
    assert vtl.read_payload(path, "blob") == graph and vtl.read_payload(path, "other") is None
    read = vtl.read_vtl(path)
    assert read.payloads == {"blob": graph} and not any(k.startswith(vtl.PAYLOAD_PREFIX) for k in read.state_dict)
    summary = vtl.describe_manifest(m, path.stat().st_size)
    assert "entries:       card" in summary and "payloads:      blob (0.0 MiB)" in summary
    loaded = load_learner(path, device="cpu", backend="torch")  # the payload is not taken for a weight
    assert loaded.manifest["card"] == {"epochs": 3}
    torch.testing.assert_close(loaded.predict(image_files[0])[2], predictor.predict(image_files[0])[2])


def test_update_adds_entries_and_payloads_and_keeps_the_weights(exported, image_files):
    path, predictor = exported
    before = vtl.read_vtl(path)
    vtl.update_vtl(path, entries={"train_items": ["ab12"]}, payloads={"onnx_int8": b"graph"})
    vtl.update_vtl(path, entries={"int8": {"drop": 0.2}})
    after = vtl.read_vtl(path)
    assert after.manifest["train_items"] == ["ab12"] and after.manifest["int8"] == {"drop": 0.2}
    assert after.payloads == {"onnx_int8": b"graph"}
    assert after.manifest["weights_sha256"] == before.manifest["weights_sha256"]
    with pytest.raises(ValueError, match=r"cannot change the core manifest keys \['vocab'\]"):
        vtl.update_vtl(path, entries={"vocab": ["x"]})
    assert vtl.read_vtl(path).manifest == after.manifest  # a refused update leaves the file as it was


def test_a_damaged_payload_is_named(predictor, tmp_path):
    path = export_predictor(predictor, tmp_path / "m.vtl", payloads={"blob": b"A" * 4096})
    data = bytearray(path.read_bytes())
    at = data.rindex(b"A" * 4096)
    data[at + 100] = ord("B")
    path.write_bytes(bytes(data))
    with pytest.raises(vtl.ExportFormatError, match="payload 'blob' does not match its checksum"):
        vtl.read_payload(path, "blob")
    with pytest.raises(vtl.ExportFormatError, match="payload 'blob' does not match its checksum"):
        load_learner(path, device="cpu", backend="torch")


def test_a_file_without_extensions_keeps_its_old_format_version(exported):
    m = vtl.read_manifest(exported[0])
    assert m["format_version"] == 1 and "payloads" not in m  # older vision_tl still reads it
