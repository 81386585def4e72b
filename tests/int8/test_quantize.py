"""``inference/quantize.py``: onnxruntime's static int8 (QDQ, per-channel) calibrated on some digits and checked
on others; refused when accuracy drops more than ``max_drop``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vision_tl.inference.quantize import Int8Refused, Int8Report, quantize_graph, split_for_calibration

pytestmark = pytest.mark.slow  # an ONNX export and a calibration (seconds)


@pytest.fixture(scope="module")
def sets(digit_arrays):
    """128 calibration digits and 400 others to check on, none of them seen by the head's training."""
    images, labels = digit_arrays
    return images[1200:1328], images[1328:1728], labels[1328:1728]


@pytest.fixture(scope="module")
def quantized(fp32_graph, sets):
    """A generous ``max_drop``: the test model's random body makes features that int8 noise moves more than a
    trained body's (measured: 94% agreement and a 3-point drop here; 99.75% and 0.25 once the body is trained)."""
    calib, check, targets = sets
    return quantize_graph(fp32_graph, calib, check, targets, target="digits.vtl", max_drop=10)


def _run(graph: bytes, images: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": images})[0]


def test_int8_predictions_agree_with_fp32_on_most_held_out_digits(quantized, fp32_graph, sets):
    graph, report = quantized
    _, check, targets = sets
    p32, p8 = _run(fp32_graph, check), _run(graph, check)
    assert (p32.argmax(1) == targets).mean() > 0.8  # the model reads digits: agreement below means something
    agree = 100 * (p32.argmax(1) == p8.argmax(1)).mean()
    assert agree >= 90 and report.agreement == pytest.approx(agree)
    assert report.int8_accuracy == pytest.approx(100 * (p8.argmax(1) == targets).mean())
    assert report.drop == pytest.approx(report.fp32_accuracy - report.int8_accuracy) and report.drop <= 10
    assert (report.n_calib, report.n_check, report.max_drop) == (128, 400, 10.0)
    assert np.abs(p32 - p8).max() > 0  # it is not the fp32 graph handed back
    assert Int8Report.from_dict(report.to_dict()) == report


def test_the_int8_graph_is_qdq_with_per_channel_int8_conv_weights(quantized):
    model = onnx.load_from_string(quantized[0])
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    inits = {i.name: i for i in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv"]
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert conv_weights and all(w in dq for w in conv_weights)  # every conv reads a dequantized weight
    for w in conv_weights:
        q, scale = (inits[name] for name in dq[w].input[:2])
        assert q.data_type == onnx.TensorProto.INT8 and scale.dims[0] > 1  # one scale per output channel


def test_a_negative_max_drop_refuses_and_names_the_model_and_the_figures(fp32_graph, sets):
    calib, check, targets = sets
    with pytest.raises(Int8Refused) as info:
        quantize_graph(fp32_graph, calib[:32], check[:100], targets[:100], max_drop=-1, target="'digits.vtl'")
    msg, report = str(info.value), info.value.report
    assert "\n" not in msg and "'digits.vtl'" in msg and "max_drop -1" in msg
    assert f"fp32 {report.fp32_accuracy:.2f}% -> int8 {report.int8_accuracy:.2f}%" in msg and "100 held-out" in msg


def test_a_damaged_calibration_is_refused(fp32_graph, sets):
    """Calibrating on blank images sets every activation range from nothing: int8 loses the digits."""
    calib, check, targets = sets
    with pytest.raises(Int8Refused, match="accuracy drops") as info:
        quantize_graph(fp32_graph, np.zeros_like(calib[:32]), check[:200], targets[:200])
    assert info.value.report.drop > 1.0


def test_images_of_another_size_than_the_graph_are_rejected(fp32_graph, sets):
    calib, check, targets = sets
    with pytest.raises(ValueError, match="calibration images are 16x16 px, the graph takes 32x32"):
        quantize_graph(fp32_graph, calib[:, :, :16, :16], check, targets)
    with pytest.raises(ValueError, match="targets must be 400 class indices"):
        quantize_graph(fp32_graph, calib, check, targets[:10])


def test_the_split_keeps_calibration_and_check_images_apart():
    calib, check = split_for_calibration(1000, max_calib=256, max_check=500)
    assert (len(calib), len(check)) == (256, 500) and not set(calib) & set(check)
    calib, check = split_for_calibration(9)
    assert (len(calib), len(check)) == (4, 5) and sorted(calib + check) == list(range(9))
    with pytest.raises(ValueError, match="at least 2 labelled images"):
        split_for_calibration(1)


def test_multi_label_accuracy_is_per_label_and_agreement_is_per_label_set(fp32_graph, sets):
    calib, check, targets = sets
    hot = np.eye(10, dtype=bool)[targets[:100]]
    graph, report = quantize_graph(fp32_graph, calib[:32], check[:100], hot, multi_label=True, threshold=0.3,
                                   max_drop=100)
    d32, d8 = _run(fp32_graph, check[:100]) > 0.3, _run(graph, check[:100]) > 0.3
    assert report.multi_label and "per-label accuracy" in report.summary()
    assert report.fp32_accuracy == pytest.approx(100 * (d32 == hot).mean())
    assert report.int8_accuracy == pytest.approx(100 * (d8 == hot).mean())
    assert report.agreement == pytest.approx(100 * (d32 == d8).all(1).mean())
