"""The engine cache's keys and names: :class:`EngineKey` (everything an engine must match
to be loaded), the file names that encode every build parameter, the sidecar and timing
cache paths, and the profile and GPU texts that the reasons and reports use.

Engines are not portable across GPU models or TensorRT versions, so the key holds the GPU
(name, compute capability, SM count), TensorRT and CUDA versions next to the ONNX hash and
the build options. Nothing here needs TensorRT or a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy import __version__
from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.io_names import Shape, ShapeProfile

ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
TIMING_CACHE_SUFFIX = ".timing-cache"
LOCK_SUFFIX = ".lock"
# Bump when builder.py changes how an engine is made from the same ONNX and config (flags,
# profile layout, ...): engines of an older recipe are then rebuilt, never loaded.
BUILD_RECIPE = 1


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


def describe_gpu(name: str, capability: tuple[int, int]) -> str:
    """``NVIDIA H100 (compute 9.0)``."""
    return f"{name} (compute {capability[0]}.{capability[1]})"
