"""Which device a run uses: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, resolved once and
honoured by every backend (PyTorch, ONNX Runtime's GPU providers, TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; a clear error for missing CUDA."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"device: expected cpu, cuda or cuda:N, got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"device {device!r}: PyTorch sees no CUDA GPU on this machine"
        )
    return resolved


def cuda_index(device: str) -> int:
    """The CUDA device index that ``device`` names: 0 for ``auto``/``cuda``, N for
    ``cuda:N`` (ConfigError for ``cpu`` or anything that is not a CUDA device)."""
    if device in ("auto", "cuda"):
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ConfigError(f"device: expected cuda or cuda:N for a GPU backend, got {device!r}")
    return int(index)


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver may be loaded: without one (Linux: no /proc/driver/nvidia,
    no /dev/nvidiactl) there is no CUDA device, so CPU runs need not import torch just to
    ask. Once torch is imported anyway, asking it costs nothing: True, let it answer."""
    import sys

    if "torch" in sys.modules or not Path("/proc").is_dir():
        return True
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def may_be_cuda(device: str) -> bool:
    """Whether ``device`` may be a CUDA device (``auto`` only when an NVIDIA driver is
    loaded: a CPU machine never imports torch just to ask)."""
    return device == "cuda" or device.startswith("cuda:") or (device == "auto" and nvidia_driver_present())
