"""ONNX -> serialized TensorRT engine + JSON sidecar, and the engine cache.

One code path for TensorRT 10 and 11: the network is strongly typed (``STRONGLY_TYPED`` on
10.x; always, and the flag ignored or gone, on 11.x), so the engine's precision is the
ONNX's: an FP16 engine is built from the FP16 ONNX of :mod:`vdsr_deploy.export` (float32
I/O, FP16 convolutions, float32 residual Add). ``BuilderFlag.FP16`` is never used (11.x
removed it). After the build, the engine inspector's JSON is parsed and an fp16 build
with no FP16 layer fails loudly; an fp32 build switches TF32 off and must contain none.

Engines are not portable across GPU models or TensorRT versions. Each engine's file name
encodes every build parameter (ONNX hash, precision, profiles, contexts, workspace,
optimization level, GPU and compute capability, TensorRT version), and a JSON sidecar
next to it records all of that plus the hashes, build time and layer precisions. The
cache never loads a mismatching engine silently: :func:`find_engine` returns an exact
match or raises :class:`~vdsr_deploy.errors.EngineMismatchError` explaining why the
nearest engine does not fit; :func:`find_or_build_engine` rebuilds only when asked.

Everything that needs no GPU (names, keys, sidecars, matching, selection, profile
derivation, inspector-JSON parsing) is plain functions here that never import TensorRT;
:func:`build_engine` and :func:`find_or_build_engine` import it on call.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsr_deploy import __version__
from vdsr_deploy.errors import (
    BackendUnavailableError,
    BuildError,
    ConfigError,
    EngineMismatchError,
    InvalidInputError,
)
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME, Shape, ShapeProfile, profile_for_tiles
from vdsr_deploy.runners.cuda import DeviceInfo
from vdsr_deploy.tiling import TileConfig

if TYPE_CHECKING:
    import tensorrt as trt

    from vdsr_deploy.runners.tensorrt import TensorRTRunner

_LOG = logging.getLogger(__name__)

PRECISIONS = ("fp16", "fp32")
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
TIMING_CACHE_SUFFIX = ".timing-cache"
SIDECAR_SCHEMA = 1
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_OPTIMIZATION_LEVEL = 3
OPTIMIZATION_LEVELS = range(0, 6)
DEFAULT_CONTEXTS = 2
MAX_CONTEXTS = 8
MIN_WORKSPACE_BYTES = 1 << 20
WEIGHTS_METADATA_KEY = "vdsr.weights_sha256"
PRECISION_METADATA_KEY = "vdsr.precision"

INSTALL_HINT = (
    "pip install 'vdsr-deploy[tensorrt-cu13]' for a CUDA 13 driver, or "
    "'vdsr-deploy[tensorrt-cu12]' for a CUDA 12 driver"
)


# ----------------------------------------------------------------------------------------
# Is TensorRT here?


def _probe_tensorrt() -> tuple[str | None, str]:
    """``(version, status)``: version None when TensorRT cannot be used, status says why.

    ``import tensorrt`` succeeding is not enough: the tensorrt-stubs package installs a
    ``tensorrt/`` folder of ``.pyi`` files only, which imports as an empty namespace package.
    """
    try:
        module = importlib.import_module("tensorrt")
    except ImportError:
        return None, "not installed"
    except Exception as error:  # a broken install raises OSError/RuntimeError from its libs
        return None, f"installed but fails to load ({type(error).__name__}: {error})"
    version = getattr(module, "__version__", None)
    if not hasattr(module, "Builder") or not isinstance(version, str):
        return None, "only type stubs (tensorrt-stubs) are installed, not TensorRT itself"
    return version, version


def tensorrt_available() -> bool:
    """Whether the TensorRT runtime (not just its type stubs) can be imported."""
    return _probe_tensorrt()[0] is not None


def tensorrt_status() -> str:
    """The TensorRT version, or why it cannot be used (for ``vdsr info``)."""
    return _probe_tensorrt()[1]


def require_tensorrt() -> str:
    """The TensorRT version; BackendUnavailableError (one sentence, with the pip command)."""
    version, status = _probe_tensorrt()
    if version is None:
        raise BackendUnavailableError(f"TensorRT is not usable here ({status}): {INSTALL_HINT}")
    return version


# ----------------------------------------------------------------------------------------
# Build configuration


@dataclass(frozen=True)
class EngineBuildConfig:
    """How to build an engine.

    ``profile``: the input shape range; take it from :meth:`for_tiles` so the engine and the
    tiler agree (one source of truth: :func:`vdsr_deploy.io_names.profile_for_tiles`).
    ``contexts``: identical copies of the profile, one per execution context running
    concurrently (TensorRT lets a dynamic-shape profile serve one context at a time).
    ``precision``: fp16 (needs the FP16 ONNX) or fp32 (TF32 off, for parity baselines).
    ``workspace_bytes``: the builder's WORKSPACE memory-pool limit. ``optimization_level``:
    TensorRT's builder optimization level 0..5. ``timing_cache``: where the timing cache is
    loaded from and saved to (None: next to the engines, one per GPU and TensorRT version).
    """

    profile: ShapeProfile
    precision: str = "fp16"
    contexts: int = DEFAULT_CONTEXTS
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ShapeProfile):
            raise ConfigError(
                f"profile: expected a ShapeProfile, got {type(self.profile).__name__}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if not 1 <= self.contexts <= MAX_CONTEXTS:
            raise ConfigError(f"contexts: expected 1..{MAX_CONTEXTS}, got {self.contexts}")
        if self.workspace_bytes < MIN_WORKSPACE_BYTES:
            raise ConfigError(
                f"workspace_bytes: expected >= {MIN_WORKSPACE_BYTES} (1 MiB), got "
                f"{self.workspace_bytes}"
            )
        if self.optimization_level not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization_level: expected 0..5, got {self.optimization_level}")

    @classmethod
    def for_tiles(
        cls,
        tiling: TileConfig,
        batch: int,
        *,
        max_side: int | None = None,
        precision: str = "fp16",
        contexts: int = DEFAULT_CONTEXTS,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
        timing_cache: Path | None = None,
    ) -> EngineBuildConfig:
        """The config whose profile is exactly what the tiler feeds at ``batch``."""
        return cls(
            profile=profile_for_tiles(tiling, batch, max_side=max_side),
            precision=precision,
            contexts=contexts,
            workspace_bytes=workspace_bytes,
            optimization_level=optimization_level,
            timing_cache=timing_cache,
        )

    @property
    def profiles(self) -> tuple[ShapeProfile, ...]:
        """One optimization profile per execution context."""
        return (self.profile,) * self.contexts

    @property
    def tf32(self) -> bool:
        """TF32 stays at TensorRT's default (on) for fp16 and is switched off for fp32."""
        return self.precision != "fp32"


