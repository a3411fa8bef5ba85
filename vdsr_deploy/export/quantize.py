"""Static INT8 (QDQ) quantization of the FP32 ONNX for ONNX Runtime on CPU.

The 18 inner 64->64 convolutions (99.8% of the multiply-adds) get INT8 weights (per output
channel, symmetric) and UINT8 activations; the first and last convolutions and the global
residual ``Add`` stay FP32, so the input keeps full precision, the residual is not rounded
to an 8-bit grid, and the output keeps the input's exact values where the residual is
small. Activation ranges come from calibration inputs: HR tiles degraded by the paper's
protocol (MATLAB bicubic down and up, Y channel); guard inputs (full-contrast edges) can
widen the ReLU ranges part of the way (``guard_share``, set through onnxruntime's
``TensorQuantOverrides``), the trade-off between clipping 1-px black/white edges and the
coarser 8-bit grid photos then get (docs/quality/int8-recipe.md). Users never call this directly:
:mod:`vdsr_deploy.export.int8` makes the cached model ``--precision int8`` runs (calibrated on the
procedurally drawn tiles shipped in ``assets/``, or on a user's own images). Check it with
``vdsr validate -r onnxruntime-int8`` (the int8 tolerance) and ``vdsr eval -b onnxruntime
-p int8``; ``benchmarks/cpu.py`` measures its speed and Set5/Set14 cost.

onnxruntime is imported only inside the functions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import BackendUnavailableError, BuildError, ConfigError, InvalidInputError
from vdsr_deploy.fileops import temporary_path
from vdsr_deploy.io_names import INPUT_NAME
from vdsr_deploy.model.onnx_metadata import MetadataKey, model_metadata

METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QuantizeConfig:
    """``tiles`` calibration tiles of ``tile`` x ``tile`` pixels, drawn from the images at
    ``scales``; ``method``: how activation ranges are set from them (``percentile`` clips
    the top ``100 - percentile`` % of values); ``keep_float_ends``: first/last conv and the
    residual Add stay FP32; ``float_convs``: more convolutions kept FP32, by their index in
    the network (0 = the first, ``depth - 1`` = the last; e.g. ``(1,)`` keeps the weights and
    arithmetic of the first inner 64->64 conv FP32; its input stays 8-bit unless the conv
    before it is FP32 too); ``reduce_range``: 7-bit weights (onnxruntime's guard
    against u8s8 overflow in AVX2's ``vpmaddubsw`` on CPUs without VNNI); ``quantize_bias``:
    biases as int32 (False keeps them FP32); ``symmetric_activations``: activation ranges
    centred on 0 (onnxruntime's ``ActivationSymmetric``); ``guard_share``: with guard planes
    given to :func:`quantize_int8`, how far each ReLU output's range widens from the
    largest value the calibration planes reach (``P``) towards the largest the guard planes
    reach (``G``): ``P * (G / P) ** guard_share`` (0: the planes alone; 1: MinMax over both);
    ``guard_convs``: the ReLU outputs of these convolutions (indices as in ``float_convs``)
    take the full guard range whatever ``guard_share`` is."""

    tiles: int = 32
    tile: int = 64
    scales: tuple[int, ...] = (2, 3, 4)
    method: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    keep_float_ends: bool = True
    seed: int = 0
    float_convs: tuple[int, ...] = ()
    reduce_range: bool = False
    quantize_bias: bool = True
    symmetric_activations: bool = False
    guard_share: float = 1.0
    guard_convs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.tiles < 1:
            raise ConfigError(f"tiles: expected >= 1, got {self.tiles}")
        if self.tile < 8:
            raise ConfigError(f"tile: expected >= 8 pixels, got {self.tile}")
        if not self.scales:
            raise ConfigError(f"scales: expected at least one scale, got {self.scales}")
        for scale in self.scales:
            protocol.check_scale(scale, integer=True, name="scales")
        if self.method not in METHODS:
            raise ConfigError(f"method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if not 90.0 < self.percentile <= 100.0:
            raise ConfigError(f"percentile: expected a value in (90, 100], got {self.percentile}")
        if not 0.0 <= self.guard_share <= 1.0:
            raise ConfigError(f"guard_share: expected a value in [0, 1], got {self.guard_share}")
        for name in ("float_convs", "guard_convs"):
            indices = getattr(self, name)
            if any(index < 0 for index in indices) or len(set(indices)) != len(indices):
                raise ConfigError(f"{name}: expected distinct conv indices >= 0, got {indices}")


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    calibration_tiles: int
    quantized_convs: int
    float_nodes: tuple[str, ...]
    seconds: float
    config: QuantizeConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "calibration_tiles": self.calibration_tiles,
            "quantized_convs": self.quantized_convs,
            "float_nodes": list(self.float_nodes),
            "seconds": self.seconds,
            "config": asdict(self.config),
        }


def calibration_planes(paths: Sequence[Path], config: QuantizeConfig) -> list[NDArray[np.float32]]:
    """Network-input tiles (bicubic-degraded Y in [0, 1]) from HR images, deterministic:
    image ``i`` is degraded at ``scales[i % len(scales)]``, then tiles are cut at random
    positions, round-robin over the images, until ``config.tiles`` are collected."""
    from vdsr_deploy.imageio.folders import hr_luma

    if not paths:
        raise InvalidInputError("expected at least one calibration image")
    rng = np.random.default_rng(config.seed)
    inputs: list[NDArray[np.float64]] = []
    for index, path in enumerate(paths):
        scale = config.scales[index % len(config.scales)]
        hr = np.asarray(protocol.modcrop(hr_luma(Path(path)), scale), dtype=np.float64)
        if min(hr.shape) < max(config.tile, 2 * scale):
            raise InvalidInputError(
                f"{path}: {hr.shape[1]}x{hr.shape[0]} is smaller than a {config.tile}px tile"
            )
        inputs.append(protocol.degrade(hr, scale))
    planes: list[NDArray[np.float32]] = []
    while len(planes) < config.tiles:
        image = inputs[len(planes) % len(inputs)]
        top = int(rng.integers(0, image.shape[0] - config.tile + 1))
        left = int(rng.integers(0, image.shape[1] - config.tile + 1))
        crop = image[top : top + config.tile, left : left + config.tile]
        planes.append(np.ascontiguousarray(crop, dtype=np.float32))
    return planes


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization warns on the root logger ("consider pre-processing"); the
    VDSR graph has nothing to pre-process, so keep those lines off the user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _conv_names(model: Any) -> list[str]:
    return [node.name for node in model.graph.node if node.op_type == "Conv"]


def float_nodes(convs: Sequence[str], config: QuantizeConfig) -> list[str]:
    """The nodes ``config`` keeps FP32, given the graph's convolution names in order."""
    for name in ("float_convs", "guard_convs"):
        for index in getattr(config, name):
            if index >= len(convs):
                raise ConfigError(f"{name}: expected indices below {len(convs)} (the convolutions), got {index}")
    ends = [convs[0], convs[-1], "global_residual"] if config.keep_float_ends else []
    extra = [convs[i] for i in sorted(config.float_convs) if convs[i] not in ends]
    return ends + extra


def activation_maxima(fp32_onnx: Path, planes: Sequence[NDArray[np.float32]]) -> dict[str, float]:
    """The largest value of each ReLU output of the FP32 graph (the activations INT8 rounds
    to 8 bits) over ``planes``, by tensor name."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(fp32_onnx))
    names = [node.output[0] for node in model.graph.node if node.op_type == "Relu"]
    known = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names if name not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    maxima = dict.fromkeys(names, 0.0)
    for plane in planes:
        values = session.run(names, {INPUT_NAME: plane[None, None].astype(np.float32)})
        for name, value in zip(names, values, strict=True):
            maxima[name] = max(maxima[name], float(np.max(value)))
    return maxima


def relu_outputs(model: Any, conv_indices: Sequence[int]) -> list[str]:
    """The ReLU output tensors fed by the convolutions at ``conv_indices``."""
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    relus = {node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "Relu"}
    return [relus[convs[i].output[0]] for i in conv_indices if convs[i].output[0] in relus]


def guarded_ranges(
    fp32_onnx: Path,
    planes: Sequence[NDArray[np.float32]],
    guard_planes: Sequence[NDArray[np.float32]],
    share: float,
    full: Sequence[str] = (),
) -> dict[str, float]:
    """Each ReLU output's upper range limit: ``P * (G / P) ** share`` (``G`` for the
    tensors in ``full``) where ``P`` and ``G`` are its largest values over ``planes`` and
    over ``planes`` + ``guard_planes``."""
    photo = activation_maxima(fp32_onnx, planes)
    guard = activation_maxima(fp32_onnx, guard_planes)
    ranges: dict[str, float] = {}
    for name, p in photo.items():
        g = max(guard[name], p)
        ranges[name] = g if name in full or p <= 0 else p * (g / p) ** share
    return ranges


def quantize_int8(
    fp32_onnx: Path,
    output: Path,
    planes: Sequence[NDArray[np.float32]],
    config: QuantizeConfig | None = None,
    *,
    guard_planes: Sequence[NDArray[np.float32]] = (),
    overwrite: bool = False,
) -> QuantizeResult:
    """Write a static INT8 QDQ model of ``fp32_onnx`` (a vdsr-deploy FP32 export) to
    ``output``, calibrated on ``planes`` (see :func:`calibration_planes`). ``guard_planes``
    (e.g. full-contrast edges, :func:`vdsr_deploy.export.calibration.guard_inputs`) widen
    the ReLU ranges by ``config.guard_share`` (:func:`guarded_ranges`); the other ranges come
    from ``config.method`` on ``planes`` (with ``guard_share`` 1 and MinMax, the same as
    calibrating on both). The vdsr metadata is kept, with ``vdsr.precision`` = ``int8`` and
    the settings in ``vdsr.quantization``."""
    import onnx

    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as error:
        raise BackendUnavailableError(
            "INT8 quantization needs onnxruntime: pip install 'vdsr-deploy[cpu]'"
        ) from error

    config = config or QuantizeConfig()
    target = Path(output)
    if target.exists() and not overwrite:
        raise BuildError(f"{target}: already exists (use overwrite to replace it)")
    if not planes:
        raise InvalidInputError("expected at least one calibration tile")
    source = onnx.load(str(fp32_onnx))
    metadata = model_metadata(source)
    if metadata.get(MetadataKey.PRECISION, "fp32") != "fp32":
        raise BuildError(
            f"{fp32_onnx}: expected an FP32 vdsr-deploy ONNX, "
            f"got precision {metadata.get(MetadataKey.PRECISION)}"
        )
    convs = _conv_names(source)
    excluded = float_nodes(convs, config)

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._items = iter(planes)

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            plane = next(self._items, None)
            return None if plane is None else {INPUT_NAME: plane[None, None].astype(np.float32)}

    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[config.method]
    # (not CalibMaxIntermediateOutputs: in onnxruntime 1.32 it discards the collected batches)
    extra: dict[str, Any] = {"QuantizeBias": config.quantize_bias}
    if config.symmetric_activations:
        extra["ActivationSymmetric"] = True
    if config.method == "percentile":
        extra["CalibPercentile"] = config.percentile
    if guard_planes:
        full = relu_outputs(source, config.guard_convs)
        ranges = guarded_ranges(fp32_onnx, planes, guard_planes, config.guard_share, full)
        extra["TensorQuantOverrides"] = {
            name: [{"rmin": np.float32(0.0), "rmax": np.float32(rmax)}] for name, rmax in ranges.items()
        }
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(target)
    try:
        with _quiet_root_logger():
            quantize_static(
                str(fp32_onnx),
                str(temporary),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Relu"],
                per_channel=config.per_channel,
                reduce_range=config.reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=method,
                extra_options=extra,
            )
    except Exception as error:  # onnxruntime.quantization raises assorted exception types
        temporary.unlink(missing_ok=True)
        raise BuildError(f"INT8 quantization of {fp32_onnx} failed: {error}") from error
    quantized = onnx.load(str(temporary))
    del quantized.metadata_props[:]
    metadata[MetadataKey.PRECISION] = "int8"
    metadata[MetadataKey.QUANTIZATION] = json.dumps(
        {
            **asdict(config),
            "float_nodes": excluded,
            "calibration_tiles": len(planes),
            "guard_tiles": len(guard_planes),
            "format": "QDQ",
        }
    )
    for key, value in metadata.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(quantized, str(temporary))
    temporary.replace(target)
    count = len(convs) - len([name for name in excluded if name in convs])
    return QuantizeResult(
        target, len(planes), count, tuple(excluded), time.perf_counter() - started, config
    )
