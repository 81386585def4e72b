"""int8: quantize the fp32 ONNX graph with onnxruntime's own tooling, and refuse it when accuracy drops.

The fp32 graph (``onnx.py``: uint8 NCHW at the input size in, probabilities out, normalization
inside) goes through ``onnxruntime.quantization.quant_pre_process`` and ``quantize_static``: QDQ
format, per-channel int8 weights, uint8 activations, MinMax calibration on uint8 batches exactly as
the graph takes them. Weights are quantized to 7 bits (``reduce_range``) so the graph does not
saturate on CPUs without VNNI (AVX2's 8-bit multiply-add sums pairs into int16): an int8 file runs
with the same results on any x86 CPU, wherever it was calibrated.

Calibration images and check images are kept apart: the int8 graph is compared with the fp32 graph
on labelled images it was not calibrated on, and ``quantize_graph`` raises ``Int8Refused`` (one
line naming the model and the figures) when accuracy drops by more than ``max_drop`` points. What
it measured travels with the graph as an ``Int8Report``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .vtl import VtlFile

INT8_PAYLOAD = "onnx_int8"  # the .vtl payload holding the int8 graph (``vtl.py``: payloads)
INT8_ENTRY = "int8"  # the manifest entry holding its Int8Report (+ what it was calibrated on)
DEFAULT_MAX_DROP = 1.0  # accuracy points int8 may lose on the held-out images before it is refused
MAX_CALIB = 256  # calibration images used at most ("up to a few hundred": MinMax settles well before)
MAX_CHECK = 1000  # held-out images used at most for the accuracy check
CALIB_BS = 32
METHOD = ("onnxruntime quantize_static, QDQ, per-channel int8 weights (7-bit, reduce_range), "
          "uint8 activations, MinMax calibration")


@dataclass(frozen=True)
class Int8Report:
    """What calibration measured: accuracies in percent on ``n_check`` held-out images, ``drop`` in points.

    ``agreement`` is the percent of held-out images on which int8 decides as fp32 does (the same
    class, or for a multi-label model the same label set); ``multi_label`` accuracies are per label
    (fastai's ``accuracy_multi``) at the model's threshold.
    """

    fp32_accuracy: float
    int8_accuracy: float
    drop: float
    agreement: float
    n_calib: int
    n_check: int
    max_drop: float
    multi_label: bool = False
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (the manifest's ``int8`` entry)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Int8Report:
        """The report back from ``to_dict``'s output (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def summary(self) -> str:
        """One line: accuracies, drop, agreement and counts."""
        what = "per-label accuracy" if self.multi_label else "accuracy"
        return (f"{what} fp32 {self.fp32_accuracy:.2f}% -> int8 {self.int8_accuracy:.2f}% "
                f"(drop {self.drop:+.2f} points, max {self.max_drop:g}), agreement {self.agreement:.2f}% "
                f"on {self.n_check} held-out images, calibrated on {self.n_calib}")


class Int8Refused(ValueError):
    """int8 loses more accuracy than allowed; ``.report`` holds the figures, ``.target`` names the model."""

    def __init__(self, target: str, report: Int8Report) -> None:
        self.target, self.report = target, report
        super().__init__(
            f"int8 refused for {target}: accuracy drops {report.drop:.2f} points, more than max_drop "
            f"{report.max_drop:g} ({report.summary()}); nothing was written"
        )

    def __reduce__(self):
        return (type(self), (self.target, self.report))


class UInt8Batches:
    """An onnxruntime ``CalibrationDataReader`` over uint8 NCHW images, ``bs`` at a time, fed to ``input_name``."""

    def __init__(self, input_name: str, images: np.ndarray, bs: int = CALIB_BS) -> None:
        self.input_name, self.images, self.bs = input_name, images, bs
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or ``None`` when all images were read."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Start again from the first image."""
        self._it = ({self.input_name: np.ascontiguousarray(self.images[i : i + self.bs])}
                    for i in range(0, len(self.images), self.bs))

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)


