"""The TensorRT runner without a GPU: batch splitting, I/O checks, sidecar checks, the
missing-TensorRT path, and the whole execution pipeline (contexts, streams, pinned
buffers, CUDA graph capture/replay/fallback, teardown) against a fake CUDA runtime whose
"device memory" is host memory and a fake execution context that computes 2 * x + 1."""

from __future__ import annotations

import ctypes
import enum
import hashlib
import math
import sys
import types
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from vdsr_deploy.backends.tensorrt import cache as trt_cache
from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.tensorrt import library as trt_library
from vdsr_deploy.backends.tensorrt.cache import (
    EngineBuildConfig,
    EngineSidecar,
    engine_key,
    sidecar_path,
    write_sidecar,
)
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.runner import (
    MAX_SPLIT_BATCH,
    ExecutionPipeline,
    TensorRTRunner,
    check_engine_io,
    split_batch,
)
from vdsr_deploy.errors import (
    BackendUnavailableError,
    ConfigError,
    CudaError,
    EngineMismatchError,
    InvalidInputError,
    VdsrError,
)
from vdsr_deploy.io_names import profile_for_tiles
from vdsr_deploy.tiling import TileConfig

GPU = DeviceInfo(index=0, name="NVIDIA Fake GPU", compute_capability=(8, 9))
TRT_VERSION = "10.13.0.35"
MAX_SHAPE = (3, 1, 8, 8)


def expected(batch: np.ndarray) -> np.ndarray:
    return 2 * batch + 1


# -- pure helpers ----------------------------------------------------------------------


