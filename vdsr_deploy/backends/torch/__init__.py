"""The PyTorch runtime: the FP32 reference, an FP16 body on CUDA, bf16 autocast
(:mod:`~vdsr_deploy.backends.torch.runner`). It runs the safetensors weights directly.
This module is its descriptor (:data:`BACKEND`) and imports no torch."""

from __future__ import annotations

from vdsr_deploy.backends.descriptor import Backend, OpenRequest
from vdsr_deploy.backends.device import nvidia_driver_present, resolve_device
from vdsr_deploy.environment import package_version
from vdsr_deploy.errors import BackendUnavailableError
from vdsr_deploy.runner import Runner


def _compute_device(device: str, provider: str) -> str:
    if device != "auto":
        return device
    if not nvidia_driver_present():
        return "cpu"
    from vdsr_deploy.backends.device import cuda_available

    return "cuda" if cuda_available() else "cpu"


def _unavailable(device: str, precision: str, provider: str) -> str | None:
    try:
        resolved = resolve_device(device)
    except BackendUnavailableError as error:
        return str(error)
    if precision == "fp16" and resolved.type != "cuda":
        return "PyTorch fp16 needs a CUDA device (bf16 is the CPU half-precision path)"
    return None


def _versions() -> dict[str, str | None]:
    return {"torch": package_version("torch")}


def _open(request: OpenRequest) -> Runner:
    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.model.weights import load_weights

    if request.threads:
        import torch

        torch.set_num_threads(request.threads)
    model, _ = load_weights(request.artifact)
    return TorchRunner(
        model,
        device=request.device,
        precision=request.precision,
        channels_last=request.channels_last,
        allow_tf32=request.allow_tf32,
        cuda_graphs=request.cuda_graphs,
    )


BACKEND = Backend(
    name="torch",
    summary="PyTorch: the FP32 reference, FP16 on CUDA, bf16 (CPU with bf16 hardware, CUDA)",
    precisions=("fp32", "bf16", "fp16"),
    artifact="weights",
    compute_device=_compute_device,
    unavailable=_unavailable,
    versions=_versions,
    open=_open,
)
