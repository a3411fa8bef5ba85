"""The one small interface every runtime implements.

A runner executes an already-built artifact (PyTorch module, ONNX file, TensorRT engine);
it never builds one, never tiles, never touches colour. A runner is a context manager:
resources (sessions, CUDA memory, streams) exist between ``__enter__`` and ``__exit__`` only.

Two forms of the same computation:

- :meth:`Runner.infer` (host form, numpy): input float32 ``(N, 1, H, W)`` C-contiguous,
  values nominally in ``[0, 1]``; output a new float32 array of the same shape. Synchronous.
  Used by parity, tests and the CPU path.
- :meth:`Runner.infer_tensor` (device form, torch): input a contiguous float32 tensor
  ``(N, 1, H, W)`` on :attr:`Runner.tensor_device`; output a new float32 tensor of the same
  shape on the same device. The work is enqueued on ``stream`` (or the current stream)
  with no host synchronisation inside, so the caller decides when to wait. A runner with
  only a host form (e.g. ONNX Runtime on CPU) inherits a default that round-trips through
  :meth:`Runner.infer`'s implementation and is synchronous.

torch is imported only by the device form, so ``import vdsr_deploy`` stays light.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import InvalidInputError, VdsrError
from vdsr_deploy.io_names import CHANNELS, Shape, ShapeProfile

if TYPE_CHECKING:
    import torch


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
    """Template methods: :meth:`infer` validates, then calls :meth:`_infer`;
    :meth:`infer_tensor` validates, then calls :meth:`_infer_tensor`."""

    model_identity: str = ""
    """Which model files this runner runs (:func:`vdsr_deploy.model.identity.model_identity`),
    set by :func:`vdsr_deploy.runtime.prepare.open_runner`; a batch job whose config names
    no model records this one for resume. Empty for a runner built by hand."""

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

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Ask a call in flight (from another thread) to end early by raising; calls made
        afterwards run normally. Default: nothing, the call runs to its end. A stopped batch
        job uses it so that one long call does not delay the stop."""

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

    @property
    def tensor_device(self) -> str:
        """The torch device string :meth:`infer_tensor` accepts, e.g. ``"cpu"``, ``"cuda:0"``."""
        return "cpu"

    def _check_call(self, shape: tuple[int, ...], dtype_ok: bool, dtype: object) -> Shape:
        """Checks shared by both forms; returns the validated ``(N, 1, H, W)`` shape."""
        if not self._active:
            raise VdsrError(f"{self.info.label}: runner used outside its 'with' block")
        if len(shape) != 4 or shape[1] != CHANNELS:
            raise InvalidInputError(f"expected input of shape (N, 1, H, W), got {tuple(shape)}")
        if not dtype_ok:
            raise InvalidInputError(f"expected float32 input, got {dtype}")
        checked = (int(shape[0]), int(shape[1]), int(shape[2]), int(shape[3]))
        profile = self.profile
        if profile is not None and not profile.contains(checked):
            raise InvalidInputError(
                f"{self.info.label}: input shape {checked} is outside the profile "
                f"min {profile.min} .. max {profile.max}"
            )
        return checked

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run the model on ``batch`` (host form; see the module docstring)."""
        self._check_call(batch.shape, batch.dtype == np.float32, batch.dtype)
        result = self._infer(np.ascontiguousarray(batch))
        if result.shape != batch.shape:
            raise VdsrError(
                f"{self.info.label}: expected output shape {batch.shape}, got {result.shape}"
            )
        return result

    def infer_tensor(
        self, batch: torch.Tensor, *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """Run the model on a device tensor (device form; see the module docstring).
        Only metadata is checked, so nothing here waits for the device."""
        import torch

        shape = tuple(batch.shape)
        self._check_call(shape, batch.dtype == torch.float32, batch.dtype)
        if str(batch.device) != self.tensor_device:
            raise InvalidInputError(
                f"{self.info.label}: expected a tensor on {self.tensor_device}, got one on "
                f"{batch.device}"
            )
        result = self._infer_tensor(batch.contiguous(), stream)
        if tuple(result.shape) != shape or result.device != batch.device:
            raise VdsrError(
                f"{self.info.label}: expected output {shape} on {batch.device}, got "
                f"{tuple(result.shape)} on {result.device}"
            )
        return result

    @abstractmethod
    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Backend-specific execution; ``batch`` is already validated and contiguous."""

    def _infer_tensor(
        self, batch: torch.Tensor, stream: torch.cuda.Stream | None
    ) -> torch.Tensor:
        """Device-form execution; ``batch`` is validated, contiguous, on
        :attr:`tensor_device`. Default: a synchronous host round trip through
        :meth:`_infer` (for runtimes with a host form only)."""
        import torch

        host = batch.detach().cpu().numpy()
        return torch.from_numpy(self._infer(host)).to(batch.device)