# ----------------------------------------------------------------------------------------
# Keys and names


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine must match to be loaded: the cache key."""

    onnx_sha256: str
    precision: str
    profiles: tuple[ShapeProfile, ...]
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    workspace_bytes: int
    optimization_level: int
    tf32: bool


def engine_key(
    onnx_sha256: str, config: EngineBuildConfig, gpu: DeviceInfo, tensorrt_version: str
) -> EngineKey:
    return EngineKey(
        onnx_sha256=onnx_sha256,
        precision=config.precision,
        profiles=config.profiles,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        workspace_bytes=config.workspace_bytes,
        optimization_level=config.optimization_level,
        tf32=config.tf32,
    )


def slug(text: str) -> str:
    """Lowercase, ``[a-z0-9.]`` runs joined by ``-``: safe in a file name on every OS."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def _dims(shape: Shape) -> str:
    return f"{shape[0]}x{shape[2]}x{shape[3]}"


def profile_token(profile: ShapeProfile) -> str:
    """``1x1x1-8x256x256-8x256x256``: min, opt, max as NxHxW (the channel is always 1)."""
    return "-".join(_dims(s) for s in (profile.min, profile.opt, profile.max))


def describe_profile(profile: ShapeProfile) -> str:
    return f"min {_dims(profile.min)}, opt {_dims(profile.opt)}, max {_dims(profile.max)} (NxHxW)"


