"""PyTorch runner: the reference (fp32) and the fp16/bf16 paths, on CPU or CUDA."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.model import VDSR
from vdsr_deploy.runners.base import Runner, RunnerInfo

PRECISIONS = ("fp32", "fp16", "bf16")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; a clear error for missing CUDA."""
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


class TorchRunner(Runner):
    """Runs a :class:`VDSR` module.

    ``fp32``: reference; TF32 is switched off on CUDA unless ``allow_tf32`` (parity baselines
    need true fp32). ``fp16`` (CUDA only): the 20 conv layers run in half precision, the
    global residual add in fp32, as in the FP16 ONNX graph. ``bf16``: autocast, residual add
    in fp32 (CPU and CUDA).
    """

    def __init__(
        self,
        model: VDSR,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        allow_tf32: bool = False,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self._device = resolve_device(device)
        if precision == "fp16" and self._device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device for PyTorch; use bf16 on CPU")
        self._precision = precision
        self._channels_last = channels_last
        self._allow_tf32 = allow_tf32
        self._model = model
        self._saved_tf32: tuple[bool, bool] | None = None

    @property
    def info(self) -> RunnerInfo:
        name = torch.cuda.get_device_name(self._device) if self._device.type == "cuda" else "cpu"
        return RunnerInfo(
            backend="torch",
            device=str(self._device),
            precision=self._precision,
            details={
                "torch": torch.__version__,
                "device_name": name,
                "threads": torch.get_num_threads(),
                "channels_last": self._channels_last,
                "tf32": self._allow_tf32,
            },
        )

    def activate(self) -> None:
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        self._model = self._model.to(self._device).to(memory_format=memory_format).eval()  # type: ignore[call-overload]
        if self._precision == "fp16":
            self._model.body.half()
        if self._device.type == "cuda":
            self._saved_tf32 = (
                torch.backends.cuda.matmul.allow_tf32,
                torch.backends.cudnn.allow_tf32,
            )
            torch.backends.cuda.matmul.allow_tf32 = self._allow_tf32
            torch.backends.cudnn.allow_tf32 = self._allow_tf32

    def deactivate(self) -> None:
        if self._saved_tf32 is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (
                self._saved_tf32
            )
            self._saved_tf32 = None
        if self._precision == "fp16":
            self._model.body.float()

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self._device).contiguous(memory_format=memory_format)
            if self._precision == "fp16":
                residual = self._model.body(x.half()).float()
            elif self._precision == "bf16":
                with torch.autocast(self._device.type, dtype=torch.bfloat16):
                    residual = self._model.body(x)
                residual = residual.float()
            else:
                residual = self._model.body(x)
            output = (x + residual).contiguous()
            result: NDArray[np.float32] = output.cpu().numpy()
        return result
