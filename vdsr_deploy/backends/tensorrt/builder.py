"""ONNX -> serialized TensorRT engine + JSON sidecar (the build step; the cache it fills
is :mod:`vdsr_deploy.backends.tensorrt.cache`, and a missing engine is built here).

One code path for TensorRT 10 and 11: the network is strongly typed (``STRONGLY_TYPED`` on
10.x; always, and the flag ignored or gone, on 11.x), so the engine's precision is the
ONNX's: an FP16 engine is built from the FP16 ONNX of :mod:`vdsr_deploy.export.onnx` (float32
I/O, FP16 convolutions, float32 residual Add). ``BuilderFlag.FP16`` is never used (11.x
removed it). After the build, the engine inspector's JSON is parsed and an fp16 build
with no FP16 layer fails loudly; an fp32 build switches TF32 off and must contain none.

The inspector-JSON parsing needs no GPU; :func:`build_engine` and
:func:`find_or_build_engine` import TensorRT on call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
from vdsr_deploy.backends.tensorrt.cache import EngineRecord, select_cached, wanted_key
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import (
    LOCK_SUFFIX,
    EngineKey,
    describe_profile,
    engine_file_name,
    sidecar_path,
    timing_cache_path,
)
from vdsr_deploy.backends.tensorrt.library import TensorRTLog, require_tensorrt, shared_tensorrt_logger
from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar, read_sidecar, write_sidecar
from vdsr_deploy.errors import BuildError, ConfigError
from vdsr_deploy.fileops import atomic_write_bytes, exclusive_file_lock, require_regular_file
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME
from vdsr_deploy.model.onnx_metadata import MetadataKey

if TYPE_CHECKING:
    import tensorrt as trt

_LOG = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------
# Engine inspector JSON -> layer precisions

_FP16 = re.compile(r"\b(half|fp16|float16)\b", re.IGNORECASE)
_FP32 = re.compile(r"\b(float|fp32|float32)\b", re.IGNORECASE)
_BF16 = re.compile(r"\b(bf16|bfloat16)\b", re.IGNORECASE)
_INT8 = re.compile(r"\b(int8)\b", re.IGNORECASE)
# TensorRT <= 10: "Format/Datatype" per tensor; 11: separate "Format" and "DataType".
_TENSOR_TYPE_FIELDS = ("Format/Datatype", "DataType", "Datatype", "Format")


def type_tokens(text: str) -> set[str]:
    """``{"fp16"}`` for ``"Channel major FP16 format where channel % 8 == 0"`` etc."""
    found = set()
    for name, pattern in (("fp16", _FP16), ("fp32", _FP32), ("bf16", _BF16), ("int8", _INT8)):
        if pattern.search(text):
            found.add(name)
    return found


def layer_types(layer: Mapping[str, Any]) -> set[str]:
    """Data types a layer of the inspector JSON touches: its input/output tensors' types
    and its weights' and bias' types."""
    texts: list[str] = []
    for key in ("Inputs", "Outputs"):
        tensors = layer.get(key)
        if not isinstance(tensors, list):
            continue
        for tensor in tensors:
            if isinstance(tensor, Mapping):
                texts.extend(
                    str(tensor[f]) for f in _TENSOR_TYPE_FIELDS if isinstance(tensor.get(f), str)
                )
    for key in ("Weights", "Bias"):
        value = layer.get(key)
        if isinstance(value, Mapping) and isinstance(value.get("Type"), str):
            texts.append(str(value["Type"]))
    found: set[str] = set()
    for text in texts:
        found |= type_tokens(text)
    return found


@dataclass(frozen=True)
class LayerPrecisions:
    """Summary of an engine's layers: how many there are and how many touch FP16/FP32.
    ``detailed`` is False when the inspector gave layer names only (nothing to verify)."""

    layers: int
    fp16_layers: int
    fp32_layers: int
    detailed: bool
    fp16_names: tuple[str, ...] = field(default=(), repr=False)


def summarize_inspector_json(text: str) -> LayerPrecisions:
    """Parse ``EngineInspector.get_engine_information(LayerInformationFormat.JSON)``."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise BuildError(f"the engine inspector returned no valid JSON ({error})") from error
    layers = data.get("Layers") if isinstance(data, Mapping) else data
    if not isinstance(layers, list):
        raise BuildError("the engine inspector's JSON has no 'Layers' list")
    detailed = bool(layers) and all(isinstance(layer, Mapping) for layer in layers)
    fp16, fp32 = [], 0
    for index, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            continue
        types = layer_types(layer)
        if "fp16" in types:
            fp16.append(str(layer.get("Name", f"layer {index}")))
        if "fp32" in types:
            fp32 += 1
    return LayerPrecisions(
        layers=len(layers),
        fp16_layers=len(fp16),
        fp32_layers=fp32,
        detailed=detailed,
        fp16_names=tuple(fp16),
    )


