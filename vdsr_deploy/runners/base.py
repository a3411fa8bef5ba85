"""The one small interface every runtime implements.

A runner executes an already-built artifact (PyTorch module, ONNX file, TensorRT engine);
it never builds one, never tiles, never touches colour. Contract of :meth:`Runner.infer`:
input float32 ``(N, 1, H, W)`` C-contiguous, values nominally in ``[0, 1]``; output float32
of the same shape. A runner is a context manager: resources (sessions, CUDA memory,
streams) exist between ``__enter__`` and ``__exit__`` only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import InvalidInputError, VdsrError
from vdsr_deploy.io_names import CHANNELS, ShapeProfile


@dataclass(frozen=True)
class RunnerInfo:
    """What a runner is, for reports: backend, device, precision and free-form details."""

    backend: str
    device: str
    precision: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.device}:{self.precision}"


class Runner(ABC):
    """Template method: :meth:`infer` validates, then calls :meth:`_infer`."""

    def __init__(self) -> None:
        self._active = False

    @property
    @abstractmethod
    def info(self) -> RunnerInfo:
        """Backend, device and precision of this runner."""

    @property
    def profile(self) -> ShapeProfile | None:
        """Input shapes this runner accepts (``None``: any shape)."""
        return None

    def activate(self) -> None:  # noqa: B027 - optional hook
        """Allocate sessions/memory. Called by ``__enter__``."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        """Free what :meth:`activate` allocated. Called by ``__exit__``."""

    def __enter__(self) -> Runner:
        self.activate()
        self._active = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._active = False
        self.deactivate()

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the model on ``batch`` (see the module docstring for the contract)."""
        if not self._active:
            raise VdsrError(f"{self.info.label}: runner used outside its 'with' block")
        if batch.ndim != 4 or batch.shape[1] != CHANNELS:
            raise InvalidInputError(f"expected input of shape (N, 1, H, W), got {batch.shape}")
        if batch.dtype != np.float32:
            raise InvalidInputError(f"expected float32 input, got {batch.dtype}")
        shape = (int(batch.shape[0]), int(batch.shape[1]), int(batch.shape[2]), int(batch.shape[3]))
        profile = self.profile
        if profile is not None and not profile.contains(shape):
            raise InvalidInputError(
                f"{self.info.label}: input shape {shape} is outside the profile "
                f"min {profile.min} .. max {profile.max}"
            )
        result = self._infer(np.ascontiguousarray(batch))
        if result.shape != batch.shape:
            raise VdsrError(
                f"{self.info.label}: expected output shape {batch.shape}, got {result.shape}"
            )
        return result

    @abstractmethod
    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Backend-specific execution; ``batch`` is already validated and contiguous."""
