"""Whether an ONNX file a user gives is a model this tool may run: checked, never assumed.

A file is run only when (1) its inputs and outputs are the VDSR contract of
:mod:`vdsr_deploy.io_names` (one float32 input ``(N, 1, H, W)`` named ``input``, one output
named ``output``), always, and (2) it is a vdsr-deploy export: its metadata names the
weights it was made from, the architecture, the I/O names and the export's verification
against PyTorch, and its graph has as many convolutions as the depth it claims. (2) is
waived with ``foreign=True`` (``--foreign-model``), for a user who runs another model
knowingly. A file made to pass (forged metadata over another graph of the same depth) is
not caught here; the check is against mistakes, not against an attacker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.io_names import CHANNELS, INPUT_NAME, OUTPUT_NAME
from vdsr_deploy.model.onnx_metadata import MetadataKey, model_metadata

FOREIGN_HINT = "export one with `vdsr export`, or pass --foreign-model to run it knowingly"
_FLOAT = 1  # onnx.TensorProto.FLOAT
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger"})
"""Operators that make a graph an INT8 model (the project's QDQ export, or another's)."""
_REQUIRED = (
    MetadataKey.WEIGHTS_SHA256,
    MetadataKey.DEPTH,
    MetadataKey.CHANNELS,
    MetadataKey.EXPORTER,
    MetadataKey.VERIFIED,
)


def check_given_onnx(path: Path, *, foreign: bool = False, precision: str | None = None) -> None:
    """Raise :class:`InvalidInputError` (one sentence naming ``path``) unless the ONNX file
    ``path`` may be run (see the module docstring) at ``precision`` (None: any): an INT8
    graph (:data:`QUANTIZED_OPS`) runs only as ``int8``, and ``int8`` only runs such a graph,
    so the runner's label and the quality checks that follow it name what actually runs."""
    model = _load(path)
    graph = model.graph
    _check_io(path, graph)
    if precision is not None:
        _check_precision(path, graph, precision)
    if foreign:
        return
    metadata = model_metadata(model)
    missing = [key for key in _REQUIRED if key not in metadata]
    if missing:
        raise InvalidInputError(
            f"{path}: not a vdsr-deploy export (no {', '.join(missing)} metadata), so nothing "
            f"says which weights it runs; {FOREIGN_HINT}"
        )
    for key, expected in ((MetadataKey.INPUT, INPUT_NAME), (MetadataKey.OUTPUT, OUTPUT_NAME)):
        if metadata.get(key, expected) != expected:
            raise InvalidInputError(f"{path}: metadata {key}: expected {expected!r}, got {metadata[key]!r}")
    convolutions = sum(1 for node in graph.node if node.op_type in ("Conv", "ConvInteger", "QLinearConv"))
    depth = metadata[MetadataKey.DEPTH]
    if str(convolutions) != depth:
        raise InvalidInputError(
            f"{path}: its metadata claims a VDSR of depth {depth}, but the graph has "
            f"{convolutions} convolutions: not the model it claims to be; {FOREIGN_HINT}"
        )


def _load(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise InvalidInputError(f"{path}: not a readable ONNX file ({error})") from error


def is_quantized(path: Path) -> bool:
    """Whether the ONNX file ``path`` is an INT8 model (has :data:`QUANTIZED_OPS`)."""
    return _quantized(_load(path).graph)


def _quantized(graph: Any) -> bool:
    return any(node.op_type in QUANTIZED_OPS for node in graph.node)


def _check_precision(path: Path, graph: Any, precision: str) -> None:
    quantized = _quantized(graph)
    if quantized and precision != "int8":
        raise InvalidInputError(
            f"{path}: an INT8 model (quantized layers), but --precision {precision} was asked; "
            "use --precision int8 (or auto)"
        )
    if precision == "int8" and not quantized:
        raise InvalidInputError(
            f"{path}: --precision int8 expected an INT8 model (`vdsr export -p int8` makes one), "
            "got one without quantized layers"
        )


def _describe(value: Any) -> str:
    tensor = value.type.tensor_type
    dims = [d.dim_param or str(d.dim_value) if (d.dim_param or d.dim_value) else "?" for d in tensor.shape.dim]
    kind = {1: "float32", 10: "float16", 11: "float64"}.get(tensor.elem_type, f"type {tensor.elem_type}")
    return f"{value.name!r} ({', '.join(dims)}) {kind}"


def _check_io(path: Path, graph: Any) -> None:
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    expected = f"one input {INPUT_NAME!r} (N, {CHANNELS}, H, W) float32"
    tensor = inputs[0].type.tensor_type if len(inputs) == 1 else None
    dims = list(tensor.shape.dim) if tensor is not None else []
    fits = (
        tensor is not None
        and inputs[0].name == INPUT_NAME
        and tensor.elem_type == _FLOAT
        and len(dims) == 4
        and dims[1].dim_value == CHANNELS
    )
    if not fits:
        got = ", ".join(_describe(value) for value in inputs) or "no input"
        raise InvalidInputError(f"{path}: expected {expected}, got {got}: not a VDSR luma model")
    outputs = [value.name for value in graph.output]
    if outputs != [OUTPUT_NAME]:
        raise InvalidInputError(
            f"{path}: expected one output {OUTPUT_NAME!r}, got {', '.join(map(repr, outputs)) or 'none'}"
        )