def describe_profiles(profiles: Sequence[ShapeProfile]) -> str:
    if profiles and all(p == profiles[0] for p in profiles):
        return f"{len(profiles)} x [{describe_profile(profiles[0])}]"
    return "; ".join(f"[{describe_profile(p)}]" for p in profiles)


def engine_file_name(key: EngineKey) -> str:
    """A file name that encodes every build parameter, e.g.
    ``vdsr-0123456789ab_fp16_1x1x1-8x256x256-8x256x256_x2_ws1024M_o3_nvidia-h100-sm90_trt10.13.0.35.engine``."""
    if key.profiles and all(p == key.profiles[0] for p in key.profiles):
        profiles = f"{profile_token(key.profiles[0])}_x{len(key.profiles)}"
    else:
        profiles = "+".join(profile_token(p) for p in key.profiles)
    precision = key.precision if key.tf32 else f"{key.precision}-notf32"
    workspace = (
        f"{key.workspace_bytes >> 20}M"
        if key.workspace_bytes % (1 << 20) == 0
        else f"{key.workspace_bytes}B"
    )
    major, minor = key.compute_capability
    return (
        f"vdsr-{key.onnx_sha256[:12]}_{precision}_{profiles}_ws{workspace}_o{key.optimization_level}"
        f"_{slug(key.gpu_name)}-sm{major}{minor}_trt{slug(key.tensorrt_version)}{ENGINE_SUFFIX}"
    )


def sidecar_path(engine_path: Path) -> Path:
    """The JSON sidecar next to an engine: same name, ``.json``."""
    return Path(engine_path).with_suffix(SIDECAR_SUFFIX)


def timing_cache_path(engines_dir: Path, gpu: DeviceInfo, tensorrt_version: str) -> Path:
    """The default timing cache: next to the engines, one per GPU and TensorRT version."""
    major, minor = gpu.compute_capability
    return Path(engines_dir) / (
        f"timing_{slug(gpu.name)}-sm{major}{minor}_trt{slug(tensorrt_version)}{TIMING_CACHE_SUFFIX}"
    )


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError as error:
        raise InvalidInputError(f"{path}: file not found") from error
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# Sidecar


