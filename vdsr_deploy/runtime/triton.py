"""A Triton Inference Server model repository: ``vdsr export --triton DIR``.

Layout (what a stock ``tritonserver --model-repository DIR`` loads)::

    DIR/vdsr_onnx/config.pbtxt      platform onnxruntime_onnx (FP32 ONNX, dynamic N, H, W)
    DIR/vdsr_onnx/1/model.onnx
    DIR/vdsr_trt/config.pbtxt       platform tensorrt_plan (FP16 engine; only where TensorRT
    DIR/vdsr_trt/1/model.plan       and a GPU are usable here: engines are not portable)
    DIR/vdsr_trt/engine.json        the engine's sidecar (TensorRT version, GPU, profiles)

Each config is written from the project's one source of truth (tensor names from
:mod:`vdsr_deploy.io_names`, the engine's optimisation profiles from its sidecar) and then
validated: parsed with Triton's own protobuf schema (``tritonclient``'s
``model_config_pb2``, ``pip install 'vdsr-deploy[triton]'``) and checked against the rules
Triton applies at load time that a parse cannot see (:func:`validate_config`).
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import BackendUnavailableError, ConfigError, InvalidInputError, VdsrError
from vdsr_deploy.io_names import CHANNELS, INPUT_NAME, OUTPUT_NAME, ShapeProfile
from vdsr_deploy.planes.tiling import TileConfig

ONNX_MODEL = "vdsr_onnx"
TENSORRT_MODEL = "vdsr_trt"
PLATFORM_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
VERSION = "1"
DEFAULT_QUEUE_DELAY_US = 100
SIDECAR_NAME = "engine.json"


class TritonConfigError(VdsrError):
    """A model configuration Triton would refuse."""


@dataclass(frozen=True)
class TritonModel:
    """One model folder. ``max_batch_size``: largest batch Triton may form (the engine's
    profile maximum for TensorRT); ``profiles``: TensorRT optimisation-profile indices, one
    GPU instance each (a profile serves one execution context at a time); ``instances``:
    GPU instances when there are no profiles (ONNX Runtime)."""

    name: str
    platform: str
    artifact: Path
    max_batch_size: int
    profiles: tuple[int, ...] = ()
    instances: int = 1
    queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    sidecar: Path | None = None  # copied as engine.json

    def __post_init__(self) -> None:
        if self.platform not in PLATFORM_FILES:
            raise ConfigError(f"platform: expected one of {', '.join(sorted(PLATFORM_FILES))}, got {self.platform!r}")
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size: expected >= 1, got {self.max_batch_size}")
        if self.instances < 1:
            raise ConfigError(f"instances: expected >= 1, got {self.instances}")


def config_text(model: TritonModel) -> str:
    """The ``config.pbtxt`` of ``model`` (protobuf text format)."""
    dims = f"[ {CHANNELS}, -1, -1 ]"  # N is implicit with max_batch_size > 0; H, W dynamic
    if model.profiles:
        groups = ",\n".join(
            f'  {{ name: "{model.name}_profile{p}" count: 1 kind: KIND_GPU profile: [ "{p}" ] }}'
            for p in model.profiles
        )
    else:
        groups = f"  {{ count: {model.instances} kind: KIND_GPU }}"
    return (
        f'name: "{model.name}"\n'
        f'platform: "{model.platform}"\n'
        f"max_batch_size: {model.max_batch_size}\n"
        f'input [ {{ name: "{INPUT_NAME}" data_type: TYPE_FP32 dims: {dims} }} ]\n'
        f'output [ {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: {dims} }} ]\n'
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {model.max_batch_size} ]\n"
        f"  max_queue_delay_microseconds: {model.queue_delay_us}\n"
        "}\n"
        f"instance_group [\n{groups}\n]\n"
    )


def _schema() -> tuple[Any, Any]:
    """(model_config_pb2, text_format), or a clear error naming the extra to install."""
    try:
        model_config = importlib.import_module("tritonclient.grpc.model_config_pb2")
        text_format = importlib.import_module("google.protobuf.text_format")
    except ImportError as error:
        raise BackendUnavailableError(
            f"validating Triton configs needs tritonclient: pip install 'vdsr-deploy[triton]' ({error})"
        ) from error
    return model_config, text_format


def validate_config(text: str, *, folder: str, profiles: int = 0) -> Any:
    """Parse ``text`` with Triton's ModelConfig schema and apply Triton's load-time rules for
    this model; returns the parsed message. ``folder``: the model folder's name (Triton
    requires the config's name to match); ``profiles``: the engine's optimisation-profile
    count (TensorRT), 0 for other platforms. Raises :class:`TritonConfigError`."""
    model_config, text_format = _schema()
    config = model_config.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise TritonConfigError(f"{folder}/config.pbtxt: not a Triton model config ({error})") from error
    problems = _problems(config, model_config, folder, profiles)
    if problems:
        raise TritonConfigError(f"{folder}/config.pbtxt: {'; '.join(problems)}")
    return config


def _problems(config: Any, schema: Any, folder: str, profiles: int) -> list[str]:
    problems: list[str] = []
    if config.name != folder:
        problems.append(f"name {config.name!r} differs from its folder {folder!r}")
    if config.platform not in PLATFORM_FILES:
        problems.append(f"platform {config.platform!r} is not one of {', '.join(sorted(PLATFORM_FILES))}")
    if config.max_batch_size < 1:
        problems.append(f"max_batch_size {config.max_batch_size}: expected >= 1 (tiles are batched)")
    for kind, tensors, name in (("input", config.input, INPUT_NAME), ("output", config.output, OUTPUT_NAME)):
        if [t.name for t in tensors] != [name]:
            problems.append(f"{kind}s {[t.name for t in tensors]}: expected [{name!r}]")
        for tensor in tensors:
            if tensor.data_type != schema.TYPE_FP32:
                problems.append(f"{kind} {tensor.name!r}: expected TYPE_FP32")
            dims = list(tensor.dims)
            if len(dims) != 3 or dims[0] != CHANNELS or any(d == 0 or d < -1 for d in dims):
                problems.append(f"{kind} {tensor.name!r} dims {dims}: expected [{CHANNELS}, H, W], H/W -1 or > 0")
    if not config.HasField("dynamic_batching"):
        problems.append("no dynamic_batching")
    elif any(not 1 <= size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size):
        problems.append("a preferred_batch_size is outside 1..max_batch_size")
    if not config.instance_group:
        problems.append("no instance_group")
    for group in config.instance_group:
        if group.kind != schema.ModelInstanceGroup.KIND_GPU or group.count < 1:
            problems.append("instance groups must run >= 1 instance on the GPU")
        for profile in group.profile:
            if not profile.isdigit() or int(profile) >= profiles:
                problems.append(f"instance profile {profile!r}: the engine has {profiles} profile(s)")
    return problems


def write_repository(directory: Path, models: Sequence[TritonModel], *, overwrite: bool = False) -> list[Path]:
    """Write each model folder (config validated before anything is copied); returns the
    configs written. An existing model folder is replaced only with ``overwrite``."""
    texts = []
    for model in models:
        text = config_text(model)
        validate_config(text, folder=model.name, profiles=len(model.profiles))
        texts.append(text)
        folder = directory / model.name
        if folder.exists() and not overwrite:
            raise InvalidInputError(f"{folder}: already exists (use --overwrite to replace it)")
    written = []
    for model, text in zip(models, texts, strict=True):
        folder = directory / model.name
        staging = directory / f".{model.name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            (staging / VERSION).mkdir(parents=True)
            shutil.copyfile(model.artifact, staging / VERSION / PLATFORM_FILES[model.platform])
            if model.sidecar is not None:
                shutil.copyfile(model.sidecar, staging / SIDECAR_NAME)
            (staging / "config.pbtxt").write_text(text, encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise VdsrError(f"{folder}: cannot write ({error.strerror or error})") from error
        written.append(folder / "config.pbtxt")
    return written


def check_repository(directory: Path) -> list[str]:
    """Validate every ``*/config.pbtxt`` under ``directory`` (and that its model file is
    there); returns the model names. Raises :class:`TritonConfigError` on the first problem."""
    names = []
    for config_path in sorted(directory.glob("*/config.pbtxt")):
        folder = config_path.parent
        sidecar = folder / SIDECAR_NAME
        profiles = _sidecar_profiles(sidecar) if sidecar.exists() else 0
        config = validate_config(config_path.read_text(encoding="utf-8"), folder=folder.name, profiles=profiles)
        artifact = folder / VERSION / PLATFORM_FILES[config.platform]
        if not artifact.is_file():
            raise TritonConfigError(f"{folder.name}: {artifact} is missing")
        names.append(folder.name)
    return names


def _sidecar_profiles(sidecar: Path) -> int:
    """How many optimisation profiles the engine sidecar lists (read by the one sidecar reader)."""
    from vdsr_deploy.backends.tensorrt.sidecar import read_sidecar_json

    return len(read_sidecar_json(sidecar).get("profiles", []))


@dataclass(frozen=True)
class TritonExport:
    """What ``vdsr export --triton`` wrote, and why a model was left out."""

    configs: tuple[Path, ...]
    notes: tuple[str, ...]


def tensorrt_model(engine: Path, sidecar_file: Path) -> TritonModel:
    """The TensorRT model for a built engine, from its sidecar's optimisation profiles."""
    from vdsr_deploy.backends.tensorrt.sidecar import read_sidecar

    sidecar = read_sidecar(sidecar_file)
    profiles: tuple[ShapeProfile, ...] = sidecar.profiles
    batches = {p.max[0] for p in profiles}
    if len(batches) != 1:
        raise ConfigError(f"{engine}: profiles disagree on the largest batch ({sorted(batches)})")
    return TritonModel(
        TENSORRT_MODEL,
        "tensorrt_plan",
        engine,
        max_batch_size=batches.pop(),
        profiles=tuple(range(len(profiles))),
        sidecar=sidecar_file,
    )


