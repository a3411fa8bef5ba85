"""A thin, typed layer over the CUDA runtime API of cuda-python (``cuda.bindings.runtime``):
which GPUs there are, what they are, and which CUDA version, for building and checking
TensorRT engines. (Device memory, streams and graphs of the TensorRT runner are PyTorch's:
:mod:`vdsr_deploy.backends.tensorrt.streams`.)

Every status is checked: a failing call raises :class:`CudaCallError` (a
:class:`~vdsr_deploy.errors.CudaError`) whose message is one sentence naming the call and
the CUDA error, e.g. ``cudaGetDeviceCount() failed: cudaErrorInsufficientDriver (CUDA
driver version is insufficient for CUDA runtime version)``. :func:`require_device` turns
"there is no usable GPU here" statuses into :class:`~vdsr_deploy.errors.BackendUnavailableError`.

cuda-python is imported on first use, never at import time; without it every function
raises :class:`~vdsr_deploy.errors.BackendUnavailableError` with the pip command. It ships
no type information (no stubs, no ``py.typed``), so everything it returns is converted to
plain ``int``/``str``/``float`` here and the rest of the package only sees typed values.

Why cuda-python and not pycuda: it installs as a wheel (pycuda is source-only and compiles
against a local CUDA toolkit) and it is what NVIDIA's own TensorRT samples use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vdsr_deploy.errors import BackendUnavailableError, CudaError

INSTALL_HINT = (
    "cuda-python is not installed: pip install 'cuda-python>=13' for a CUDA 13 driver, or "
    "'cuda-python>=12.6.1,<13' for a CUDA 12 driver"
)

# Statuses that mean "no usable GPU on this machine" rather than "this call went wrong".
NO_DEVICE_ERRORS = frozenset(
    {
        "cudaErrorNoDevice",
        "cudaErrorInsufficientDriver",
        "cudaErrorSystemDriverMismatch",
        "cudaErrorCompatNotSupportedOnDevice",
        "cudaErrorDevicesUnavailable",
        "cudaErrorInitializationError",
    }
)


class CudaCallError(CudaError):
    """A CUDA runtime call returned an error status; ``call`` and ``error_name`` say which."""

    def __init__(self, call: str, error_name: str, description: str) -> None:
        super().__init__(f"{call} failed: {error_name} ({description})")
        self.call = call
        self.error_name = error_name

    @property
    def no_device(self) -> bool:
        """True when the status means there is no usable GPU (no driver, no device)."""
        return self.error_name in NO_DEVICE_ERRORS


def runtime() -> Any:
    """The ``cuda.bindings.runtime`` module (BackendUnavailableError when not installed)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as error:
        raise BackendUnavailableError(INSTALL_HINT) from error
    return cudart


def cuda_python_available() -> bool:
    """Whether cuda-python (``cuda.bindings``) can be imported; says nothing about a GPU."""
    try:
        runtime()
    except BackendUnavailableError:
        return False
    return True


def error_name(status: Any) -> str:
    """``cudaErrorMemoryAllocation`` for a ``cudaError_t`` (its repr if CUDA cannot say)."""
    cudart = runtime()
    result = cudart.cudaGetErrorName(status)
    name = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    if isinstance(name, bytes) and name:
        return name.decode(errors="replace")
    return str(getattr(status, "name", status))


def error_description(status: Any) -> str:
    """CUDA's own one-line description of ``status``."""
    cudart = runtime()
    result = cudart.cudaGetErrorString(status)
    text = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    if isinstance(text, bytes) and text:
        return text.decode(errors="replace")
    return "no description"


def check(result: Any, call: str) -> tuple[Any, ...]:
    """Split cuda-python's ``(status, *values)`` and raise :class:`CudaCallError` unless the
    status is ``cudaSuccess``. ``call`` names the call in the message (with its key argument)."""
    cudart = runtime()
    if isinstance(result, tuple):
        status, values = result[0], tuple(result[1:])
    else:
        status, values = result, ()
    if status != cudart.cudaError_t.cudaSuccess:
        raise CudaCallError(call, error_name(status), error_description(status))
    return values


# ----------------------------------------------------------------------------------------
# Devices


@dataclass(frozen=True)
class DeviceInfo:
    """What identifies a GPU for engine compatibility: its name and compute capability."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory: int = 0
    multiprocessors: int = 0

    @property
    def sm(self) -> str:
        """``sm90`` for compute capability 9.0."""
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def label(self) -> str:
        major, minor = self.compute_capability
        return f"{self.name} (compute {major}.{minor})"


def device_count() -> int:
    """Number of CUDA devices (CudaCallError without a driver: cudaErrorInsufficientDriver)."""
    (count,) = check(runtime().cudaGetDeviceCount(), "cudaGetDeviceCount()")
    return int(count)


def set_device(device: int) -> None:
    """Make ``device`` current for this thread (TensorRT builds and runs on the current one)."""
    check(runtime().cudaSetDevice(device), f"cudaSetDevice({device})")


def device_info(device: int = 0) -> DeviceInfo:
    """Name, compute capability, memory and SM count of ``device``."""
    (properties,) = check(
        runtime().cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})"
    )
    raw_name = properties.name
    name = (
        raw_name.split(b"\0", 1)[0].decode(errors="replace")
        if isinstance(raw_name, bytes)
        else str(raw_name)
    )
    return DeviceInfo(
        index=device,
        name=name.strip(),
        compute_capability=(int(properties.major), int(properties.minor)),
        total_memory=int(properties.totalGlobalMem),
        multiprocessors=int(properties.multiProcessorCount),
    )


def require_device(device: int = 0) -> DeviceInfo:
    """:func:`device_info` for ``device`` after making it current; no driver, no GPU or a
    device index out of range raise :class:`BackendUnavailableError` (one sentence)."""
    try:
        count = device_count()
    except CudaCallError as error:
        if error.no_device:
            raise BackendUnavailableError(f"no usable CUDA GPU on this machine: {error}") from error
        raise
    if count == 0:
        raise BackendUnavailableError(
            "no usable CUDA GPU on this machine: cudaGetDeviceCount() returned 0"
        )
    if not 0 <= device < count:
        raise BackendUnavailableError(
            f"CUDA device {device} does not exist (this machine has {count})"
        )
    set_device(device)
    return device_info(device)


def driver_version() -> int:
    """The driver's CUDA version as an integer, e.g. 13000 (0 when no driver is installed)."""
    (version,) = check(runtime().cudaDriverGetVersion(), "cudaDriverGetVersion()")
    return int(version)


def runtime_version() -> int:
    """The CUDA runtime version cuda-python was built against, e.g. 13040."""
    (version,) = check(runtime().cudaRuntimeGetVersion(), "cudaRuntimeGetVersion()")
    return int(version)


def memory_info(device: int = 0) -> tuple[int, int]:
    """``(free, total)`` bytes of ``device`` (made current), as the driver reports them."""
    set_device(device)
    free, total = check(runtime().cudaMemGetInfo(), f"cudaMemGetInfo() on device {device}")
    return int(free), int(total)
