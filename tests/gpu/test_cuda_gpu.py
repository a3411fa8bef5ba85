"""The CUDA layer (cuda-python) and the PyTorch CUDA runner on a real GPU; no TensorRT needed.
Skips cleanly without cuda-python, a driver or a GPU.

Run with: pytest -m gpu tests/gpu
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.torch import TorchRunner
from vdsr_deploy.errors import BackendUnavailableError
from vdsr_deploy.model import VDSR


def _why_not() -> str | None:
    if not cuda.cuda_python_available():
        return "cuda-python is not installed"
    try:
        cuda.require_device(0)
    except (BackendUnavailableError, cuda.CudaCallError) as error:
        return str(error)
    return None


REASON = _why_not()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"needs cuda-python and a CUDA GPU ({REASON})"),
]


def test_device_info_and_versions() -> None:
    info = cuda.device_info(0)
    assert info.name and info.compute_capability >= (7, 0)
    assert info.total_memory > 1 << 30 and info.multiprocessors > 0
    assert info.sm.startswith("sm")
    assert cuda.driver_version() > 0 and cuda.runtime_version() > 0  # minor-version compatibility: either may be newer


def test_pinned_round_trip_through_device_memory() -> None:
    shape = (3, 1, 37, 41)  # odd sizes
    nbytes = int(np.prod(shape)) * 4
    source, target = cuda.PinnedBuffer(nbytes), cuda.PinnedBuffer(nbytes)
    device = cuda.DeviceBuffer(nbytes)
    stream = cuda.Stream.create()
    start, stop = cuda.Event.create(), cuda.Event.create()
    try:
        data = np.random.default_rng(0).random(shape, dtype=np.float32)
        source.view(shape)[...] = data
        target.view(shape)[...] = 0
        start.record(stream)
        cuda.memcpy_htod_async(device.ptr, source.ptr, nbytes, stream)
        cuda.memcpy_dtoh_async(target.ptr, device.ptr, nbytes, stream)
        stop.record(stream)
        stream.synchronize()
        assert np.array_equal(target.view(shape), data)
        assert stop.elapsed_ms(start) >= 0.0
    finally:
        for resource in (start, stop):
            resource.destroy()
        stream.destroy()
        for buffer in (device, source, target):
            buffer.free()


def test_captured_graph_replays_copies_of_new_host_data() -> None:
    shape = (2, 1, 9, 11)
    nbytes = int(np.prod(shape)) * 4
    source, target = cuda.PinnedBuffer(nbytes), cuda.PinnedBuffer(nbytes)
    device = cuda.DeviceBuffer(nbytes)
    stream = cuda.Stream.create()

    def enqueue() -> None:
        cuda.memcpy_htod_async(device.ptr, source.ptr, nbytes, stream)
        cuda.memcpy_dtoh_async(target.ptr, device.ptr, nbytes, stream)

    graph = cuda.capture_graph(stream, enqueue)
    try:
        for value in (1.5, -2.25):
            source.view(shape)[...] = value
            graph.launch(stream)
            stream.synchronize()
            assert np.all(target.view(shape) == value)
    finally:
        graph.destroy()
        stream.destroy()
        for buffer in (device, source, target):
            buffer.free()


def test_an_impossible_allocation_is_a_cuda_error_naming_the_call() -> None:
    with pytest.raises(cuda.CudaCallError, match=r"cudaMalloc\(1125899906842624 bytes\)"):
        cuda.DeviceBuffer(1 << 50)
    cuda.clear_last_error()
    cuda.DeviceBuffer(1024).free()  # the context is still usable


def test_torch_cuda_fp32_matches_cpu_and_fp16_stays_close() -> None:
    torch.manual_seed(0)
    model = VDSR(depth=4, channels=8).eval()
    batch = np.random.default_rng(1).random((3, 1, 29, 35), dtype=np.float32)
    with TorchRunner(model, device="cpu") as runner:
        reference = runner.infer(batch)
    with TorchRunner(model, device="cuda") as runner:
        fp32 = runner.infer(batch)
    with TorchRunner(model, device="cuda", precision="fp16") as runner:
        fp16 = runner.infer(batch)
    assert np.max(np.abs(fp32 - reference)) < 1e-5  # TF32 off: summation order only
    assert np.max(np.abs(fp16 - reference)) < 2e-2  # FP16 bound of tests/gpu/test_tensorrt_gpu.py
