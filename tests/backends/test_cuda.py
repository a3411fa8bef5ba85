"""The CUDA layer without a GPU: the real cuda-python error path (no driver here ->
cudaErrorInsufficientDriver), the missing-cuda-python path, and the pure logic against a
scripted fake runtime."""

from __future__ import annotations

import ctypes
import enum
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.errors import BackendUnavailableError, CudaError, InvalidInputError, VdsrError


def _driverless() -> bool:
    """cuda-python installed and no usable driver: the machine the error-path tests need."""
    if not cuda.cuda_python_available():
        return False
    try:
        cuda.device_count()
    except cuda.CudaCallError as error:
        return error.no_device
    return False


real_error_path = pytest.mark.skipif(
    not _driverless(), reason="needs cuda-python installed on a machine without a CUDA driver"
)


# -- cuda-python missing ---------------------------------------------------------------


def test_without_cuda_python_every_call_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # makes the import fail
    assert not cuda.cuda_python_available()
    for call in (
        cuda.runtime,
        cuda.device_count,
        lambda: cuda.DeviceBuffer(16),
        cuda.Stream.create,
    ):
        with pytest.raises(
            BackendUnavailableError, match=r"cuda-python is not installed: pip install"
        ):
            call()


# -- the real cuda-python, no driver ---------------------------------------------------


@real_error_path
def test_device_count_raises_cuda_error_naming_call_and_error() -> None:
    with pytest.raises(cuda.CudaCallError) as raised:
        cuda.device_count()
    error = raised.value
    assert isinstance(error, CudaError) and isinstance(error, VdsrError)
    assert error.call == "cudaGetDeviceCount()"
    assert error.error_name == "cudaErrorInsufficientDriver"
    assert str(error) == (
        "cudaGetDeviceCount() failed: cudaErrorInsufficientDriver "
        "(CUDA driver version is insufficient for CUDA runtime version)"
    )
    assert error.no_device


@real_error_path
def test_require_device_turns_no_driver_into_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailableError) as raised:
        cuda.require_device(0)
    assert str(raised.value).startswith(
        "no usable CUDA GPU on this machine: cudaGetDeviceCount() failed: "
        "cudaErrorInsufficientDriver"
    )
    assert isinstance(raised.value.__cause__, cuda.CudaCallError)


@real_error_path
@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda rt: cuda.set_device(0), "cudaSetDevice(0)"),
        (lambda rt: cuda.device_info(0), "cudaGetDeviceProperties(0)"),
        (lambda rt: cuda.DeviceBuffer(1 << 20), "cudaMalloc(1048576 bytes)"),
        (lambda rt: cuda.PinnedBuffer(4096), "cudaMallocHost(4096 bytes)"),
        (lambda rt: cuda.Stream.create(), "cudaStreamCreateWithFlags()"),
        (lambda rt: cuda.Event.create(), "cudaEventCreateWithFlags()"),
        (
            lambda rt: cuda.Stream(rt.cudaStream_t(0)).synchronize(),
            "cudaStreamSynchronize(stream 0x0)",
        ),
        (lambda rt: cuda.Stream(rt.cudaStream_t(0)).is_capturing(), "cudaStreamIsCapturing()"),
        (
            lambda rt: cuda.memcpy_htod_async(0, 0, 64, cuda.Stream(rt.cudaStream_t(0))),
            "cudaMemcpyAsync(host to device, 64 bytes)",
        ),
        (
            lambda rt: cuda.memcpy_dtoh_async(0, 0, 64, cuda.Stream(rt.cudaStream_t(0))),
            "cudaMemcpyAsync(device to host, 64 bytes)",
        ),
        (
            lambda rt: cuda.capture_graph(cuda.Stream(rt.cudaStream_t(0)), lambda: None),
            "cudaStreamBeginCapture()",
        ),
        (
            lambda rt: cuda.GraphExec(rt.cudaGraphExec_t(0)).launch(
                cuda.Stream(rt.cudaStream_t(0))
            ),
            "cudaGraphLaunch()",
        ),
        (
            lambda rt: cuda.Event(rt.cudaEvent_t(0)).record(cuda.Stream(rt.cudaStream_t(0))),
            "cudaEventRecord()",
        ),
        (
            lambda rt: cuda.Event(rt.cudaEvent_t(0)).elapsed_ms(cuda.Event(rt.cudaEvent_t(0))),
            "cudaEventElapsedTime()",
        ),
    ],
)
def test_every_wrapper_checks_its_status(call: Any, expected: str) -> None:
    with pytest.raises(cuda.CudaCallError) as raised:
        call(cuda.runtime())
    assert str(raised.value).startswith(f"{expected} failed: cudaErrorInsufficientDriver (")


