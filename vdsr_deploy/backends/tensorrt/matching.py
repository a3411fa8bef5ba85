"""Why an engine does or does not fit, as data: every reason an engine cannot be loaded
for a run, in words a user can act on ([] = it fits).

:func:`mismatch_reasons` compares a cached engine's key with the wanted one (the cache's
exact-match rule); :func:`environment_reasons` is the part that concerns the machine (GPU,
TensorRT, CUDA), checked again when a runner is activated; :func:`explicit_engine_reasons`
and :func:`profile_cover_reasons` judge an engine the user named, which need only cover
the run. Nothing here needs TensorRT or a GPU.
"""

from __future__ import annotations

from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import EngineKey, describe_gpu, describe_profiles
from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.io_names import ShapeProfile


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
            f"built for GPU {describe_gpu(found.gpu_name, found.compute_capability)} but this GPU is "
            f"{describe_gpu(gpu.name, gpu.compute_capability)}"
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