def _check_images(images: Any, what: str, size: tuple[int, int] | None) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3 or len(arr) == 0:
        raise ValueError(f"{what} must be a non-empty uint8 array (N, 3, H, W), got {arr.dtype} {tuple(arr.shape)}")
    if size is not None and tuple(arr.shape[2:]) != tuple(size):
        raise ValueError(f"{what} are {arr.shape[2]}x{arr.shape[3]} px, the graph takes {size[0]}x{size[1]}")
    return arr


def _graph_input(model: Any) -> tuple[str, tuple[int, int] | None]:
    """The graph's input name and fixed (H, W), if the graph has one."""
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    size = tuple(dims[2:4]) if len(dims) == 4 and None not in dims[2:4] else None
    return inp.name, size


class _DropNoise(logging.Filter):
    """onnxruntime's quantizer warns on the root logger, e.g. that a BatchNorm1d's rank-1 scale has no axis 1."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime" not in record.pathname or record.levelno >= logging.ERROR


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Drop the quantizer's warnings; a NullHandler keeps ``logging.warning`` from calling ``basicConfig``
    (which would leave a handler on the user's root logger)."""
    root, noise, null = logging.getLogger(), _DropNoise(), logging.NullHandler()
    root.addFilter(noise)
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)
        root.removeFilter(noise)