@dataclass(frozen=True)
class EngineSidecar:
    """What the JSON next to an engine records (see :meth:`to_dict` for the layout)."""

    engine_file: str
    engine_sha256: str
    engine_bytes: int
    onnx_file: str
    onnx_sha256: str
    weights_sha256: str | None
    precision: str
    profiles: tuple[ShapeProfile, ...]
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    workspace_bytes: int
    optimization_level: int
    tf32: bool
    build_seconds: float
    layers: int
    fp16_layers: int
    vdsr_deploy_version: str = __version__
    created: str = ""
    timing_cache: str | None = None
    schema: int = SIDECAR_SCHEMA

    @property
    def key(self) -> EngineKey:
        return EngineKey(
            onnx_sha256=self.onnx_sha256,
            precision=self.precision,
            profiles=self.profiles,
            tensorrt_version=self.tensorrt_version,
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            workspace_bytes=self.workspace_bytes,
            optimization_level=self.optimization_level,
            tf32=self.tf32,
        )

    @property
    def profile(self) -> ShapeProfile:
        """The (first) optimization profile: what every execution context accepts."""
        return self.profiles[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "engine": {
                "file": self.engine_file,
                "sha256": self.engine_sha256,
                "bytes": self.engine_bytes,
            },
            "onnx": {
                "file": self.onnx_file,
                "sha256": self.onnx_sha256,
                "weights_sha256": self.weights_sha256,
            },
            "precision": self.precision,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "profiles": [p.to_dict() for p in self.profiles],
            "tensorrt_version": self.tensorrt_version,
            "gpu": {"name": self.gpu_name, "compute_capability": list(self.compute_capability)},
            "build_options": {
                "workspace_bytes": self.workspace_bytes,
                "optimization_level": self.optimization_level,
                "tf32": self.tf32,
                "strongly_typed": True,
                "timing_cache": self.timing_cache,
            },
            "build_seconds": self.build_seconds,
            "layers": {"total": self.layers, "fp16": self.fp16_layers},
            "vdsr_deploy_version": self.vdsr_deploy_version,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSidecar:
        """Parse :meth:`to_dict`'s layout; ValueError/KeyError/TypeError on anything else."""
        if data.get("schema") != SIDECAR_SCHEMA:
            raise ValueError(f"expected schema {SIDECAR_SCHEMA}, got {data.get('schema')!r}")
        engine, onnx, gpu = data["engine"], data["onnx"], data["gpu"]
        options, layers = data["build_options"], data["layers"]
        capability = gpu["compute_capability"]
        profiles = tuple(ShapeProfile.from_dict(p) for p in data["profiles"])
        if not profiles:
            raise ValueError("no optimization profile")
        weights = onnx.get("weights_sha256")
        timing = options.get("timing_cache")
        return cls(
            engine_file=str(engine["file"]),
            engine_sha256=str(engine["sha256"]),
            engine_bytes=int(engine["bytes"]),
            onnx_file=str(onnx["file"]),
            onnx_sha256=str(onnx["sha256"]),
            weights_sha256=None if weights is None else str(weights),
            precision=str(data["precision"]),
            profiles=profiles,
            tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(gpu["name"]),
            compute_capability=(int(capability[0]), int(capability[1])),
            workspace_bytes=int(options["workspace_bytes"]),
            optimization_level=int(options["optimization_level"]),
            tf32=bool(options["tf32"]),
            build_seconds=float(data["build_seconds"]),
            layers=int(layers["total"]),
            fp16_layers=int(layers["fp16"]),
            vdsr_deploy_version=str(data.get("vdsr_deploy_version", "")),
            created=str(data.get("created", "")),
            timing_cache=None if timing is None else str(timing),
        )


def read_sidecar(path: Path) -> EngineSidecar:
    """The sidecar at ``path``; EngineMismatchError when missing or unreadable (an engine
    without a trustworthy sidecar is never loaded)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise EngineMismatchError(
            f"{path}: the engine's JSON sidecar is missing, so its GPU, TensorRT version and "
            "profile "
            "are unknown; rebuild the engine (vdsr build)"
        ) from error
    except (OSError, ValueError) as error:
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar ({error}); rebuild the engine"
        ) from error
    if not isinstance(data, Mapping):
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar (not a JSON object); rebuild the engine"
        )
    try:
        return EngineSidecar.from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar ({type(error).__name__}: {error}); rebuild the "
            "engine"
        ) from error


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def write_sidecar(path: Path, sidecar: EngineSidecar) -> None:
    _atomic_write(Path(path), (json.dumps(sidecar.to_dict(), indent=2) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------------------------
# Matching and selection


def _gpu_text(name: str, capability: tuple[int, int]) -> str:
    return f"{name} (compute {capability[0]}.{capability[1]})"


def environment_reasons(
    found: EngineSidecar | EngineKey, gpu: DeviceInfo, tensorrt_version: str
) -> list[str]:
    """Why an engine cannot run here at all: another GPU or another TensorRT version."""
    reasons = []
    if (found.gpu_name, found.compute_capability) != (gpu.name, gpu.compute_capability):
        reasons.append(
            f"built for GPU {_gpu_text(found.gpu_name, found.compute_capability)} but this GPU is "
            f"{_gpu_text(gpu.name, gpu.compute_capability)}"
        )
    if found.tensorrt_version != tensorrt_version:
        reasons.append(
            f"built with TensorRT {found.tensorrt_version} but this is TensorRT {tensorrt_version}"
        )
    return reasons


def mismatch_reasons(found: EngineKey, wanted: EngineKey) -> list[str]:
    """Every way ``found`` differs from ``wanted``, most fundamental first ([] = match)."""
    gpu = DeviceInfo(index=-1, name=wanted.gpu_name, compute_capability=wanted.compute_capability)
    reasons = environment_reasons(found, gpu, wanted.tensorrt_version)
    if found.onnx_sha256 != wanted.onnx_sha256:
        reasons.append(
            f"built from another ONNX (sha256 {found.onnx_sha256[:12]}, this one is "
            f"{wanted.onnx_sha256[:12]})"
        )
    if found.precision != wanted.precision:
        reasons.append(f"built in {found.precision}, {wanted.precision} was asked for")
    if found.profiles != wanted.profiles:
        reasons.append(
            f"built for profiles {describe_profiles(found.profiles)}, "
            f"{describe_profiles(wanted.profiles)} was asked for"
        )
    if found.workspace_bytes != wanted.workspace_bytes:
        reasons.append(
            f"built with workspace {found.workspace_bytes} bytes, {wanted.workspace_bytes} was "
            "asked for"
        )
    if found.optimization_level != wanted.optimization_level:
        reasons.append(
            f"built at optimization level {found.optimization_level}, {wanted.optimization_level} "
            "was asked for"
        )
    if found.tf32 != wanted.tf32:
        reasons.append(
            f"built with TF32 {'on' if found.tf32 else 'off'}, {'on' if wanted.tf32 else 'off'} "
            "was asked for"
        )
    return reasons


@dataclass(frozen=True)
class EngineCandidate:
    """A cached engine: its path, its sidecar, and whether the engine file is there."""

    engine: Path
    sidecar: EngineSidecar
    engine_exists: bool = True


@dataclass(frozen=True)
class EngineSelection:
    """The outcome of :func:`select_engine`: an exact match, or the nearest related engine
    (same ONNX or same weights) and why it does not fit, or nothing related at all."""

    match: Path | None
    nearest: Path | None = None
    reasons: tuple[str, ...] = ()

    def explain(self, engines_dir: Path) -> str:
        if self.nearest is None:
            return f"{engines_dir}: no engine for this ONNX"
        return (
            f"{engines_dir}: no cached engine fits this ONNX, profile and machine; the nearest, "
            f"{self.nearest.name}, was {'; '.join(self.reasons)}; rebuild it (vdsr build)"
        )


def select_engine(
    candidates: Sequence[EngineCandidate], wanted: EngineKey, *, weights_sha256: str | None = None
) -> EngineSelection:
    """Pick the engine to load for ``wanted``: only an exact match; otherwise report the
    related candidate with the fewest differences."""
    related: list[tuple[int, str, EngineCandidate, list[str]]] = []
    for candidate in candidates:
        reasons = mismatch_reasons(candidate.sidecar.key, wanted)
        if not candidate.engine_exists:
            reasons.append("its engine file is missing")
        if not reasons:
            return EngineSelection(match=candidate.engine)
        same_model = candidate.sidecar.onnx_sha256 == wanted.onnx_sha256 or (
            weights_sha256 is not None and candidate.sidecar.weights_sha256 == weights_sha256
        )
        if same_model:
            related.append((len(reasons), candidate.engine.name, candidate, reasons))
    if not related:
        return EngineSelection(match=None)
    _, _, nearest, reasons = min(related, key=lambda item: (item[0], item[1]))
    return EngineSelection(match=None, nearest=nearest.engine, reasons=tuple(reasons))


def scan_engines(engines_dir: Path) -> list[EngineCandidate]:
    """Every engine sidecar in ``engines_dir`` (other JSON files and unreadable sidecars
    are skipped: they cannot match anything)."""
    directory = Path(engines_dir)
    if not directory.is_dir():
        return []
    candidates = []
    for path in sorted(directory.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            sidecar = read_sidecar(path)
        except EngineMismatchError as error:
            _LOG.debug("skipping %s: %s", path, error)
            continue
        engine = path.with_name(sidecar.engine_file)
        candidates.append(
            EngineCandidate(engine=engine, sidecar=sidecar, engine_exists=engine.is_file())
        )
    return candidates


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """The ``vdsr.*`` metadata of an exported ONNX (BuildError when unreadable)."""
    from vdsr_deploy.export import read_metadata

    return read_metadata(Path(onnx_path))


def check_onnx_precision(metadata: Mapping[str, str], precision: str, onnx_path: Path) -> None:
    """A strongly typed network keeps the ONNX's types: refuse an fp16 build from the FP32
    ONNX (and the reverse) before spending minutes in the builder."""
    declared = metadata.get(PRECISION_METADATA_KEY)
    if declared is not None and declared != precision:
        raise ConfigError(
            f"{onnx_path} is the {declared} ONNX, but a {precision} engine was asked for: a "
            "strongly typed "
            f"TensorRT network keeps the ONNX's types, so build it from the {precision} ONNX "
            f"(vdsr export --precision {precision})"
        )


def _wanted(
    onnx_path: Path, config: EngineBuildConfig, gpu: DeviceInfo, tensorrt_version: str
) -> tuple[EngineKey, dict[str, str]]:
    onnx_sha = file_sha256(onnx_path)
    metadata = onnx_metadata(onnx_path)
    return engine_key(onnx_sha, config, gpu, tensorrt_version), metadata


def find_engine(
    engines_dir: Path,
    onnx_path: Path,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
) -> Path | None:
    """The cached engine for exactly this ONNX, config, GPU and TensorRT version; None when
    no engine of this model is cached; EngineMismatchError explaining the nearest one when
    engines of this model exist but none fits (never a silent load or rebuild)."""
    wanted, metadata = _wanted(onnx_path, config, gpu, tensorrt_version)
    selection = select_engine(
        scan_engines(engines_dir), wanted, weights_sha256=metadata.get(WEIGHTS_METADATA_KEY)
    )
    if selection.match is not None:
        return selection.match
    if selection.nearest is not None:
        raise EngineMismatchError(selection.explain(Path(engines_dir)))
    return None


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


# ----------------------------------------------------------------------------------------
# TensorRT logging


class TensorRTLog:
    """Where TensorRT's messages go: errors are kept (for our exceptions' messages), the
    rest go to :mod:`logging` (``vdsr_deploy.engine``). Verbose messages are dropped early:
    a build emits tens of thousands."""

    SEVERITY_ERROR = 1
    SEVERITY_WARNING = 2
    SEVERITY_INFO = 3

    def __init__(self) -> None:
        self.errors: list[str] = []

    def record(self, severity: int, message: str) -> None:
        if severity <= self.SEVERITY_ERROR:
            self.errors.append(message)
            _LOG.error("TensorRT: %s", message)
        elif severity == self.SEVERITY_WARNING:
            _LOG.warning("TensorRT: %s", message)
        elif severity == self.SEVERITY_INFO:
            _LOG.info("TensorRT: %s", message)

    def summary(self, limit: int = 5) -> str:
        """The last ``limit`` error messages, or a note that there were none."""
        if not self.errors:
            return "TensorRT logged no error message"
        return " | ".join(self.errors[-limit:])

    @contextmanager
    def capturing(self) -> Iterator[TensorRTLog]:
        """Collect only this block's errors."""
        self.errors = []
        yield self