@real_error_path
def test_real_error_names_and_versions() -> None:
    rt = cuda.runtime()
    assert cuda.error_name(rt.cudaError_t.cudaErrorMemoryAllocation) == "cudaErrorMemoryAllocation"
    assert cuda.error_description(rt.cudaError_t.cudaErrorMemoryAllocation) == "out of memory"
    assert cuda.driver_version() == 0  # no driver installed
    assert cuda.runtime_version() >= 12000
    assert cuda.native_handle(rt.cudaStream_t(0)) == 0


# -- a scripted fake runtime -----------------------------------------------------------


class Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidValue = 1
    cudaErrorStreamCaptureInvalidated = 901


class Handle:
    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


class FakeRuntime:
    """Just enough of cuda.bindings.runtime; ``fail`` maps call name -> status."""

    cudaError_t = Status
    cudaStreamNonBlocking = 1
    cudaStreamDefault = 0
    cudaEventDefault = 0
    cudaEventDisableTiming = 2
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
    cudaStreamCaptureStatus = SimpleNamespace(cudaStreamCaptureStatusNone=0)

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.fail: dict[str, Status] = {}
        self.calls: list[str] = []
        self.buffers: dict[int, Any] = {}
        self.graphs_alive = 0
        self.cleared = 0

    def _status(self, name: str) -> Status:
        self.calls.append(name)
        return self.fail.get(name, Status.cudaSuccess)

    def cudaGetErrorName(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, Status(status).name.encode()

    def cudaGetErrorString(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, f"description of {int(status)}".encode()

    def cudaGetLastError(self) -> tuple[Status]:
        self.cleared += 1
        return (Status.cudaSuccess,)

    def cudaGetDeviceCount(self) -> tuple[Status, int | None]:
        status = self._status("cudaGetDeviceCount")
        return status, (self.devices if status == Status.cudaSuccess else None)

    def cudaSetDevice(self, device: int) -> tuple[Status]:
        return (self._status("cudaSetDevice"),)

    def cudaGetDeviceProperties(self, device: int) -> tuple[Status, Any]:
        properties = SimpleNamespace(
            name=b"NVIDIA Fake GPU\0\0\0garbage",
            major=8,
            minor=9,
            totalGlobalMem=1 << 34,
            multiProcessorCount=76,
        )
        return self._status("cudaGetDeviceProperties"), properties

    def cudaMallocHost(self, nbytes: int) -> tuple[Status, int]:
        status = self._status("cudaMallocHost")
        buffer = (ctypes.c_ubyte * nbytes)()
        self.buffers[ctypes.addressof(buffer)] = buffer
        return status, ctypes.addressof(buffer)

    def cudaFreeHost(self, pointer: int) -> tuple[Status]:
        self.buffers.pop(pointer)
        return (self._status("cudaFreeHost"),)

    def cudaStreamBeginCapture(self, stream: Any, mode: int) -> tuple[Status]:
        return (self._status("cudaStreamBeginCapture"),)

    def cudaStreamEndCapture(self, stream: Any) -> tuple[Status, Handle | None]:
        status = self._status("cudaStreamEndCapture")
        if status != Status.cudaSuccess:
            return status, None
        self.graphs_alive += 1
        return status, Handle(7)

    def cudaGraphInstantiate(self, graph: Handle, flags: int) -> tuple[Status, Handle]:
        return self._status("cudaGraphInstantiate"), Handle(8)

    def cudaGraphDestroy(self, graph: Handle) -> tuple[Status]:
        self.graphs_alive -= 1
        return (self._status("cudaGraphDestroy"),)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    runtime = FakeRuntime()
    monkeypatch.setattr(cuda, "runtime", lambda: runtime)
    return runtime


def test_check_returns_values_or_raises(fake: FakeRuntime) -> None:
    assert cuda.check((Status.cudaSuccess, 3, "x"), "call()") == (3, "x")
    assert cuda.check(Status.cudaSuccess, "call()") == ()
    with pytest.raises(
        cuda.CudaCallError,
        match=r"^cudaFoo\(1\) failed: cudaErrorMemoryAllocation \(description of 2\)$",
    ):
        cuda.check((Status.cudaErrorMemoryAllocation, None), "cudaFoo(1)")


def test_no_device_statuses(fake: FakeRuntime) -> None:
    assert cuda.CudaCallError("c", "cudaErrorInsufficientDriver", "d").no_device
    assert cuda.CudaCallError("c", "cudaErrorNoDevice", "d").no_device
    assert not cuda.CudaCallError("c", "cudaErrorMemoryAllocation", "d").no_device


def test_require_device(fake: FakeRuntime) -> None:
    info = cuda.require_device(0)
    assert info.name == "NVIDIA Fake GPU" and info.compute_capability == (8, 9)
    assert info.sm == "sm89" and info.label == "NVIDIA Fake GPU (compute 8.9)"
    assert info.total_memory == 1 << 34 and info.multiprocessors == 76
    with pytest.raises(
        BackendUnavailableError, match=r"CUDA device 3 does not exist \(this machine has 1\)"
    ):
        cuda.require_device(3)
    fake.devices = 0
    with pytest.raises(BackendUnavailableError, match="returned 0"):
        cuda.require_device(0)
    fake.fail["cudaGetDeviceCount"] = Status.cudaErrorInsufficientDriver
    with pytest.raises(BackendUnavailableError, match="no usable CUDA GPU"):
        cuda.require_device(0)
    fake.fail["cudaGetDeviceCount"] = Status.cudaErrorInvalidValue  # a real error stays a CudaError
    with pytest.raises(cuda.CudaCallError, match="cudaErrorInvalidValue"):
        cuda.require_device(0)


def test_host_array_is_a_writable_view() -> None:
    backing = (ctypes.c_ubyte * 64)()
    view = cuda.host_array(ctypes.addressof(backing), (2, 1, 2, 4), np.float32)
    assert view.shape == (2, 1, 2, 4) and view.dtype == np.float32 and view.flags.writeable
    view[:] = 1.5
    again = cuda.host_array(ctypes.addressof(backing), (16,), np.float32)
    assert np.all(again == 1.5)  # same memory, no copy
    with pytest.raises(InvalidInputError, match="non-null"):
        cuda.host_array(0, (1,), np.float32)


def test_pinned_buffer_views_and_free(fake: FakeRuntime) -> None:
    buffer = cuda.PinnedBuffer(64)
    view = buffer.view((4, 4), np.float32)
    view[:] = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert buffer.view((16,))[5] == 5.0
    with pytest.raises(InvalidInputError, match="needs 128 bytes, the buffer has 64"):
        buffer.view((32,), np.float32)
    buffer.free()
    buffer.free()  # idempotent
    assert fake.buffers == {}
    with pytest.raises(InvalidInputError, match="after free"):
        buffer.view((1,))
    with pytest.raises(InvalidInputError, match="positive size"):
        cuda.PinnedBuffer(0)


def test_capture_graph_success_destroys_the_template(fake: FakeRuntime) -> None:
    enqueued = []
    graph = cuda.capture_graph(cuda.Stream(Handle(1)), lambda: enqueued.append(1))
    assert enqueued == [1] and int(graph.raw) == 8
    assert fake.graphs_alive == 0  # the template graph is destroyed after instantiation


def test_capture_graph_enqueue_failure_ends_the_capture(fake: FakeRuntime) -> None:
    def enqueue() -> None:
        raise VdsrError("enqueue failed")

    with pytest.raises(VdsrError, match="enqueue failed"):
        cuda.capture_graph(cuda.Stream(Handle(1)), enqueue)
    assert fake.calls[-2:] == ["cudaStreamEndCapture", "cudaGraphDestroy"]
    assert fake.graphs_alive == 0 and fake.cleared == 1


@pytest.mark.parametrize("failing", ["cudaStreamEndCapture", "cudaGraphInstantiate"])
def test_capture_graph_cuda_failures(fake: FakeRuntime, failing: str) -> None:
    fake.fail[failing] = Status.cudaErrorStreamCaptureInvalidated
    with pytest.raises(
        cuda.CudaCallError, match=f"{failing}\\(\\) failed: cudaErrorStreamCaptureInvalidated"
    ):
        cuda.capture_graph(cuda.Stream(Handle(1)), lambda: None)
    assert fake.graphs_alive == 0 and fake.cleared == 1


def test_native_handle_of_plain_objects() -> None:
    assert cuda.native_handle(Handle(42)) == 42
