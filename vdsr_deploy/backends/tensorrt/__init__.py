"""The TensorRT runtime, and this module its descriptor (:data:`BACKEND`). The wing:
``library`` (is TensorRT here, its logger), ``cuda`` (typed CUDA runtime layer),
``build_config`` (how an engine is to be built), ``keys`` (cache keys and file names),
``sidecar`` (the JSON next to each engine), ``matching`` (why an engine fits or not, as
reasons), ``cache`` (the engines folder and which engine to load), ``builder`` (ONNX ->
engine), ``runner`` (executes an engine) and ``streams`` (its CUDA buffers, streams and
graphs). ``builder`` and ``runner`` never import each other. Nothing here imports TensorRT
or cuda-python at import time."""

from __future__ import annotations

from vdsr_deploy.backends.descriptor import Backend, OpenRequest
from vdsr_deploy.backends.device import cuda_index
from vdsr_deploy.backends.tensorrt.build_config import PRECISIONS
from vdsr_deploy.environment import package_version
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.runner import Runner


def _compute_device(device: str, provider: str) -> str:
    return device if device.startswith("cuda") else "cuda"


def _unavailable(device: str, precision: str, provider: str) -> str | None:
    from vdsr_deploy.backends.device import cuda_available
    from vdsr_deploy.backends.tensorrt.cuda import INSTALL_HINT, cuda_python_available
    from vdsr_deploy.backends.tensorrt.library import require_tensorrt

    try:
        require_tensorrt()
    except BackendUnavailableError as error:
        return str(error)
    if not cuda_python_available():
        return INSTALL_HINT
    if not cuda_available():
        return "TensorRT needs a CUDA GPU; PyTorch sees none"
    return None


def _versions() -> dict[str, str | None]:
    return {
        "tensorrt": package_version("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
        "cuda-python": package_version("cuda-python", "cuda-bindings"),
    }


def _open(request: OpenRequest) -> Runner:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

    if request.artifact is None:
        raise ConfigError("TensorRT runs a built engine: none was given or built")
    return TensorRTRunner(request.artifact, device=cuda_index(request.device), cuda_graphs=request.cuda_graphs)


BACKEND = Backend(
    name="tensorrt",
    summary="TensorRT: FP16 (or FP32) engines built for the run's tile and batch, cached",
    precisions=PRECISIONS,
    artifact="engine",
    compute_device=_compute_device,
    unavailable=_unavailable,
    versions=_versions,
    open=_open,
)