def test_split_batch() -> None:
    assert split_batch(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert split_batch(3, 3) == [(0, 3)]
    assert split_batch(1, 8) == [(0, 1)]
    with pytest.raises(InvalidInputError):
        split_batch(0, 3)


def test_check_engine_io() -> None:
    check_engine_io(["input"], ["output"], {"input": "FLOAT", "output": "FLOAT"})
    with pytest.raises(EngineMismatchError, match="expected an engine with input 'input'"):
        check_engine_io(["images"], ["output"], {})
    with pytest.raises(EngineMismatchError, match="float32 engine I/O"):
        check_engine_io(["input"], ["output"], {"input": "FLOAT", "output": "HALF"})


# -- a fake CUDA runtime and TensorRT --------------------------------------------------


class Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorStreamCaptureInvalidated = 901


class Handle:
    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


OK = Status.cudaSuccess


class FakeCuda:
    """Streams run work immediately unless capturing; graphs replay recorded work."""

    cudaError_t = Status
    cudaStreamNonBlocking = 1
    cudaStreamDefault = 0
    cudaEventDefault = 0
    cudaEventDisableTiming = 2
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
    cudaStreamCaptureStatus = SimpleNamespace(cudaStreamCaptureStatusNone=0)

    def __init__(self) -> None:
        self.memory: dict[int, Any] = {}
        self.kinds: dict[int, str] = {}
        self.recording: dict[int, list[Callable[[], None]] | None] = {}
        self.graphs: dict[int, list[Callable[[], None]]] = {}
        self.execs: dict[int, list[Callable[[], None]]] = {}
        self.fail: dict[str, Status] = {}
        self.syncs = 0
        self.launches = 0
        self.copies = 0
        self._next = 100

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _status(self, name: str) -> Status:
        return self.fail.get(name, OK)

    def cudaGetErrorName(self, status: Status) -> tuple[Status, bytes]:
        return OK, Status(status).name.encode()

    def cudaGetErrorString(self, status: Status) -> tuple[Status, bytes]:
        return OK, b"fake"

    def cudaGetLastError(self) -> tuple[Status]:
        return (OK,)

    def cudaGetDeviceCount(self) -> tuple[Status, int]:
        return OK, 1

    def cudaSetDevice(self, device: int) -> tuple[Status]:
        return (OK,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[Status, Any]:
        name = GPU.name.encode() + b"\0"
        major, minor = GPU.compute_capability
        return OK, SimpleNamespace(
            name=name, major=major, minor=minor, totalGlobalMem=1, multiProcessorCount=1
        )

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[Status, Handle]:
        handle = Handle(self._id())
        self.recording[handle.value] = None
        return OK, handle

    def cudaStreamSynchronize(self, stream: Handle) -> tuple[Status]:
        self.syncs += 1
        return (self._status("cudaStreamSynchronize"),)

    def cudaStreamDestroy(self, stream: Handle) -> tuple[Status]:
        del self.recording[int(stream)]
        return (OK,)

    def _allocate(self, nbytes: int, kind: str) -> tuple[Status, int]:
        status = self._status(f"cudaMalloc{'Host' if kind == 'pinned' else ''}")
        if status != OK:
            return status, 0
        buffer = (ctypes.c_ubyte * nbytes)()
        address = ctypes.addressof(buffer)
        self.memory[address], self.kinds[address] = buffer, kind
        return OK, address

    def cudaMalloc(self, nbytes: int) -> tuple[Status, int]:
        return self._allocate(nbytes, "device")

    def cudaMallocHost(self, nbytes: int) -> tuple[Status, int]:
        return self._allocate(nbytes, "pinned")

    def cudaFree(self, pointer: int) -> tuple[Status]:
        assert self.kinds.pop(pointer) == "device"
        del self.memory[pointer]
        return (self._status("cudaFree"),)

    def cudaFreeHost(self, pointer: int) -> tuple[Status]:
        assert self.kinds.pop(pointer) == "pinned"
        del self.memory[pointer]
        return (OK,)

    def run_or_record(self, stream: int, work: Callable[[], None]) -> None:
        recording = self.recording[stream]
        if recording is None:
            work()
        else:
            recording.append(work)

    def cudaMemcpyAsync(
        self, dst: int, src: int, nbytes: int, kind: int, stream: Handle
    ) -> tuple[Status]:
        assert self.kinds[dst] == ("device" if kind == 1 else "pinned")
        assert self.kinds[src] == ("pinned" if kind == 1 else "device")
        self.copies += 1
        self.run_or_record(int(stream), lambda: ctypes.memmove(dst, src, nbytes))
        return (OK,)

    def cudaStreamBeginCapture(self, stream: Handle, mode: int) -> tuple[Status]:
        self.recording[int(stream)] = []
        return (OK,)

    def cudaStreamEndCapture(self, stream: Handle) -> tuple[Status, Handle | None]:
        work, self.recording[int(stream)] = self.recording[int(stream)], None
        status = self._status("cudaStreamEndCapture")
        if status != OK or work is None:
            return status, None
        graph = Handle(self._id())
        self.graphs[graph.value] = work
        return OK, graph

    def cudaGraphInstantiate(self, graph: Handle, flags: int) -> tuple[Status, Handle]:
        executable = Handle(self._id())
        self.execs[executable.value] = list(self.graphs[int(graph)])
        return OK, executable

    def cudaGraphDestroy(self, graph: Handle) -> tuple[Status]:
        del self.graphs[int(graph)]
        return (OK,)

    def cudaGraphLaunch(self, executable: Handle, stream: Handle) -> tuple[Status]:
        self.launches += 1
        for work in self.execs[int(executable)]:
            self.run_or_record(int(stream), work)
        return (OK,)

    def cudaGraphExecDestroy(self, executable: Handle) -> tuple[Status]:
        del self.execs[int(executable)]
        return (OK,)


class FakeContext:
    """An execution context whose engine computes 2 * x + 1."""

    def __init__(self, fake: FakeCuda) -> None:
        self.fake = fake
        self.profile: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.kernels = 0  # executions that really ran (live or replayed)
        self.fail_execute = False
        self.reject_profile = False

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self.profile = index
        return not self.reject_profile

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        assert name == "input"
        if shape[2] > MAX_SHAPE[2] or shape[3] > MAX_SHAPE[3] or shape[0] > MAX_SHAPE[0]:
            return False
        self.shape = tuple(shape)
        return True

    def infer_shapes(self) -> list[str]:
        return []

    def get_tensor_shape(self, name: str) -> list[int]:
        assert self.shape is not None
        return list(self.shape)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        if self.fail_execute:
            return False
        assert self.shape is not None and self.profile is not None
        count = math.prod(self.shape)
        source, target = self.addresses["input"], self.addresses["output"]

        def kernel() -> None:
            x = np.ctypeslib.as_array((ctypes.c_float * count).from_address(source))
            y = np.ctypeslib.as_array((ctypes.c_float * count).from_address(target))
            y[:] = 2 * x + 1
            self.kernels += 1

        self.fake.run_or_record(stream, kernel)
        return True


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda()
    monkeypatch.setattr(cuda, "runtime", lambda: fake)
    return fake


def make_pipeline(
    fake: FakeCuda, contexts: int = 2, *, graphs: bool = True
) -> tuple[ExecutionPipeline, list[FakeContext]]:
    fakes = [FakeContext(fake) for _ in range(contexts)]
    pipeline = ExecutionPipeline(
        fakes, MAX_SHAPE, cuda_graphs=graphs, errors=lambda: "fake TensorRT error"
    )  # type: ignore[arg-type]
    return pipeline, fakes


def random_batch(n: int, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, h, w), dtype=np.float32)


# -- the execution pipeline ------------------------------------------------------------


def test_pipeline_splits_batches_over_contexts_with_their_own_profiles(fake_cuda: FakeCuda) -> None:
    pipeline, contexts = make_pipeline(fake_cuda)
    assert [c.profile for c in contexts] == [0, 1]  # one optimization profile per context
    assert all(fake_cuda.kinds[c.addresses["input"]] == "device" for c in contexts)
    batch = random_batch(7)
    np.testing.assert_array_equal(pipeline.run(batch), expected(batch))
    assert pipeline.stats["chunks"] == 3  # 3 + 3 + 1
    assert [c.kernels for c in contexts] == [
        2,
        1,
    ]  # chunks 0 and 2 on context 0, chunk 1 on context 1
    assert fake_cuda.copies == 6  # one H2D and one D2H per chunk


def test_cuda_graph_captured_after_one_warm_up_then_replayed(fake_cuda: FakeCuda) -> None:
    pipeline, contexts = make_pipeline(fake_cuda)
    for call in range(4):
        batch = random_batch(6, seed=call)
        np.testing.assert_array_equal(pipeline.run(batch), expected(batch))
        if call == 0:  # warm-up: plain enqueues only
            assert pipeline.stats["captures"] == 0 and fake_cuda.launches == 0
    # call 0 warm-up; call 1 captures (one per context) and launches; calls 2-3 replay
    assert pipeline.stats["captures"] == 2
    assert pipeline.stats["graph_launches"] == 6 == fake_cuda.launches
    assert [c.kernels for c in contexts] == [4, 4]  # every call really computed
    assert pipeline.graph_state == "on"


def test_shape_change_drops_the_graph_and_warms_up_again(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda, contexts=1)
    for _ in range(3):
        pipeline.run(random_batch(3))
    assert pipeline.stats["captures"] == 1 and len(fake_cuda.execs) == 1
    small = random_batch(3, h=5, w=7)
    np.testing.assert_array_equal(
        pipeline.run(small), expected(small)
    )  # plain enqueue, graph dropped
    assert len(fake_cuda.execs) == 0 and pipeline.stats["captures"] == 1
    np.testing.assert_array_equal(
        pipeline.run(small), expected(small)
    )  # captured for the new shape
    assert pipeline.stats["captures"] == 2
    big = random_batch(3, seed=5)
    np.testing.assert_array_equal(pipeline.run(big), expected(big))


def test_partial_last_chunk_gets_its_own_shape(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda, contexts=1)
    for seed in range(4):
        batch = random_batch(4, seed=seed)  # chunks of 3 and 1 alternate on one context
        np.testing.assert_array_equal(pipeline.run(batch), expected(batch))
    assert pipeline.stats["captures"] == 0  # the shape never repeats back to back: no capture


def test_capture_failure_falls_back_to_plain_enqueue(fake_cuda: FakeCuda) -> None:
    fake_cuda.fail["cudaStreamEndCapture"] = Status.cudaErrorStreamCaptureInvalidated
    pipeline, contexts = make_pipeline(fake_cuda)
    for seed in range(4):
        batch = random_batch(6, seed=seed)
        np.testing.assert_array_equal(pipeline.run(batch), expected(batch))
    assert pipeline.graph_state.startswith(
        "off (capture failed on context 0: cudaStreamEndCapture() failed"
    )
    assert pipeline.stats["captures"] == 0 and fake_cuda.launches == 0
    assert [c.kernels for c in contexts] == [4, 4]
    assert all(r is None for r in fake_cuda.recording.values())  # no stream left capturing


def test_graphs_can_be_switched_off(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda, graphs=False)
    for seed in range(3):
        pipeline.run(random_batch(6, seed=seed))
    assert pipeline.graph_state == "off" and pipeline.stats["captures"] == 0


def test_execute_failure_raises_and_leaves_the_pipeline_usable(fake_cuda: FakeCuda) -> None:
    pipeline, contexts = make_pipeline(fake_cuda)
    contexts[1].fail_execute = True
    with pytest.raises(
        VdsrError, match="execute_async_v3 failed on execution context 1: fake TensorRT error"
    ):
        pipeline.run(random_batch(6))
    contexts[1].fail_execute = False
    batch = random_batch(6, seed=1)
    np.testing.assert_array_equal(pipeline.run(batch), expected(batch))


def test_rejected_shape_is_invalid_input(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda)
    with pytest.raises(InvalidInputError, match="rejected input shape"):
        pipeline.run(random_batch(2, h=9))


def test_cuda_errors_propagate(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda)
    fake_cuda.fail["cudaStreamSynchronize"] = Status.cudaErrorInvalidValue
    with pytest.raises(
        CudaError,
        match=r"cudaStreamSynchronize\(stream 0x[0-9a-f]+\) failed: cudaErrorInvalidValue",
    ):
        pipeline.run(random_batch(6))


def test_release_frees_everything_and_reports_the_first_error(fake_cuda: FakeCuda) -> None:
    pipeline, _ = make_pipeline(fake_cuda)
    for _ in range(3):
        pipeline.run(random_batch(6))
    assert (
        len(fake_cuda.memory) == 8 and len(fake_cuda.execs) == 2
    )  # 2 pinned + 2 device per context
    fake_cuda.fail["cudaFree"] = Status.cudaErrorInvalidValue
    with pytest.raises(CudaError, match="cudaFree"):
        pipeline.release()
    assert fake_cuda.memory == {} and fake_cuda.execs == {} and fake_cuda.recording == {}
    pipeline.release()  # idempotent
    with pytest.raises(VdsrError, match="released"):
        pipeline.run(random_batch(1))


def test_failed_construction_frees_what_it_allocated(fake_cuda: FakeCuda) -> None:
    fake_cuda.fail["cudaMalloc"] = Status.cudaErrorMemoryAllocation
    with pytest.raises(
        CudaError, match=r"cudaMalloc\(768 bytes\) failed: cudaErrorMemoryAllocation"
    ):
        make_pipeline(fake_cuda)
    assert fake_cuda.memory == {} and fake_cuda.recording == {}
    del fake_cuda.fail["cudaMalloc"]
    contexts = [FakeContext(fake_cuda), FakeContext(fake_cuda)]
    contexts[1].reject_profile = True
    with pytest.raises(VdsrError, match="optimization profile 1"):
        ExecutionPipeline(contexts, MAX_SHAPE)  # type: ignore[arg-type]
    assert fake_cuda.memory == {} and fake_cuda.recording == {}


# -- the runner ------------------------------------------------------------------------


def write_engine(
    folder: Path, *, gpu: DeviceInfo = GPU, version: str = TRT_VERSION, blob: bytes = b"serialized"
) -> Path:
    config = EngineBuildConfig(
        profile=profile_for_tiles(TileConfig(tile=8, halo=2), MAX_SHAPE[0]), contexts=2
    )
    key = engine_key("ab" * 32, config, gpu, version)
    path = folder / trt_cache.engine_file_name(key)
    path.write_bytes(blob)
    sidecar = EngineSidecar(
        engine_file=path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        engine_bytes=len(blob),
        onnx_file="tiny.onnx",
        onnx_sha256=key.onnx_sha256,
        weights_sha256=None,
        precision="fp16",
        profiles=key.profiles,
        tensorrt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        workspace_bytes=key.workspace_bytes,
        optimization_level=key.optimization_level,
        tf32=True,
        build_seconds=1.0,
        layers=3,
        fp16_layers=2,
    )
    write_sidecar(sidecar_path(path), sidecar)
    return path


def test_runner_needs_engine_and_sidecar(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="engine not found"):
        TensorRTRunner(tmp_path / "missing.engine")
    bare = tmp_path / "bare.engine"
    bare.write_bytes(b"x")
    with pytest.raises(EngineMismatchError, match="sidecar is missing"):
        TensorRTRunner(bare)
    path = write_engine(tmp_path)
    with pytest.raises(ConfigError, match="device"):
        TensorRTRunner(path, device=-1)
    with pytest.raises(ConfigError, match="contexts"):
        TensorRTRunner(path, contexts=0)


def test_runner_profile_splits_batches_but_bounds_tiles(tmp_path: Path) -> None:
    runner = TensorRTRunner(write_engine(tmp_path))
    assert runner.engine_profile.max == MAX_SHAPE
    assert runner.profile.max == (MAX_SPLIT_BATCH, 1, 8, 8)
    assert runner.profile.contains((100, 1, 8, 8)) and not runner.profile.contains((1, 1, 9, 8))
    info = runner.info
    assert info.label == "tensorrt:cuda:0:fp16"
    assert info.details["contexts"] == 2 and info.details["cuda_graphs"] == "on"


@pytest.mark.skipif(trt_library.tensorrt_available(), reason="TensorRT is installed here")
def test_runner_without_tensorrt_says_so_in_one_sentence(tmp_path: Path) -> None:
    runner = TensorRTRunner(write_engine(tmp_path))
    with pytest.raises(BackendUnavailableError) as raised, runner:
        pass
    message = str(raised.value)
    assert message.startswith(
        "TensorRT is not usable here (not installed): pip install 'vdsr-deploy[tensorrt-cu13]'"
    )
    assert "\n" not in message


def fake_tensorrt(
    fake: FakeCuda, *, blob: bytes = b"serialized", profiles: int = 2
) -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = TRT_VERSION  # type: ignore[attr-defined]
    module.Builder = object  # type: ignore[attr-defined]
    module.TensorIOMode = SimpleNamespace(INPUT="input-mode", OUTPUT="output-mode")  # type: ignore[attr-defined]
    module.DataType = SimpleNamespace(FLOAT="float", HALF="half")  # type: ignore[attr-defined]

    class ILogger:
        def __init__(self) -> None:
            pass

    class Engine:
        num_io_tensors = 2
        num_optimization_profiles = profiles

        def get_tensor_name(self, index: int) -> str:
            return ["input", "output"][index]

        def get_tensor_mode(self, name: str) -> str:
            return "input-mode" if name == "input" else "output-mode"

        def get_tensor_dtype(self, name: str) -> str:
            return "float"

        def create_execution_context(self) -> FakeContext:
            return FakeContext(fake)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == blob else None

    module.ILogger = ILogger  # type: ignore[attr-defined]
    module.Runtime = Runtime  # type: ignore[attr-defined]
    return module


@pytest.fixture
def with_fake_tensorrt(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(fake_cuda))
    monkeypatch.setattr(trt_library, "_SHARED_LOGGER", {})
    return fake_cuda


def test_runner_end_to_end_on_fakes(tmp_path: Path, with_fake_tensorrt: FakeCuda) -> None:
    runner = TensorRTRunner(write_engine(tmp_path))
    batch = random_batch(8)  # more than the engine's max batch of 3: split
    with runner:
        for _ in range(3):
            np.testing.assert_array_equal(runner.infer(batch), expected(batch))
        details = runner.info.details
        assert details["contexts"] == 2 and details["cuda_graphs"] == "on"
        assert details["stats"]["captures"] >= 1
        with pytest.raises(InvalidInputError, match="outside the profile"):
            runner.infer(random_batch(1, h=16))
    assert with_fake_tensorrt.memory == {} and with_fake_tensorrt.recording == {}
    with pytest.raises(VdsrError, match="outside its 'with' block"):
        runner.infer(batch)


def test_runner_uses_fewer_contexts_when_asked(
    tmp_path: Path, with_fake_tensorrt: FakeCuda
) -> None:
    with TensorRTRunner(write_engine(tmp_path), contexts=1, cuda_graphs=False) as runner:
        batch = random_batch(5)
        np.testing.assert_array_equal(runner.infer(batch), expected(batch))
        assert runner.info.details["contexts"] == 1 and runner.info.details["cuda_graphs"] == "off"


def test_runner_refuses_an_engine_for_another_gpu_or_tensorrt(
    tmp_path: Path, with_fake_tensorrt: FakeCuda
) -> None:
    other = DeviceInfo(index=0, name="NVIDIA A100-SXM4-40GB", compute_capability=(8, 0))
    runner = TensorRTRunner(write_engine(tmp_path, gpu=other, version="10.8.0.43"))
    with pytest.raises(EngineMismatchError) as raised, runner:
        pass
    message = str(raised.value)
    assert (
        "built for GPU NVIDIA A100-SXM4-40GB (compute 8.0) but this GPU is NVIDIA Fake GPU "
        "(compute 8.9)" in message
    )
    assert "built with TensorRT 10.8.0.43 but this is TensorRT 10.13.0.35" in message


def test_runner_refuses_an_engine_that_differs_from_its_sidecar(
    tmp_path: Path, with_fake_tensorrt: FakeCuda
) -> None:
    path = write_engine(tmp_path)
    path.write_bytes(b"tampered")
    with (
        pytest.raises(EngineMismatchError, match="does not match its sidecar"),
        TensorRTRunner(path),
    ):
        pass


def test_runner_reports_a_failed_deserialization(
    tmp_path: Path, fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(fake_cuda, blob=b"something else"))
    monkeypatch.setattr(trt_library, "_SHARED_LOGGER", {})
    with (
        pytest.raises(EngineMismatchError, match="could not deserialize it"),
        TensorRTRunner(write_engine(tmp_path)),
    ):
        pass
    assert fake_cuda.memory == {}
