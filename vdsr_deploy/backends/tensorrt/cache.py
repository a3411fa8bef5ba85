"""The TensorRT engine cache: build configuration, cache keys, engine names, JSON
sidecars, and choosing which cached engine to load (decisions returned with reasons).

Engines are not portable across GPU models or TensorRT versions. Each engine's file name
encodes every build parameter (ONNX hash, precision, profiles, contexts, workspace,
optimization level, GPU and compute capability, TensorRT version), and a JSON sidecar
next to it records all of that plus the hashes, build time and layer precisions. The
cache never loads a mismatching engine silently: :func:`find_engine` returns an exact
match or raises :class:`~vdsr_deploy.errors.EngineMismatchError` explaining why the
nearest engine does not fit.

Nothing here needs TensorRT or a GPU (plain functions over files and dataclasses).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy import __version__
from vdsr_deploy.artifacts import MetadataKey
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.errors import ConfigError, EngineMismatchError
from vdsr_deploy.fileops import atomic_write_bytes, file_sha256
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME, Shape, ShapeProfile, profile_for_tiles
from vdsr_deploy.precision import BACKEND_PRECISIONS
from vdsr_deploy.tiling import TileConfig

_LOG = logging.getLogger(__name__)

PRECISIONS = BACKEND_PRECISIONS["tensorrt"]
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
TIMING_CACHE_SUFFIX = ".timing-cache"
SIDECAR_SCHEMA = 2
# Bump when builder.py changes how an engine is made from the same ONNX and config (flags,
# profile layout, ...): engines of an older recipe are then rebuilt, never loaded.
BUILD_RECIPE = 1
# --tile 0 (whole images) with TensorRT: the profile's largest side when none is given.
DEFAULT_WHOLE_IMAGE_MAX_SIDE = 4096
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_OPTIMIZATION_LEVEL = 3
OPTIMIZATION_LEVELS = range(0, 6)
DEFAULT_CONTEXTS = 2
MAX_CONTEXTS = 8
MIN_WORKSPACE_BYTES = 1 << 20
WEIGHTS_METADATA_KEY = MetadataKey.WEIGHTS_SHA256
PRECISION_METADATA_KEY = MetadataKey.PRECISION

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
    multiprocessors: int = 0
    cuda_major: int = 0
    package_version: str = __version__
    build_recipe: int = BUILD_RECIPE


def engine_key(
    onnx_sha256: str,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int = 0,
) -> EngineKey:
    """The key of an engine built now, by this package, from ``onnx_sha256`` and ``config``
    on ``gpu`` (its SM count tells MIG slices apart) with this TensorRT and CUDA major."""
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
        multiprocessors=gpu.multiprocessors,
        cuda_major=cuda_major,
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
    ``vdsr-0123456789ab_fp16_1x1x1-8x256x256-8x256x256_x2_ws1024M_o3_nvidia-h100-sm90x132_cu12_trt10.13.0.35_v0.1.0r1.engine``
    (``x132``: the GPU's SM count, which tells MIG slices apart; ``cu12``: CUDA major;
    ``v0.1.0r1``: package version and build recipe)."""
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
        f"_{slug(key.gpu_name)}-sm{major}{minor}x{key.multiprocessors}_cu{key.cuda_major}"
        f"_trt{slug(key.tensorrt_version)}_v{slug(key.package_version)}r{key.build_recipe}"
        f"{ENGINE_SUFFIX}"
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
    multiprocessors: int = 0
    cuda_major: int = 0
    build_recipe: int = BUILD_RECIPE
    schema: int = SIDECAR_SCHEMA

    @classmethod
    def from_key(
        cls,
        key: EngineKey,
        *,
        engine_file: str,
        engine_sha256: str,
        engine_bytes: int,
        onnx_file: str,
        weights_sha256: str | None,
        build_seconds: float,
        layers: int,
        fp16_layers: int,
        created: str = "",
        timing_cache: str | None = None,
    ) -> EngineSidecar:
        """The sidecar of an engine built for ``key``, with the facts of its build."""
        return cls(
            engine_file=engine_file,
            engine_sha256=engine_sha256,
            engine_bytes=engine_bytes,
            onnx_file=onnx_file,
            onnx_sha256=key.onnx_sha256,
            weights_sha256=weights_sha256,
            precision=key.precision,
            profiles=key.profiles,
            tensorrt_version=key.tensorrt_version,
            gpu_name=key.gpu_name,
            compute_capability=key.compute_capability,
            workspace_bytes=key.workspace_bytes,
            optimization_level=key.optimization_level,
            tf32=key.tf32,
            build_seconds=build_seconds,
            layers=layers,
            fp16_layers=fp16_layers,
            vdsr_deploy_version=key.package_version,
            created=created,
            timing_cache=timing_cache,
            multiprocessors=key.multiprocessors,
            cuda_major=key.cuda_major,
            build_recipe=key.build_recipe,
        )

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
            multiprocessors=self.multiprocessors,
            cuda_major=self.cuda_major,
            package_version=self.vdsr_deploy_version,
            build_recipe=self.build_recipe,
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
            "gpu": {
                "name": self.gpu_name,
                "compute_capability": list(self.compute_capability),
                "multiprocessors": self.multiprocessors,
            },
            "cuda_major": self.cuda_major,
            "build_options": {
                "workspace_bytes": self.workspace_bytes,
                "optimization_level": self.optimization_level,
                "tf32": self.tf32,
                "strongly_typed": True,
                "timing_cache": self.timing_cache,
                "recipe": self.build_recipe,
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
            raise ValueError(
                f"expected schema {SIDECAR_SCHEMA}, got {data.get('schema')!r} (written by another "
                "version of vdsr-deploy)"
            )
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
            multiprocessors=int(gpu["multiprocessors"]),
            cuda_major=int(data["cuda_major"]),
            build_recipe=int(options["recipe"]),
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


def write_sidecar(path: Path, sidecar: EngineSidecar) -> None:
    atomic_write_bytes(Path(path), (json.dumps(sidecar.to_dict(), indent=2) + "\n").encode("utf-8"))


# ----------------------------------------------------------------------------------------
# Matching and selection


def _gpu_text(name: str, capability: tuple[int, int]) -> str:
    return f"{name} (compute {capability[0]}.{capability[1]})"


def environment_reasons(
    found: EngineSidecar | EngineKey,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int | None = None,
) -> list[str]:
    """Why an engine cannot run here at all: another GPU (model, or SM count: another MIG
    slice), another TensorRT version, or another CUDA major version (when known)."""
    reasons = []
    if (found.gpu_name, found.compute_capability) != (gpu.name, gpu.compute_capability):
        reasons.append(
            f"built for GPU {_gpu_text(found.gpu_name, found.compute_capability)} but this GPU is "
            f"{_gpu_text(gpu.name, gpu.compute_capability)}"
        )
    elif found.multiprocessors != gpu.multiprocessors:
        reasons.append(
            f"built for a GPU with {found.multiprocessors} SMs but this one has "
            f"{gpu.multiprocessors} (another MIG slice or GPU variant)"
        )
    if found.tensorrt_version != tensorrt_version:
        reasons.append(
            f"built with TensorRT {found.tensorrt_version} but this is TensorRT {tensorrt_version}"
        )
    if cuda_major is not None and found.cuda_major != cuda_major:
        reasons.append(f"built for CUDA {found.cuda_major} but this is CUDA {cuda_major}")
    return reasons


def mismatch_reasons(found: EngineKey, wanted: EngineKey) -> list[str]:
    """Every way ``found`` differs from ``wanted``, most fundamental first ([] = match)."""
    gpu = DeviceInfo(
        index=-1,
        name=wanted.gpu_name,
        compute_capability=wanted.compute_capability,
        multiprocessors=wanted.multiprocessors,
    )
    reasons = environment_reasons(
        found, gpu, wanted.tensorrt_version, cuda_major=wanted.cuda_major
    )
    if (found.package_version, found.build_recipe) != (
        wanted.package_version,
        wanted.build_recipe,
    ):
        reasons.append(
            f"built by vdsr-deploy {found.package_version} (build recipe {found.build_recipe}), "
            f"this is {wanted.package_version} (recipe {wanted.build_recipe})"
        )
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

    @property
    def action(self) -> str:
        """``use`` the exact match, or ``build`` a new engine (others stay cached)."""
        return "use" if self.match is not None else "build"

    def build_reasons(self, engines_dir: Path) -> tuple[str, ...]:
        """Why a new engine is built (empty when an exact match is used)."""
        if self.match is not None:
            return ()
        if self.nearest is None:
            return (f"no engine for this ONNX in {engines_dir}",)
        return tuple(f"the nearest cached engine, {self.nearest.name}, was {r}" for r in self.reasons)

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
    from vdsr_deploy.artifacts import read_metadata

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


def wanted_key(
    onnx_path: Path,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int = 0,
) -> tuple[EngineKey, dict[str, str]]:
    """The key an engine for ``onnx_path`` and ``config`` built here would have, and the
    ONNX's ``vdsr.*`` metadata."""
    onnx_sha = file_sha256(onnx_path)
    metadata = onnx_metadata(onnx_path)
    return engine_key(onnx_sha, config, gpu, tensorrt_version, cuda_major=cuda_major), metadata


def find_engine(
    engines_dir: Path,
    onnx_path: Path,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int = 0,
) -> Path | None:
    """The cached engine for exactly this ONNX, config, GPU, TensorRT and CUDA version;
    None when no engine of this model is cached; EngineMismatchError explaining the
    nearest one when engines of this model exist but none fits (a strict lookup: the
    runtime path, :func:`~vdsr_deploy.backends.tensorrt.builder.find_or_build_engine`,
    builds instead)."""
    wanted, metadata = wanted_key(onnx_path, config, gpu, tensorrt_version, cuda_major=cuda_major)
    selection = select_engine(
        scan_engines(engines_dir), wanted, weights_sha256=metadata.get(WEIGHTS_METADATA_KEY)
    )
    if selection.match is not None:
        return selection.match
    if selection.nearest is not None:
        raise EngineMismatchError(selection.explain(Path(engines_dir)))
    return None



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


def profile_cover_reasons(engine_profile: ShapeProfile, wanted: ShapeProfile) -> list[str]:
    """Why an engine with ``engine_profile`` cannot take every tile the tiler will feed
    ([] = it can). Batches are split (and padded), so only height and width matter."""
    reasons = []
    if engine_profile.max[2] < wanted.max[2] or engine_profile.max[3] < wanted.max[3]:
        reasons.append(
            f"it takes inputs up to {engine_profile.max[2]}x{engine_profile.max[3]} pixels, "
            f"but this tiling feeds {wanted.max[2]}x{wanted.max[3]}"
        )
    if engine_profile.min[2] > wanted.min[2] or engine_profile.min[3] > wanted.min[3]:
        reasons.append(
            f"it needs inputs of at least {engine_profile.min[2]}x{engine_profile.min[3]} "
            f"pixels, but this tiling can feed {wanted.min[2]}x{wanted.min[3]}"
        )
    return reasons


def check_profile_covers(
    engine_profile: ShapeProfile, wanted: ShapeProfile, engine_name: str
) -> None:
    """ConfigError (with every reason) unless the engine takes every tile the tiler feeds."""
    reasons = profile_cover_reasons(engine_profile, wanted)
    if reasons:
        raise ConfigError(
            f"engine {engine_name}: {'; '.join(reasons)}: build an engine for this tile size"
        )


def explicit_engine_reasons(
    sidecar: EngineSidecar,
    *,
    precision: str,
    profile: ShapeProfile | None,
    weights_sha256: str | None = None,
) -> list[str]:
    """Why an engine the user named (``--engine``) cannot serve this run ([] = it can):
    another precision, a profile that does not cover the tiles, other weights (checked
    only when ``weights_sha256`` is given). Its GPU/TensorRT/CUDA are checked when the
    runner is activated (:func:`environment_reasons`)."""
    reasons = []
    if sidecar.precision != precision:
        reasons.append(
            f"it was built in {sidecar.precision} but {precision} was asked for (pass "
            f"--precision {sidecar.precision} to use it)"
        )
    if profile is not None:
        reasons += profile_cover_reasons(sidecar.profile, profile)
    if (
        weights_sha256 is not None
        and sidecar.weights_sha256 is not None
        and sidecar.weights_sha256 != weights_sha256
    ):
        reasons.append(
            f"it was built from other weights (sha256 {sidecar.weights_sha256[:12]}, these are "
            f"{weights_sha256[:12]})"
        )
    return reasons