def export_triton(
    directory: Path,
    *,
    weights: Path | None,
    tiling: TileConfig,
    batch: int,
    engines_dir: Path,
    engine: Path | None = None,
    tensorrt: str = "auto",
    overwrite: bool = False,
) -> TritonExport:
    """The repository for ``weights`` (default: the shipped ones): the FP32 ONNX (exported and
    verified into ``engines_dir`` when missing) with ``max_batch_size`` = ``batch``, and the
    FP16 TensorRT plan for ``tiling`` and ``batch``: ``engine`` when given (with its JSON
    sidecar), else found or built in ``engines_dir`` when ``tensorrt`` is ``auto`` and
    TensorRT and a GPU are usable (``yes``: required; ``no``: left out)."""
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    if tensorrt not in ("auto", "yes", "no"):
        raise ConfigError(f"tensorrt: expected auto, yes or no, got {tensorrt!r}")
    model, info = load_weights(weights)
    onnx_fp32 = ensure_onnx(model, info, "fp32", engines_dir)
    models = [TritonModel(ONNX_MODEL, "onnxruntime_onnx", onnx_fp32, max_batch_size=batch)]
    notes = []
    plan = engine if tensorrt != "no" else None
    if plan is None and tensorrt != "no":
        plan, reason = _engine_here(weights, tiling, batch, engines_dir, required=tensorrt == "yes")
        if plan is None:
            notes.append(f"{TENSORRT_MODEL} left out: {reason}")
    if plan is not None:
        from vdsr_deploy.backends.tensorrt.keys import sidecar_path

        models.append(tensorrt_model(plan, sidecar_path(plan)))
    configs = write_repository(directory, models, overwrite=overwrite)
    return TritonExport(tuple(configs), tuple(notes))


def _engine_here(
    weights: Path | None, tiling: TileConfig, batch: int, engines_dir: Path, *, required: bool
) -> tuple[Path | None, str]:
    """The FP16 engine for this GPU (found or built), or why there is none."""
    from vdsr_deploy.backends.registry import RunnerSpec, unavailable_reason
    from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
    from vdsr_deploy.runtime.artifacts import ensure_engine

    reason = unavailable_reason(RunnerSpec(backend="tensorrt", device="cuda"))
    if reason is not None and not required:
        return None, reason
    config = EngineBuildConfig.for_tiles(tiling, batch, precision="fp16")
    return ensure_engine(config, engines_dir, weights=weights).path, ""