def check_precision(summary: LayerPrecisions, precision: str) -> None:
    """Fail loudly when the engine's layers contradict the requested precision."""
    if not summary.detailed:
        raise BuildError(
            "cannot verify the engine's precision: the engine inspector returned layer names only "
            "(the build must use ProfilingVerbosity.DETAILED)"
        )
    if precision == "fp16" and summary.fp16_layers == 0:
        raise BuildError(
            f"the fp16 engine contains no FP16 layer (0 of {summary.layers}): build it from the "
            "FP16 ONNX "
            "(vdsr export --precision fp16); strongly typed TensorRT keeps the ONNX's types"
        )
    if precision == "fp32" and summary.fp16_layers > 0:
        raise BuildError(
            f"the fp32 engine contains {summary.fp16_layers} FP16 layers (e.g. "
            f"{summary.fp16_names[0]}): "
            "build it from the FP32 ONNX"
        )



def network_creation_flags(strongly_typed_bit: int | None) -> int:
    """``create_network`` flags: the STRONGLY_TYPED bit when this TensorRT has the flag
    (10.x needs it; 11.x ignores it or may drop it, every network being strongly typed)."""
    return 0 if strongly_typed_bit is None else 1 << strongly_typed_bit


def check_io_names(inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """The network must have exactly the tensors :mod:`vdsr_deploy.io_names` defines."""
    if list(inputs) != [INPUT_NAME] or list(outputs) != [OUTPUT_NAME]:
        raise BuildError(
            f"expected one input {INPUT_NAME!r} and one output {OUTPUT_NAME!r}, got inputs "
            f"{list(inputs)} "
            f"and outputs {list(outputs)}: export the ONNX with vdsr export"
        )


def check_onnx_precision(metadata: Mapping[str, str], precision: str, onnx_path: Path) -> None:
    """A strongly typed network keeps the ONNX's types: refuse an fp16 build from the FP32
    ONNX (and the reverse) before spending minutes in the builder."""
    declared = metadata.get(MetadataKey.PRECISION)
    if declared is not None and declared != precision:
        raise ConfigError(
            f"{onnx_path} is the {declared} ONNX, but a {precision} engine was asked for: a "
            "strongly typed "
            f"TensorRT network keeps the ONNX's types, so build it from the {precision} ONNX "
            f"(vdsr export --precision {precision})"
        )


def parse_failure_message(onnx_path: Path, errors: Sequence[str]) -> str:
    if not errors:
        return f"TensorRT's ONNX parser rejected {onnx_path} without an error message"
    listed = "; ".join(f"({index + 1}) {error.strip()}" for index, error in enumerate(errors))
    return f"TensorRT's ONNX parser rejected {onnx_path} with {len(errors)} error(s): {listed}"


@dataclass(frozen=True)
class BuildTarget:
    """Where engines are built and run: the GPU, the TensorRT version and the CUDA major
    version (TensorRT's wheels are made per CUDA major: tensorrt-cu12, tensorrt-cu13)."""

    gpu: DeviceInfo
    tensorrt_version: str
    cuda_major: int


def build_target(device: int = 0) -> BuildTarget:
    """This machine's :class:`BuildTarget` for CUDA ``device`` (made current);
    BackendUnavailableError without TensorRT, cuda-python or a GPU."""
    tensorrt_version = require_tensorrt()
    from vdsr_deploy.backends.tensorrt import cuda

    gpu = cuda.require_device(device)
    return BuildTarget(gpu, tensorrt_version, cuda.runtime_version() // 1000)


def build_engine(
    onnx_path: Path, config: EngineBuildConfig, engines_dir: Path, *, device: int = 0
) -> EngineRecord:
    """Build the engine for ``onnx_path`` and ``config`` on ``device`` into ``engines_dir``
    (engine + sidecar, written atomically), whatever the cache holds."""
    onnx_path, engines_dir = Path(onnx_path), Path(engines_dir)
    target = build_target(device)
    wanted, _ = wanted_key(onnx_path, config, target.gpu, target.tensorrt_version, cuda_major=target.cuda_major)
    with exclusive_file_lock(build_lock_path(engines_dir, wanted)):
        return _build(onnx_path, config, engines_dir, target)


def find_or_build_engine(
    onnx_path: Path,
    config: EngineBuildConfig,
    engines_dir: Path,
    *,
    device: int = 0,
    rebuild: bool = False,
) -> EngineRecord:
    """The cached engine that matches exactly (ONNX, config, GPU and SM count, TensorRT,
    CUDA major, package version and build recipe), else a new build next to the others:
    engines for other precisions, profiles or machines stay cached and are never loaded
    for this run. :attr:`EngineRecord.replaced` says why a build was needed. ``rebuild``
    builds even when an exact match exists."""
    target = build_target(device)
    onnx_path, engines_dir = Path(onnx_path), Path(engines_dir)
    wanted = wanted_key(
        onnx_path, config, target.gpu, target.tensorrt_version, cuda_major=target.cuda_major
    )
    selection = select_cached(engines_dir, *wanted)
    if selection.match is not None and not rebuild:
        return EngineRecord(
            path=selection.match, sidecar=read_sidecar(sidecar_path(selection.match)), built=False
        )
    # One build per key at a time across processes: whoever waited looks again, and uses
    # the engine the holder built (unless a rebuild was asked for).
    with exclusive_file_lock(build_lock_path(engines_dir, wanted[0])):
        if not rebuild:
            again = select_cached(engines_dir, *wanted)
            if again.match is not None:
                return EngineRecord(
                    path=again.match, sidecar=read_sidecar(sidecar_path(again.match)), built=False
                )
        record = _build(onnx_path, config, engines_dir, target)
    reasons = ("rebuild asked for",) if selection.match is not None else ()
    return replace(record, replaced=reasons + selection.build_reasons(engines_dir))


def build_lock_path(engines_dir: Path, key: EngineKey) -> Path:
    """The lock file a build of ``key`` holds in ``engines_dir`` (one per key: builds of
    other engines go on in parallel)."""
    return Path(engines_dir) / f"{engine_file_name(key)}{LOCK_SUFFIX}"


def _build(
    onnx_path: Path, config: EngineBuildConfig, engines_dir: Path, target: BuildTarget
) -> EngineRecord:
    require_regular_file(onnx_path, "ONNX file")
    gpu, tensorrt_version = target.gpu, target.tensorrt_version
    wanted, metadata = wanted_key(
        onnx_path, config, gpu, tensorrt_version, cuda_major=target.cuda_major
    )
    check_onnx_precision(metadata, config.precision, onnx_path)
    engines_dir.mkdir(parents=True, exist_ok=True)
    engine_path = engines_dir / engine_file_name(wanted)
    cache_path = config.timing_cache or timing_cache_path(engines_dir, gpu, tensorrt_version)
    sink, logger = shared_tensorrt_logger()
    with sink.capturing():
        started = time.perf_counter()
        blob = _build_serialized(onnx_path, config, cache_path, logger, sink)
        build_seconds = time.perf_counter() - started
        summary = _inspect(blob, config, logger, sink)
    check_precision(summary, config.precision)
    # Published under the build lock, engine then sidecar; a reader accepts the pair only
    # when the engine's sha256 is the one its sidecar records (cache.select_cached), so a
    # pair caught between the two renames is never used.
    atomic_write_bytes(engine_path, blob)
    sidecar = EngineSidecar.from_key(
        wanted,
        engine_file=engine_path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        engine_bytes=len(blob),
        onnx_file=onnx_path.name,
        weights_sha256=metadata.get(MetadataKey.WEIGHTS_SHA256),
        build_seconds=round(build_seconds, 3),
        layers=summary.layers,
        fp16_layers=summary.fp16_layers,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        timing_cache=str(cache_path),
    )
    write_sidecar(sidecar_path(engine_path), sidecar)
    return EngineRecord(path=engine_path, sidecar=sidecar, built=True)


@contextmanager
def _tensorrt_step(step: str, sink: TensorRTLog) -> Iterator[None]:
    """TensorRT's Python bindings raise RuntimeError/TypeError/ValueError: make them BuildError."""
    try:
        yield
    except (RuntimeError, TypeError, ValueError) as error:
        raise BuildError(f"TensorRT {step} failed: {error} ({sink.summary()})") from error


def _build_serialized(
    onnx_path: Path,
    config: EngineBuildConfig,
    cache_path: Path,
    logger: trt.ILogger,
    sink: TensorRTLog,
) -> bytes:
    import tensorrt as trt

    with _tensorrt_step("network creation", sink):
        builder = trt.Builder(logger)
        strongly_typed = (
            int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
            else None
        )
        network = builder.create_network(network_creation_flags(strongly_typed))
        parser = trt.OnnxParser(network, logger)
    with _tensorrt_step("ONNX parsing", sink):
        parsed = parser.parse_from_file(str(onnx_path))
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
    if not parsed:
        raise BuildError(parse_failure_message(onnx_path, errors or [sink.summary()]))
    check_io_names(
        [network.get_input(i).name for i in range(network.num_inputs)],
        [network.get_output(i).name for i in range(network.num_outputs)],
    )
    if network.get_input(0).dtype != trt.DataType.FLOAT:
        raise BuildError(
            f"expected a float32 input {INPUT_NAME!r}, got {network.get_input(0).dtype}"
        )
    with _tensorrt_step("builder configuration", sink):
        builder_config = builder.create_builder_config()
        builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
        builder_config.builder_optimization_level = config.optimization_level
        builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if not config.tf32 and hasattr(trt.BuilderFlag, "TF32"):
            builder_config.clear_flag(trt.BuilderFlag.TF32)
        for index, profile in enumerate(config.profiles):
            optimization_profile = builder.create_optimization_profile()
            optimization_profile.set_shape(
                INPUT_NAME,
                trt.Dims(list(profile.min)),
                trt.Dims(list(profile.opt)),
                trt.Dims(list(profile.max)),
            )
            if builder_config.add_optimization_profile(optimization_profile) < 0:
                raise BuildError(
                    f"TensorRT rejected optimization profile {index}: {describe_profile(profile)}"
                )
        _load_timing_cache(builder_config, cache_path)
    with _tensorrt_step("engine build", sink):
        serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise BuildError(f"TensorRT could not build an engine from {onnx_path}: {sink.summary()}")
    blob = bytes(memoryview(serialized))
    if not blob:
        raise BuildError(f"TensorRT built an empty engine from {onnx_path}: {sink.summary()}")
    _save_timing_cache(builder_config, cache_path)
    return blob


def _load_timing_cache(builder_config: trt.IBuilderConfig, cache_path: Path) -> None:
    """Load the timing cache (a fresh one when missing, unreadable or from another device)."""
    data = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = builder_config.create_timing_cache(data)
    if cache is not None and builder_config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if data:
        _LOG.warning(
            "timing cache %s does not fit this GPU/TensorRT; starting a new one", cache_path
        )
    fresh = builder_config.create_timing_cache(b"")
    if fresh is None or not builder_config.set_timing_cache(fresh, ignore_mismatch=False):
        raise BuildError("TensorRT could not create an empty timing cache")


def _save_timing_cache(builder_config: trt.IBuilderConfig, cache_path: Path) -> None:
    cache = builder_config.get_timing_cache()
    if cache is None:
        _LOG.warning("TensorRT returned no timing cache to save")
        return
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, bytes(memoryview(cache.serialize())))
    except OSError as error:  # a read-only cache dir must not fail a finished build
        _LOG.warning("could not save the timing cache %s: %s", cache_path, error)


def _inspect(
    blob: bytes, config: EngineBuildConfig, logger: trt.ILogger, sink: TensorRTLog
) -> LayerPrecisions:
    """Deserialize the new engine and summarize its layers' precisions. A context with the
    opt shape is attached so formats and types are resolved (with dynamic shapes and no
    context the inspector prints no tensor formats)."""
    import tensorrt as trt

    with _tensorrt_step("engine inspection", sink):
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise BuildError(f"TensorRT could not load the engine it just built: {sink.summary()}")
        inspector = engine.create_engine_inspector()
        if inspector is None:
            raise BuildError("TensorRT could not create an engine inspector")
        context = engine.create_execution_context()
        if context is not None and context.set_input_shape(INPUT_NAME, config.profile.opt):
            inspector.execution_context = context
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        del inspector, context, engine, runtime
    return summarize_inspector_json(text)