_SHARED_LOGGER: dict[str, Any] = {}


def shared_tensorrt_logger() -> tuple[TensorRTLog, trt.ILogger]:
    """The process-wide TensorRT logger (TensorRT keeps the first logger a builder or
    runtime was given, so every Builder and Runtime here gets the same one)."""
    if "logger" not in _SHARED_LOGGER:
        import tensorrt as trt

        sink = TensorRTLog()

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                level = int(severity)
                if level <= TensorRTLog.SEVERITY_INFO:
                    sink.record(level, msg)

        _SHARED_LOGGER["sink"] = sink
        _SHARED_LOGGER["logger"] = _Logger()
    sink_value: TensorRTLog = _SHARED_LOGGER["sink"]
    logger_value: trt.ILogger = _SHARED_LOGGER["logger"]
    return sink_value, logger_value


# ----------------------------------------------------------------------------------------
# Build


@dataclass(frozen=True)
class EngineRecord:
    """An engine ready to load: where, its sidecar, whether it was built just now, and
    (after a rebuild) why the cached one did not fit."""

    path: Path
    sidecar: EngineSidecar
    built: bool
    replaced: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": str(self.path),
            "sidecar": str(sidecar_path(self.path)),
            "built": self.built,
            "replaced_because": list(self.replaced),
            "precision": self.sidecar.precision,
            "profiles": describe_profiles(self.sidecar.profiles),
            "gpu": _gpu_text(self.sidecar.gpu_name, self.sidecar.compute_capability),
            "tensorrt": self.sidecar.tensorrt_version,
            "build_seconds": self.sidecar.build_seconds,
            "layers": self.sidecar.layers,
            "fp16_layers": self.sidecar.fp16_layers,
        }


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


