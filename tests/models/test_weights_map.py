"""Weights files from other libraries: BatchNorm counters may be absent, keys renamed by the user's map,
or paired by order only when asked for by name (and then reported)."""

from __future__ import annotations

import json
import warnings

import pytest
import timm
import torch

from vision_tl.models.backbones import PretrainedWeightsError, create_body
from vision_tl.models.keymap import apply_weights_map, map_weights_by_order, parse_weights_map

ARCH = "resnet10t"  # a tiny timm resnet: BatchNorm everywhere


def _timm_state(prefix: str = "", drop_counters: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    sd = timm.create_model(ARCH, pretrained=False, num_classes=0).state_dict()
    return {f"{prefix}{k}": v for k, v in sd.items() if not (drop_counters and k.endswith("num_batches_tracked"))}


def _body_weights(body: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in body.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_file_without_batchnorm_counters_loads(tmp_path):
    sd = _timm_state(drop_counters=True)
    assert not any(k.endswith("num_batches_tracked") for k in sd)
    torch.save(sd, tmp_path / "w.pth")
    body, _, _ = create_body(ARCH, pretrained=False, weights=tmp_path / "w.pth")
    got = _body_weights(body)
    assert all(torch.equal(got[f"model.{k}"], v) for k, v in sd.items())


def test_pattern_map_renames_another_libraries_keys(tmp_path):
    sd = _timm_state(prefix="encoder.stem_")  # keys no known prefix rule can fix
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(PretrainedWeightsError, match="tensors missing"):
        create_body(ARCH, pretrained=False, weights=tmp_path / "w.pth")
    body, _, _ = create_body(ARCH, pretrained=False, weights=tmp_path / "w.pth",
                             weights_map={r"^encoder\.stem_": ""})
    assert torch.equal(body.state_dict()["model.conv1.0.weight"], sd["encoder.stem_conv1.0.weight"])


def test_function_map_can_drop_tensors():
    sd = {"a.w": torch.zeros(1), "fc.w": torch.ones(1)}
    out = apply_weights_map(sd, lambda k: None if k.startswith("fc.") else "b." + k)
    assert list(out) == ["b.a.w"]


def test_map_that_sends_two_tensors_to_one_key_is_an_error():
    with pytest.raises(ValueError, match="two tensors"):
        apply_weights_map({"a.x": torch.zeros(1), "b.x": torch.zeros(1)}, {r"^[ab]\.": ""})


def test_pairing_by_order_is_opt_in_and_reported(tmp_path):
    sd = _timm_state(drop_counters=True)  # a file from another library: its own names, no counters
    renamed = {f"t{i:03d}": v for i, v in enumerate(sd.values())}  # same order, meaningless names
    renamed["head.weight"] = torch.zeros(10, 512)  # a trailing classifier the body lacks
    torch.save(renamed, tmp_path / "w.pth")
    with pytest.raises(PretrainedWeightsError):  # never guessed without being asked
        create_body(ARCH, pretrained=False, weights=tmp_path / "w.pth")
    with pytest.warns(UserWarning, match=r"paired by order and shape.*not used: \['head.weight'\]"):
        body, _, _ = create_body(ARCH, pretrained=False, weights=tmp_path / "w.pth", weights_map="by_order")
    expect = _timm_state(drop_counters=True)
    got = _body_weights(body)
    assert all(torch.equal(got[f"model.{k}"], v) for k, v in expect.items())


def test_pairing_by_order_names_the_first_pair_that_does_not_line_up():
    sd = _timm_state()
    keys = list(sd)
    swapped = dict(sd)
    swapped[keys[0]], swapped[keys[1]] = sd[keys[1]], sd[keys[0]]
    body = timm.create_model(ARCH, pretrained=False, num_classes=0)
    with pytest.raises(ValueError, match=rf"tensor 0 {keys[0]!r}.*do not line up"):
        map_weights_by_order(swapped, body)


def test_weights_map_without_a_weights_file_is_an_error():
    with pytest.raises(ValueError, match="weights=FILE"):
        create_body(ARCH, pretrained=False, weights_map="by_order")


def test_cli_weights_map_forms(tmp_path):
    assert parse_weights_map("by-order") == "by_order"
    assert parse_weights_map(r"^_blocks\.=blocks.,^_fc\.=") == {r"^_blocks\.": "blocks.", r"^_fc\.": ""}
    (tmp_path / "m.json").write_text(json.dumps({"^a": "b"}))
    assert parse_weights_map(str(tmp_path / "m.json")) == {"^a": "b"}
    with pytest.raises(ValueError, match="PATTERN=REPLACEMENT"):
        parse_weights_map("nonsense")


def test_bad_pattern_is_named():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="bad pattern"):
            apply_weights_map({"a": torch.zeros(1)}, {"(": ""})
