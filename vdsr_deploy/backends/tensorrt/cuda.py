"""A thin, typed layer over the CUDA runtime API of cuda-python (``cuda.bindings.runtime``).

Every status is checked: a failing call raises :class:`CudaCallError` (a
:class:`~vdsr_deploy.errors.CudaError`) whose message is one sentence naming the call and
the CUDA error, e.g. ``cudaMalloc(1048576 bytes) failed: cudaErrorMemoryAllocation (out of
memory)``. :func:`require_device` turns "there is no usable GPU here" statuses into
:class:`~vdsr_deploy.errors.BackendUnavailableError`.

cuda-python is imported on first use, never at import time; without it every function
raises :class:`~vdsr_deploy.errors.BackendUnavailableError` with the pip command. It ships
no type information (no stubs, no ``py.typed``), so everything it returns is converted to
plain ``int``/``str``/``float`` here and the rest of the package only sees typed values.

Why cuda-python and not pycuda: it installs as a wheel (pycuda is source-only and compiles
against a local CUDA toolkit) and it is what NVIDIA's own TensorRT samples use.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from vdsr_deploy.errors import BackendUnavailableError, CudaError, InvalidInputError

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


def clear_last_error() -> None:
    """Reset the thread's last (non-sticky) CUDA error, e.g. after a failed graph capture."""
    runtime().cudaGetLastError()


def native_handle(obj: Any) -> int:
    """The integer handle of a cuda-python object (stream, event), as TensorRT wants it."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    try:
        return int(get_cuda_native_handle(obj))
    except TypeError:
        return int(obj)


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


# ----------------------------------------------------------------------------------------
# Streams and events


class Stream:
    """A CUDA stream (non-blocking by default, so it never syncs with the legacy default
    stream). ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self, raw: Any) -> None:
        self.raw: Any = raw
        self.handle: int = native_handle(raw)

    @classmethod
    def create(cls, *, non_blocking: bool = True) -> Stream:
        cudart = runtime()
        flags = cudart.cudaStreamNonBlocking if non_blocking else cudart.cudaStreamDefault
        (raw,) = check(cudart.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags()")
        return cls(raw)

    def synchronize(self) -> None:
        check(
            runtime().cudaStreamSynchronize(self.raw),
            f"cudaStreamSynchronize(stream {self.handle:#x})",
        )

    def is_capturing(self) -> bool:
        cudart = runtime()
        (status,) = check(cudart.cudaStreamIsCapturing(self.raw), "cudaStreamIsCapturing()")
        return bool(status != cudart.cudaStreamCaptureStatus.cudaStreamCaptureStatusNone)

    def destroy(self) -> None:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            check(runtime().cudaStreamDestroy(raw), f"cudaStreamDestroy(stream {self.handle:#x})")


class Event:
    """A CUDA event, for ordering streams and for GPU-side timing."""

    def __init__(self, raw: Any) -> None:
        self.raw: Any = raw

    @classmethod
    def create(cls, *, timing: bool = True) -> Event:
        cudart = runtime()
        flags = cudart.cudaEventDefault if timing else cudart.cudaEventDisableTiming
        (raw,) = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags()")
        return cls(raw)

    def record(self, stream: Stream) -> None:
        check(runtime().cudaEventRecord(self.raw, stream.raw), "cudaEventRecord()")

    def synchronize(self) -> None:
        check(runtime().cudaEventSynchronize(self.raw), "cudaEventSynchronize()")

    def elapsed_ms(self, start: Event) -> float:
        """Milliseconds from ``start`` to this event (both recorded, this one completed)."""
        (ms,) = check(runtime().cudaEventElapsedTime(start.raw, self.raw), "cudaEventElapsedTime()")
        return float(ms)

    def destroy(self) -> None:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            check(runtime().cudaEventDestroy(raw), "cudaEventDestroy()")


# ----------------------------------------------------------------------------------------
# Memory


def _nbytes(shape: Sequence[int], dtype: DTypeLike) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize


def host_array(address: int, shape: Sequence[int], dtype: DTypeLike) -> NDArray[Any]:
    """A writable numpy view of ``shape``/``dtype`` over host memory at ``address`` (no copy,
    no ownership: the view must not outlive the memory)."""
    if address == 0:
        raise InvalidInputError("host_array: expected a non-null address")
    count = math.prod(shape)
    raw = (ctypes.c_ubyte * _nbytes(shape, dtype)).from_address(address)
    array: NDArray[Any] = np.frombuffer(
        memoryview(raw).cast("B"), dtype=np.dtype(dtype), count=count
    )
    return array.reshape(tuple(shape))


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc); ``ptr`` is its device address."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise InvalidInputError(f"device buffer: expected a positive size, got {nbytes}")
        (ptr,) = check(runtime().cudaMalloc(nbytes), f"cudaMalloc({nbytes} bytes)")
        self.ptr: int = int(ptr)
        self.nbytes = nbytes

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(runtime().cudaFree(ptr), f"cudaFree({ptr:#x})")


