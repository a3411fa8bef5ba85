"""The CUDA layer without a GPU: the real cuda-python error path (no driver here ->
cudaErrorInsufficientDriver), the missing-cuda-python path, and the pure logic against a
scripted fake runtime."""

from __future__ import annotations

import enum
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.errors import BackendUnavailableError, CudaError, VdsrError


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
    for call in (cuda.runtime, cuda.device_count, cuda.runtime_version):
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


# -- a scripted fake runtime -----------------------------------------------------------


class Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidValue = 1


class FakeRuntime:
    """Just enough of cuda.bindings.runtime; ``fail`` maps call name -> status."""

    cudaError_t = Status

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.fail: dict[str, Status] = {}
        self.calls: list[str] = []

    def _status(self, name: str) -> Status:
        self.calls.append(name)
        return self.fail.get(name, Status.cudaSuccess)

    def cudaGetErrorName(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, Status(status).name.encode()

    def cudaGetErrorString(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, f"description of {int(status)}".encode()

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
