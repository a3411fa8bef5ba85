"""PyTorch runner: the reference (fp32) and the fp16/bf16 paths, on CPU or CUDA."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray

from vdsr_deploy.backends.base import Runner, RunnerInfo
from vdsr_deploy.backends.device import resolve_device
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.model import VDSR

PRECISIONS = ("fp32", "fp16", "bf16")


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
        resolved = resolve_device(device)
        if resolved.type == "cuda" and resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        self._device = resolved
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

    @property
    def tensor_device(self) -> str:
        return str(self._device)

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        x = torch.from_numpy(batch).to(self._device)
        output = self._infer_tensor(x, None)
        result: NDArray[np.float32] = output.cpu().numpy()
        return result

    def _infer_tensor(self, batch: torch.Tensor, stream: torch.cuda.Stream | None) -> torch.Tensor:
        if stream is None or self._device.type != "cuda":
            return self._forward(batch)
        with torch.cuda.stream(stream):
            return self._forward(batch)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        # no_grad, not inference_mode: callers may modify the output in place afterwards.
        with torch.no_grad():
            x = batch.contiguous(memory_format=memory_format)
            if self._precision == "fp16":
                residual = self._model.body(x.half()).float()
            elif self._precision == "bf16":
                with torch.autocast(self._device.type, dtype=torch.bfloat16):
                    residual = self._model.body(x)
                residual = residual.float()
            else:
                residual = self._model.body(x)
            output: torch.Tensor = (x + residual).contiguous()
            return output
