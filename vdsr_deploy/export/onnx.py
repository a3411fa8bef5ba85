"""PyTorch weights -> ONNX (FP32, and FP16 for TensorRT), checked and verified before writing.

The graph is written directly with ``onnx.helper`` from the validated state dict: 20
Conv(+Relu) nodes and the global residual Add, with the tensor names and dynamic axes from
:mod:`vdsr_deploy.io_names`. The FP16 graph keeps float32 input and output: ``Cast`` to
float16, every Conv in float16 (weights and compute), ``Cast`` back, and the residual
``Add`` in float32 — what a strongly typed TensorRT network needs to build an FP16 engine.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vdsr_deploy import __version__
from vdsr_deploy.errors import BuildError, ConfigError, VdsrError
from vdsr_deploy.fileops import atomic_write_bytes
from vdsr_deploy.io_names import DYNAMIC_AXES, INPUT_NAME, OPSET, OUTPUT_NAME
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.onnx_metadata import (
    EXPORTER_VERSION,
    MetadataKey,
    default_onnx_name,
    is_current_export,
    onnx_metadata,
    remember_metadata,
)
from vdsr_deploy.model.weights import WeightsInfo, state_dict_sha256
from vdsr_deploy.precision.names import ONNX_PRECISIONS

_log = logging.getLogger(__name__)

# Verification tolerances against PyTorch fp32, max abs difference on [0, 1] data.
VERIFY_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}
VERIFY_SHAPES: tuple[tuple[int, int, int, int], ...] = ((2, 1, 37, 53), (1, 1, 64, 31))


@dataclass(frozen=True)
class ExportResult:
    path: Path
    precision: str
    max_abs_diff: float
    shapes_checked: tuple[tuple[int, int, int, int], ...]
    metadata: dict[str, str]
    already_in_place: bool = False
    """The file at ``path`` already held exactly these bytes (nothing was written)."""


def build_graph(model: VDSR, precision: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """The ONNX model for ``model`` in ``precision`` (fp32 or fp16); not yet verified."""
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(f"precision: expected one of {', '.join(ONNX_PRECISIONS)}, got {precision!r}")
    numpy_type = np.float16 if precision == "fp16" else np.float32
    dims: list[str | int] = [DYNAMIC_AXES.get(axis, 1) for axis in range(4)]
    graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, dims)
    graph_output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = INPUT_NAME
    if precision == "fp16":
        nodes.append(
            helper.make_node(
                "Cast", [INPUT_NAME], ["input_fp16"], to=TensorProto.FLOAT16, name="cast_in"
            )
        )
        current = "input_fp16"
    state = model.state_dict()
    for index in range(model.depth):
        weight = state[f"body.{2 * index}.weight"].detach().cpu().numpy().astype(numpy_type)
        bias = state[f"body.{2 * index}.bias"].detach().cpu().numpy().astype(numpy_type)
        w_name, b_name = f"conv{index + 1}.weight", f"conv{index + 1}.bias"
        initializers += [
            numpy_helper.from_array(weight, w_name),
            numpy_helper.from_array(bias, b_name),
        ]
        conv_out = f"conv{index + 1}"
        nodes.append(
            helper.make_node(
                "Conv",
                [current, w_name, b_name],
                [conv_out],
                name=conv_out,
                kernel_shape=[3, 3],
                pads=[1, 1, 1, 1],
                strides=[1, 1],
            )
        )
        current = conv_out
        if index < model.depth - 1:
            relu_out = f"relu{index + 1}"
            nodes.append(helper.make_node("Relu", [current], [relu_out], name=relu_out))
            current = relu_out
    if precision == "fp16":
        nodes.append(
            helper.make_node("Cast", [current], ["residual"], to=TensorProto.FLOAT, name="cast_out")
        )
        current = "residual"
    nodes.append(
        helper.make_node("Add", [INPUT_NAME, current], [OUTPUT_NAME], name="global_residual")
    )
    graph = helper.make_graph(
        nodes, "vdsr", [graph_input], [graph_output], initializer=initializers
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="vdsr-deploy",
        producer_version=__version__,
    )
    onnx_model.ir_version = 8
    onnx_model.doc_string = (
        "VDSR (Kim et al. 2016): input = bicubic-upscaled Y in [0,1], (N,1,H,W) float32"
    )
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    return onnx_model


def export_metadata(model: VDSR, info: WeightsInfo | None, precision: str) -> dict[str, str]:
    """Metadata carried in the ONNX file: what made it, from which weights. Nothing here
    depends on the installed torch, so the file (and its hash, part of the engine cache
    key) is the same for the same weights whatever torch exported it."""
    weights_hash = info.sha256 if info else state_dict_sha256(model.state_dict())
    return {
        MetadataKey.PRECISION: precision,
        MetadataKey.WEIGHTS_SHA256: weights_hash,
        MetadataKey.SCALES: json.dumps(list(info.scales) if info else [2.0, 3.0, 4.0]),
        MetadataKey.DEPTH: str(model.depth),
        MetadataKey.CHANNELS: str(model.channels),
        MetadataKey.INPUT: INPUT_NAME,
        MetadataKey.OUTPUT: OUTPUT_NAME,
        MetadataKey.EXPORTER: str(EXPORTER_VERSION),
        MetadataKey.VERSIONS: json.dumps({"vdsr_deploy": __version__, "onnx": onnx.__version__}),
    }


def verify(onnx_model: onnx.ModelProto, model: VDSR, precision: str, seed: int = 0) -> float:
    """Max abs difference between ONNX Runtime (CPU) and PyTorch fp32 over VERIFY_SHAPES.

    Raises :class:`BuildError` above the tolerance of ``precision``.
    """
    import torch

    try:
        import onnxruntime
    except ImportError as error:
        raise BuildError(
            "verifying an export needs onnxruntime: pip install 'vdsr-deploy[cpu]'"
        ) from error
    session = onnxruntime.InferenceSession(
        onnx_model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(seed)
    worst = 0.0
    model = model.float().eval()
    for shape in VERIFY_SHAPES:
        batch = rng.random(shape, dtype=np.float32)
        (ort_out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        with torch.inference_mode():
            reference = model(torch.from_numpy(batch)).numpy()
        if ort_out.shape != reference.shape:
            raise BuildError(
                f"ONNX output shape {ort_out.shape} != PyTorch {reference.shape} for input {shape}"
            )
        # checked per shape: Python's max(0.0, nan) is 0.0, so a running max would lose a NaN
        nonfinite = int(np.count_nonzero(~np.isfinite(ort_out)))
        nonfinite_reference = int(np.count_nonzero(~np.isfinite(reference)))
        if nonfinite or nonfinite_reference:
            raise BuildError(
                f"{precision} ONNX output is not finite for input {shape}: expected finite values, "
                f"got {nonfinite} NaN/Inf of {ort_out.size} (PyTorch fp32: {nonfinite_reference})"
                + (" - weights beyond float16's range?" if precision == "fp16" else "")
            )
        worst = max(worst, float(np.max(np.abs(ort_out - reference))))
    if not math.isfinite(worst) or worst > VERIFY_TOLERANCE[precision]:
        raise BuildError(
            f"{precision} ONNX differs from PyTorch by {worst:.3g} (tolerance {VERIFY_TOLERANCE[precision]:g})"
        )
    return worst


def export_onnx(
    model: VDSR,
    path: Path,
    *,
    precision: str = "fp32",
    info: WeightsInfo | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Build, ``onnx.checker``-check, verify against PyTorch, then atomically write ``path``.

    An existing file with exactly the bytes of this export (e.g. the one ``vdsr upscale``
    cached) is success: it is left in place (``already_in_place``). An existing file that
    differs is refused unless ``overwrite``.
    """
    target = Path(path)
    metadata = export_metadata(model, info, precision)
    onnx_model = build_graph(model, precision, metadata)
    try:
        onnx.checker.check_model(onnx_model, full_check=True)
    except onnx.checker.ValidationError as error:
        raise BuildError(f"onnx.checker rejected the {precision} graph: {error}") from error
    worst = verify(onnx_model, model, precision)
    # recorded so that later runs trust the file without verifying it again (the measured
    # difference is left out: it would make the file's bytes depend on this CPU)
    verified = {
        "against": "PyTorch FP32 on CPU",
        "max_abs_tolerance": VERIFY_TOLERANCE[precision],
        "shapes": [list(s) for s in VERIFY_SHAPES],
        "passed": True,
    }
    metadata[MetadataKey.VERIFIED] = json.dumps(verified)
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = MetadataKey.VERIFIED, metadata[MetadataKey.VERIFIED]
    content = onnx_model.SerializeToString()
    if target.exists():
        if _same_bytes(target, content):
            remember_metadata(target, metadata)
            return ExportResult(target, precision, worst, VERIFY_SHAPES, metadata, already_in_place=True)
        if not overwrite:
            raise BuildError(
                f"{target}: already exists and differs from this export (other weights, precision or "
                "exporter); use --overwrite to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, content)
    remember_metadata(target, metadata)
    return ExportResult(target, precision, worst, VERIFY_SHAPES, metadata)


def _same_bytes(path: Path, content: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``content`` (an unreadable file does not)."""
    try:
        return path.is_file() and path.stat().st_size == len(content) and path.read_bytes() == content
    except OSError:
        return False


def ensure_onnx(model: VDSR, info: WeightsInfo, precision: str, cache_dir: Path) -> Path:
    """The ONNX for these weights in ``cache_dir``, exported (and verified) if missing, or
    if the one there is for other weights or precision or from an older exporter."""
    path = cache_dir / default_onnx_name(info.sha256, precision)
    if path.is_file():
        try:
            if is_current_export(onnx_metadata(path), info.sha256, precision):
                return path
        except VdsrError:  # a cache entry is disposable: a damaged one is made again
            _log.warning("note: %s: the cached export is unreadable; exporting it again", path)
    export_onnx(model, path, precision=precision, info=info, overwrite=True)
    return path