def parse_failure_message(onnx_path: Path, errors: Sequence[str]) -> str:
    if not errors:
        return f"TensorRT's ONNX parser rejected {onnx_path} without an error message"
    listed = "; ".join(f"({index + 1}) {error.strip()}" for index, error in enumerate(errors))
    return f"TensorRT's ONNX parser rejected {onnx_path} with {len(errors)} error(s): {listed}"


def build_engine(
    onnx_path: Path, config: EngineBuildConfig, engines_dir: Path, *, device: int = 0
) -> EngineRecord:
    """Build the engine for ``onnx_path`` and ``config`` on ``device`` into ``engines_dir``
    (engine + sidecar, written atomically), whatever the cache holds."""
    tensorrt_version = require_tensorrt()
    from vdsr_deploy.runners import cuda

    gpu = cuda.require_device(device)
    return _build(Path(onnx_path), config, Path(engines_dir), gpu, tensorrt_version)


def find_or_build_engine(
    onnx_path: Path,
    config: EngineBuildConfig,
    engines_dir: Path,
    *,
    device: int = 0,
    rebuild: bool = False,
    rebuild_on_mismatch: bool = False,
) -> EngineRecord:
    """The cached engine that matches exactly, else a new build. A cached engine of this
    model that does not fit (other GPU, TensorRT, ONNX, profile or options) raises
    EngineMismatchError with the reason unless ``rebuild_on_mismatch``; ``rebuild`` builds
    even when an exact match exists."""
    tensorrt_version = require_tensorrt()
    from vdsr_deploy.runners import cuda

    gpu = cuda.require_device(device)
    onnx_path, engines_dir = Path(onnx_path), Path(engines_dir)
    wanted, metadata = _wanted(onnx_path, config, gpu, tensorrt_version)
    selection = select_engine(
        scan_engines(engines_dir), wanted, weights_sha256=metadata.get(WEIGHTS_METADATA_KEY)
    )
    if selection.match is not None and not rebuild:
        return EngineRecord(
            path=selection.match, sidecar=read_sidecar(sidecar_path(selection.match)), built=False
        )
    if selection.nearest is not None and not (rebuild or rebuild_on_mismatch):
        raise EngineMismatchError(selection.explain(engines_dir))
    record = _build(onnx_path, config, engines_dir, gpu, tensorrt_version)
    return replace(record, replaced=selection.reasons)