def _int8_graph(fp32_graph: bytes, calib: np.ndarray, input_name: str) -> bytes:
    """``quant_pre_process`` + ``quantize_static`` (see the module doc) in a scratch folder; the int8 bytes."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    with tempfile.TemporaryDirectory(prefix="vision_tl_int8_") as tmp, _quiet_quantizer():
        src, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(fp32_graph)
        # the symbolic shape pass cannot follow the exporter's Concat of a dynamic batch; onnx's own suffices
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out), UInt8Batches(input_name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return out.read_bytes()


def _probs(session: Any, images: np.ndarray, bs: int = 64) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: np.ascontiguousarray(images[i : i + bs])})[0]
                           for i in range(0, len(images), bs)])


def _decisions(probs: np.ndarray, multi_label: bool, threshold: float) -> np.ndarray:
    return probs > threshold if multi_label else probs.argmax(1)


def _accuracy(decided: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float((decided == targets).mean())


def _check_targets(targets: Any, n: int, n_out: int, multi_label: bool) -> np.ndarray:
    t = np.asarray(targets)
    if multi_label:
        if t.shape != (n, n_out):
            raise ValueError(f"multi-label targets must be a (n_images, n_classes) = ({n}, {n_out}) 0/1 array, "
                             f"got shape {tuple(t.shape)}")
        return t.astype(bool)
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer) or (t.size and not 0 <= t.min() <= t.max() < n_out):
        raise ValueError(f"targets must be {n} class indices in [0, {n_out}), got {t.dtype} {tuple(t.shape)}")
    return t


def quantize_graph(fp32_graph: bytes, calib: Any, check: Any, targets: Any, *, multi_label: bool = False,
                   threshold: float = 0.5, max_drop: float = DEFAULT_MAX_DROP, target: str = "the model",
                   num_threads: int | None = None) -> tuple[bytes, Int8Report]:
    """Quantize ``fp32_graph`` to int8, calibrated on ``calib``, checked on ``check`` against ``targets``.

    Args:
        fp32_graph: the serialized fp32 ONNX model (uint8 NCHW ``image`` in, probabilities out).
        calib: uint8 ``(N, 3, H, W)`` calibration images, as the graph takes them.
        check: uint8 ``(M, 3, H, W)`` labelled images NOT in ``calib``.
        targets: ``check``'s class indices ``(M,)``; multi-label: a ``(M, n_classes)`` 0/1 array.
        multi_label, threshold: the model decides per label, ``probs > threshold``.
        max_drop: accuracy points int8 may lose against fp32 on ``check`` (negative: always refuse).
        target: how errors name the model (e.g. its file).
        num_threads: onnxruntime threads for the check (default: onnxruntime's).

    Returns:
        ``(int8 graph bytes, Int8Report)``.

    Raises:
        Int8Refused: int8 accuracy is more than ``max_drop`` points below fp32's.
    """
    import onnx
    import onnxruntime as ort

    input_name, size = _graph_input(onnx.load_from_string(fp32_graph))
    calib, check = _check_images(calib, "calibration images", size), _check_images(check, "check images", size)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if num_threads:
        so.intra_op_num_threads = num_threads
    fp32 = ort.InferenceSession(fp32_graph, so, providers=["CPUExecutionProvider"])
    p32 = _probs(fp32, check)
    targets = _check_targets(targets, len(check), p32.shape[1], multi_label)
    int8_graph = _int8_graph(fp32_graph, calib, input_name)
    p8 = _probs(ort.InferenceSession(int8_graph, so, providers=["CPUExecutionProvider"]), check)
    d32, d8 = _decisions(p32, multi_label, threshold), _decisions(p8, multi_label, threshold)
    same = (d32 == d8).all(1) if multi_label else d32 == d8
    acc32, acc8 = _accuracy(d32, targets), _accuracy(d8, targets)
    report = Int8Report(fp32_accuracy=round(acc32, 4), int8_accuracy=round(acc8, 4), drop=round(acc32 - acc8, 4),
                        agreement=round(100.0 * float(same.mean()), 4), n_calib=len(calib), n_check=len(check),
                        max_drop=float(max_drop), multi_label=multi_label)
    if report.drop > max_drop:
        raise Int8Refused(target, report)
    return int8_graph, report


def split_for_calibration(n: int, max_calib: int = MAX_CALIB, max_check: int = MAX_CHECK,
                          seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of ``n`` labelled images: ``(calibration, check)``, disjoint, in a seeded random order.

    Half the images calibrate (at most ``max_calib``) and the rest check (at most ``max_check``):
    more check images make the accuracy drop a finer measure (one image of 100 is one point).
    """
    if n < 2:
        raise ValueError(f"int8 calibration needs at least 2 labelled images (some to calibrate, others to "
                         f"check accuracy on), got {n}")
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_calib = min(max_calib, n // 2)
    return sorted(order[:n_calib]), sorted(order[n_calib : n_calib + max_check])


def images_as_graph_input(pred: Any, items: Sequence[Any]) -> np.ndarray:
    """``items`` decoded and resized by ``pred`` (its validation item transforms): uint8 ``(N, 3, H, W)``."""
    return np.stack([np.ascontiguousarray(pred.preprocess(it).transpose(2, 0, 1)) for it in items])


def how_to_add_int8(path: str | Path) -> str:
    """The two ways to give ``path`` an int8 graph, for error messages."""
    return (f"add one with `vision-tl quantize {path} --calib DIR` (a folder of labelled images) or export it "
            "with learn.export(..., int8=True)")


def stored_int8(vtl: VtlFile) -> tuple[bytes, Int8Report]:
    """The int8 graph and its report stored in ``vtl``; a ``ValueError`` saying how to add them when absent."""
    graph, entry = vtl.payloads.get(INT8_PAYLOAD), vtl.manifest.get(INT8_ENTRY)
    if graph is None or not isinstance(entry, dict):
        raise ValueError(f"{str(vtl.path)!r} has no int8 graph: {how_to_add_int8(vtl.path)}")
    return graph, Int8Report.from_dict(entry)


def int8_entry(report: Int8Report, calibrated_on: str) -> dict[str, Any]:
    """The manifest entry stored next to the int8 payload: the report plus what it was calibrated on."""
    return {**report.to_dict(), "calibrated_on": calibrated_on}


def describe_int8(manifest: dict[str, Any]) -> str:
    """``vision-tl info``'s int8 line: the measured drop, or how to add int8."""
    entry = manifest.get(INT8_ENTRY)
    if not isinstance(entry, dict):
        return "int8:          none (vision-tl quantize MODEL --calib DIR, or learn.export(..., int8=True))"
    try:
        return f"int8:          {Int8Report.from_dict(entry).summary()}"
    except TypeError:  # an entry written by a future vision_tl with other fields
        return f"int8:          drop {entry.get('drop')} points"