class PinnedBuffer:
    """``nbytes`` of page-locked host memory (cudaMallocHost), so async copies really are
    asynchronous. :meth:`view` gives numpy views over it; they die with :meth:`free`."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise InvalidInputError(f"pinned buffer: expected a positive size, got {nbytes}")
        (ptr,) = check(runtime().cudaMallocHost(nbytes), f"cudaMallocHost({nbytes} bytes)")
        self.ptr: int = int(ptr)
        self.nbytes = nbytes

    def view(self, shape: Sequence[int], dtype: DTypeLike = np.float32) -> NDArray[Any]:
        """A numpy view of the first ``prod(shape)`` elements."""
        if not self.ptr:
            raise InvalidInputError("pinned buffer: used after free()")
        if _nbytes(shape, dtype) > self.nbytes:
            raise InvalidInputError(
                f"pinned buffer: a {tuple(shape)} {np.dtype(dtype)} view needs "
                f"{_nbytes(shape, dtype)} bytes, "
                f"the buffer has {self.nbytes}"
            )
        return host_array(self.ptr, shape, dtype)

    def free(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            check(runtime().cudaFreeHost(ptr), f"cudaFreeHost({ptr:#x})")


def memcpy_htod_async(device_ptr: int, host_ptr: int, nbytes: int, stream: Stream) -> None:
    """Copy ``nbytes`` host -> device on ``stream`` (truly async only from pinned memory)."""
    cudart = runtime()
    check(
        cudart.cudaMemcpyAsync(
            device_ptr, host_ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.raw
        ),
        f"cudaMemcpyAsync(host to device, {nbytes} bytes)",
    )


def memcpy_dtoh_async(host_ptr: int, device_ptr: int, nbytes: int, stream: Stream) -> None:
    """Copy ``nbytes`` device -> host on ``stream``."""
    cudart = runtime()
    check(
        cudart.cudaMemcpyAsync(
            host_ptr, device_ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.raw
        ),
        f"cudaMemcpyAsync(device to host, {nbytes} bytes)",
    )


# ----------------------------------------------------------------------------------------
# CUDA graphs


class GraphExec:
    """An instantiated CUDA graph, replayed with :meth:`launch`."""

    def __init__(self, raw: Any) -> None:
        self.raw: Any = raw

    def launch(self, stream: Stream) -> None:
        check(runtime().cudaGraphLaunch(self.raw, stream.raw), "cudaGraphLaunch()")

    def destroy(self) -> None:
        if self.raw is not None:
            raw, self.raw = self.raw, None
            check(runtime().cudaGraphExecDestroy(raw), "cudaGraphExecDestroy()")


def capture_graph(stream: Stream, enqueue: Callable[[], None]) -> GraphExec:
    """Capture the work ``enqueue`` puts on ``stream`` into an instantiated graph.

    Nothing runs during capture. On any failure (the capture is invalidated, ``enqueue``
    raises, instantiation fails) the capture is ended, partial graphs are destroyed, the
    thread's last error is cleared and the error is raised: the caller can fall back to a
    plain enqueue on the same stream.
    """
    cudart = runtime()
    check(
        cudart.cudaStreamBeginCapture(
            stream.raw, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        ),
        "cudaStreamBeginCapture()",
    )
    try:
        enqueue()
    except BaseException:
        _abandon_capture(stream)
        raise
    try:
        (graph,) = check(cudart.cudaStreamEndCapture(stream.raw), "cudaStreamEndCapture()")
    except CudaCallError:
        clear_last_error()
        raise
    try:
        (raw_exec,) = check(cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate()")
    except CudaCallError:
        clear_last_error()
        raise
    finally:
        # The instantiated graph keeps what it needs; the template graph can go either way.
        cudart.cudaGraphDestroy(graph)
    return GraphExec(raw_exec)


def _abandon_capture(stream: Stream) -> None:
    """End a capture whose enqueue failed, destroy what it captured, clear the last error."""
    cudart = runtime()
    result = cudart.cudaStreamEndCapture(stream.raw)
    captured = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    if captured is not None and result[0] == cudart.cudaError_t.cudaSuccess:
        cudart.cudaGraphDestroy(captured)
    clear_last_error()