def ensure_engine(
    config: EngineBuildConfig,
    engines_dir: Path,
    *,
    onnx_path: Path | None = None,
    weights: Path | None = None,
    device: int = 0,
    rebuild: bool = False,
    rebuild_on_mismatch: bool = True,
) -> EngineRecord:
    """What ``vdsr build`` does: the engine for ``onnx_path``, or for the ONNX of
    ``weights`` (default: the shipped weights) in the config's precision, exported and
    verified into ``engines_dir`` when missing. A cached engine that does not fit is
    rebuilt (an explicit build), and :attr:`EngineRecord.replaced` says why."""
    require_tensorrt()  # fail before exporting anything
    if onnx_path is None:
        from vdsr_deploy.export import ensure_onnx
        from vdsr_deploy.weights import load_weights

        model, info = load_weights(weights)
        onnx_path = ensure_onnx(model, info, config.precision, Path(engines_dir))
    return find_or_build_engine(
        onnx_path,
        config,
        engines_dir,
        device=device,
        rebuild=rebuild,
        rebuild_on_mismatch=rebuild_on_mismatch,
    )


def _build(
    onnx_path: Path,
    config: EngineBuildConfig,
    engines_dir: Path,
    gpu: DeviceInfo,
    tensorrt_version: str,
) -> EngineRecord:
    if not onnx_path.is_file():
        raise InvalidInputError(f"{onnx_path}: ONNX file not found")
    wanted, metadata = _wanted(onnx_path, config, gpu, tensorrt_version)
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
    _atomic_write(engine_path, blob)
    sidecar = EngineSidecar(
        engine_file=engine_path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        engine_bytes=len(blob),
        onnx_file=onnx_path.name,
        onnx_sha256=wanted.onnx_sha256,
        weights_sha256=metadata.get(WEIGHTS_METADATA_KEY),
        precision=config.precision,
        profiles=config.profiles,
        tensorrt_version=tensorrt_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        workspace_bytes=config.workspace_bytes,
        optimization_level=config.optimization_level,
        tf32=config.tf32,
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
        _atomic_write(cache_path, bytes(memoryview(cache.serialize())))
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


# ----------------------------------------------------------------------------------------
# Runner factory (build step apart from running)


def check_profile_covers(
    engine_profile: ShapeProfile, wanted: ShapeProfile, engine_name: str
) -> None:
    """The engine must accept every tile the tiler will feed (batches are split, so only
    height and width matter)."""
    if engine_profile.max[2] < wanted.max[2] or engine_profile.max[3] < wanted.max[3]:
        raise ConfigError(
            f"engine {engine_name} takes inputs up to "
            f"{engine_profile.max[2]}x{engine_profile.max[3]} pixels, "
            f"but this tiling feeds {wanted.max[2]}x{wanted.max[3]}: build an engine for this tile "
            "size"
        )
    if engine_profile.min[2] > wanted.min[2] or engine_profile.min[3] > wanted.min[3]:
        raise ConfigError(
            f"engine {engine_name} needs inputs of at least "
            f"{engine_profile.min[2]}x{engine_profile.min[3]} "
            f"pixels, but this tiling can feed {wanted.min[2]}x{wanted.min[3]}"
        )


def create_tensorrt_runner(
    *,
    onnx_path: Path | None,
    engines_dir: Path,
    tiling: TileConfig,
    batch: int,
    engine_path: Path | None = None,
    precision: str = "fp16",
    device: int = 0,
    contexts: int = DEFAULT_CONTEXTS,
    cuda_graphs: bool = True,
    max_side: int | None = None,
    rebuild_on_mismatch: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
) -> TensorRTRunner:
    """An inactive :class:`~vdsr_deploy.runners.tensorrt.TensorRTRunner` for this tiling.

    With ``engine_path`` that engine is used (its sidecar is checked on activation);
    otherwise the engine for ``onnx_path`` is found in ``engines_dir`` or built there
    (:func:`find_or_build_engine`) before the runner exists. ``max_side`` bounds the image
    side when ``tiling.tile`` is 0 (whole images)."""
    from vdsr_deploy.runners.tensorrt import TensorRTRunner

    wanted = (
        profile_for_tiles(tiling, batch, max_side=max_side) if (tiling.tile or max_side) else None
    )
    if engine_path is None:
        if onnx_path is None:
            raise ConfigError(
                "a TensorRT runner needs an ONNX file to build from or a built engine"
            )
        if wanted is None:
            wanted = profile_for_tiles(
                tiling, batch, max_side=max_side
            )  # raises: tile 0 needs max_side
        config = EngineBuildConfig(
            profile=wanted,
            precision=precision,
            contexts=contexts,
            workspace_bytes=workspace_bytes,
            optimization_level=optimization_level,
        )
        record = find_or_build_engine(
            onnx_path, config, engines_dir, device=device, rebuild_on_mismatch=rebuild_on_mismatch
        )
        engine_path = record.path
    runner = TensorRTRunner(engine_path, device=device, cuda_graphs=cuda_graphs)
    if wanted is not None:
        check_profile_covers(runner.engine_profile, wanted, Path(engine_path).name)
    return runner
