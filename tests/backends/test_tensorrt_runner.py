"""The TensorRT runner without a GPU: batch splitting, I/O checks, sidecar checks, the
missing-TensorRT path, and the whole execution pipeline (contexts, streams, owned device
buffers, padding, ordering between streams, CUDA graph capture/replay/fallback, teardown)
against fake device work whose "device memory" is torch CPU tensors and a fake execution
context that computes 2 * x + 1 at the bound addresses."""

from __future__ import annotations

import contextlib
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
import torch

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.tensorrt import library as trt_library
from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import engine_file_name, engine_key, sidecar_path
from vdsr_deploy.backends.tensorrt.runner import (
    MAX_SPLIT_BATCH,
    ExecutionPipeline,
    TensorRTRunner,
    check_engine_io,
    split_batch,
)
from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar, write_sidecar
from vdsr_deploy.errors import (
    BackendUnavailableError,
    ConfigError,
    EngineMismatchError,
    InvalidInputError,
    VdsrError,
)
from vdsr_deploy.io_names import profile_for_tiles
from vdsr_deploy.planes.tiling import TileConfig

GPU = DeviceInfo(index=0, name="NVIDIA Fake GPU", compute_capability=(8, 9), multiprocessors=1)
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


# -- fakes: device queries (cuda-python), device work (DeviceOps), TensorRT -----------


class Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1


OK = Status.cudaSuccess


class FakeCuda:
    """The cuda-python calls the runner makes at activation: which GPU, which CUDA."""

    cudaError_t = Status

    def cudaGetErrorName(self, status: Status) -> tuple[Status, bytes]:
        return OK, Status(status).name.encode()

    def cudaGetErrorString(self, status: Status) -> tuple[Status, bytes]:
        return OK, b"fake"

    def cudaGetDeviceCount(self) -> tuple[Status, int]:
        return OK, 1

    def cudaSetDevice(self, device: int) -> tuple[Status]:
        return (OK,)

    def cudaRuntimeGetVersion(self) -> tuple[Status, int]:
        return OK, 12080

    def cudaGetDeviceProperties(self, device: int) -> tuple[Status, Any]:
        name = GPU.name.encode() + b"\0"
        major, minor = GPU.compute_capability
        return OK, SimpleNamespace(
            name=name, major=major, minor=minor, totalGlobalMem=1, multiProcessorCount=1
        )


class FakeStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle


class FakeGraph:
    def __init__(self, ops: FakeOps, work: list[Callable[[], None]]) -> None:
        self.ops, self.work = ops, work

    def launch(self, stream: FakeStream) -> None:
        self.ops.launches += 1
        self.ops.log.append(("launch", stream.handle))
        for work in self.work:
            self.ops.run_or_record(stream.handle, work)


class FakeOps:
    """Device work on the CPU: "device" buffers are torch CPU tensors, streams run their
    work at once unless capturing, graphs replay what was recorded. ``log`` keeps the
    order of waits, copies, executions and launches per stream."""

    device = "cpu"

    def __init__(self) -> None:
        self.caller = FakeStream(1)
        self.recording: dict[int, list[Callable[[], None]] | None] = {1: None}
        self.log: list[tuple[str, int] | tuple[str, int, int]] = []
        self.syncs = 0
        self.launches = 0
        self.fail_capture: str | None = None
        self.fail_sync: str | None = None
        self._next = 100

    def stream_of(self, stream: Any) -> FakeStream:
        return self.caller

    def new_stream(self) -> FakeStream:
        self._next += 1
        self.recording[self._next] = None
        return FakeStream(self._next)

    def zeros(self, count: int) -> torch.Tensor:
        return torch.zeros(count, dtype=torch.float32)

    def run_or_record(self, stream: int, work: Callable[[], None]) -> None:
        recording = self.recording[stream]
        if recording is None:
            work()
        else:
            recording.append(work)

    def empty_like(self, tensor: torch.Tensor, stream: FakeStream) -> torch.Tensor:
        self.log.append(("allocate", stream.handle))
        return torch.empty_like(tensor)

    def copy(self, target: torch.Tensor, source: torch.Tensor, stream: FakeStream) -> None:
        self.log.append(("copy", stream.handle))
        self.run_or_record(stream.handle, lambda: target.copy_(source))

    def wait(self, stream: FakeStream, other: FakeStream) -> None:
        self.log.append(("wait", stream.handle, other.handle))

    def keep_alive(self, tensor: torch.Tensor, stream: FakeStream) -> None:
        pass

    def capture(self, stream: FakeStream, enqueue: Callable[[], None]) -> FakeGraph:
        if self.fail_capture is not None:
            raise RuntimeError(self.fail_capture)
        self.recording[stream.handle] = []
        try:
            enqueue()
        finally:
            work, self.recording[stream.handle] = self.recording[stream.handle], None
        return FakeGraph(self, work or [])

    def synchronize(self, stream: FakeStream) -> None:
        self.syncs += 1
        if self.fail_sync is not None:
            raise RuntimeError(self.fail_sync)

    def on_device(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


class FakeContext:
    """An execution context whose engine computes 2 * x + 1 on the bound addresses."""

    def __init__(self, ops: FakeOps) -> None:
        self.ops = ops
        self.profile: int | None = None
        self.shape: tuple[int, ...] | None = None
        self.addresses: dict[str, int] = {}
        self.kernels: list[tuple[int, ...]] = []  # shapes that really ran (live or replayed)
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
        shape, count = self.shape, math.prod(self.shape)
        source, target = self.addresses["input"], self.addresses["output"]
        self.ops.log.append(("execute", stream))

        def kernel() -> None:
            x = np.ctypeslib.as_array((ctypes.c_float * count).from_address(source))
            y = np.ctypeslib.as_array((ctypes.c_float * count).from_address(target))
            y[:] = 2 * x + 1
            self.kernels.append(shape)

        self.ops.run_or_record(stream, kernel)
        return True


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    fake = FakeCuda()
    monkeypatch.setattr(cuda, "runtime", lambda: fake)
    return fake


def make_pipeline(
    contexts: int = 2, *, graphs: bool = True, ops: FakeOps | None = None
) -> tuple[ExecutionPipeline, list[FakeContext], FakeOps]:
    ops = ops or FakeOps()
    fakes = [FakeContext(ops) for _ in range(contexts)]
    pipeline = ExecutionPipeline(
        fakes,  # type: ignore[arg-type]
        MAX_SHAPE,
        ops,
        cuda_graphs=graphs,
        errors=lambda: "fake TensorRT error",
    )
    return pipeline, fakes, ops


def random_batch(n: int, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, h, w), dtype=np.float32)


def run(pipeline: ExecutionPipeline, ops: FakeOps, batch: np.ndarray) -> np.ndarray:
    result = pipeline.run(torch.from_numpy(batch), ops.caller)
    return result.numpy()


# -- the execution pipeline ------------------------------------------------------------


def test_chunks_go_round_robin_to_contexts_with_their_own_profiles_and_buffers() -> None:
    pipeline, contexts, ops = make_pipeline()
    assert [c.profile for c in contexts] == [0, 1]  # one optimization profile per context
    assert len({c.addresses["input"] for c in contexts} | {c.addresses["output"] for c in contexts}) == 4
    batch = random_batch(7)
    np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))
    assert pipeline.stats["chunks"] == 3  # 3 + 3 + 1
    # chunks 0 and 2 on context 0, chunk 1 on context 1; the last one at its own batch, 1
    assert [c.kernels for c in contexts] == [[(3, 1, 8, 8), (1, 1, 8, 8)], [(3, 1, 8, 8)]]
    one = random_batch(1, seed=1)
    np.testing.assert_array_equal(run(pipeline, ops, one), expected(one))
    assert [len(c.kernels) for c in contexts] == [2, 2]  # round robin goes on across calls


def test_addresses_never_change_and_nothing_waits_on_the_host() -> None:
    pipeline, contexts, ops = make_pipeline()
    bound = [dict(c.addresses) for c in contexts]
    syncs = ops.syncs  # construction syncs once per context (profile switch)
    for seed in range(5):
        batch = random_batch(2 + seed % 4, h=4 + seed, w=8, seed=seed)
        np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))
    assert [c.addresses for c in contexts] == bound
    assert ops.syncs == syncs


def test_each_chunk_is_ordered_after_the_caller_and_the_caller_after_it() -> None:
    pipeline, _, ops = make_pipeline()
    ops.log.clear()
    run(pipeline, ops, random_batch(5))
    first, second = 101, 102
    assert ops.log == [
        ("allocate", 1),  # the output belongs to the caller's stream
        ("wait", first, 1),
        ("copy", first),
        ("execute", first),
        ("copy", first),
        ("wait", second, 1),
        ("copy", second),
        ("execute", second),
        ("copy", second),
        ("wait", 1, first),
        ("wait", 1, second),
    ]


def test_cuda_graph_captured_after_one_warm_up_then_replayed() -> None:
    pipeline, contexts, ops = make_pipeline()
    for call in range(4):
        batch = random_batch(5, seed=call)  # a full chunk and a padded one per call
        np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))
        if call == 0:  # warm-up: plain enqueues only
            assert pipeline.stats["captures"] == 0 and ops.launches == 0
    # call 0 warm-up; call 1 captures (one per context) and launches; calls 2-3 replay
    assert pipeline.stats["captures"] == 2
    assert pipeline.stats["graph_launches"] == 6 == ops.launches
    assert [len(c.kernels) for c in contexts] == [4, 4]  # every call really computed
    assert pipeline.graph_state == "on"


def test_partial_chunks_are_never_padded_and_each_shape_keeps_its_graph() -> None:
    """Issue 22 (defect 2): a partial chunk used to be padded to the full batch (3 rows
    computed for 1 here); now it runs at its own batch, and the two shapes alternating on
    one context each keep their graph (no recapture when the shape changes back)."""
    pipeline, contexts, ops = make_pipeline(contexts=1)
    for seed in range(4):
        batch = random_batch(4, seed=seed)  # chunks of 3 and 1 alternate on one context
        np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))
    assert sum(shape[0] for shape in contexts[0].kernels) == 16  # rows computed == rows asked
    assert set(contexts[0].kernels) == {(3, 1, 8, 8), (1, 1, 8, 8)}
    # call 0 warms both shapes up, call 1 captures both, calls 2-3 replay them
    assert pipeline.stats["captures"] == 2 and pipeline.stats["graph_launches"] == 6


def test_shape_change_drops_the_graph_and_warms_up_again() -> None:
    pipeline, _, ops = make_pipeline(contexts=1)
    for _ in range(3):
        run(pipeline, ops, random_batch(3))
    assert pipeline.stats["captures"] == 1
    small = random_batch(3, h=5, w=7)
    np.testing.assert_array_equal(run(pipeline, ops, small), expected(small))  # warm-up
    assert pipeline.stats["captures"] == 1
    np.testing.assert_array_equal(run(pipeline, ops, small), expected(small))  # captured
    assert pipeline.stats["captures"] == 2
    big = random_batch(3, seed=5)
    np.testing.assert_array_equal(run(pipeline, ops, big), expected(big))


def test_capture_failure_falls_back_to_plain_enqueue() -> None:
    ops = FakeOps()
    ops.fail_capture = "operation not permitted when stream is capturing"
    pipeline, contexts, _ = make_pipeline(ops=ops)
    for seed in range(4):
        batch = random_batch(6, seed=seed)
        np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))
    assert pipeline.graph_state == (
        "off (capture failed on context 0: operation not permitted when stream is capturing)"
    )
    assert pipeline.stats["captures"] == 0 and ops.launches == 0
    assert [len(c.kernels) for c in contexts] == [4, 4]


def test_graphs_can_be_switched_off() -> None:
    pipeline, _, ops = make_pipeline(graphs=False)
    for seed in range(3):
        run(pipeline, ops, random_batch(6, seed=seed))
    assert pipeline.graph_state == "off" and pipeline.stats["captures"] == 0


def test_execute_failure_raises_waits_for_the_streams_and_leaves_the_pipeline_usable() -> None:
    pipeline, contexts, ops = make_pipeline()
    contexts[1].fail_execute = True
    syncs = ops.syncs
    with pytest.raises(
        VdsrError, match="execute_async_v3 failed on execution context 1: fake TensorRT error"
    ):
        run(pipeline, ops, random_batch(6))
    assert ops.syncs == syncs + 2  # no copy may still target our buffers
    contexts[1].fail_execute = False
    batch = random_batch(6, seed=1)
    np.testing.assert_array_equal(run(pipeline, ops, batch), expected(batch))


def test_shapes_outside_the_profile_are_invalid_input() -> None:
    pipeline, contexts, ops = make_pipeline()
    with pytest.raises(InvalidInputError, match=r"input 9x8 is larger than .* \(8x8\)"):
        run(pipeline, ops, random_batch(2, h=9))
    contexts[0].set_input_shape = lambda name, shape: False  # type: ignore[method-assign]
    with pytest.raises(InvalidInputError, match="rejected input shape"):
        run(pipeline, ops, random_batch(2, h=7))


def test_release_waits_for_every_stream_and_reports_the_first_error() -> None:
    pipeline, _, ops = make_pipeline()
    for _ in range(3):
        run(pipeline, ops, random_batch(6))
    ops.fail_sync = "an illegal memory access was encountered"
    syncs = ops.syncs
    with pytest.raises(RuntimeError, match="illegal memory access"):
        pipeline.release()
    assert ops.syncs == syncs + 2  # every stream was attempted
    pipeline.release()  # idempotent
    with pytest.raises(VdsrError, match="released"):
        run(pipeline, ops, random_batch(1))


def test_failed_construction_releases_what_it_made() -> None:
    ops = FakeOps()
    contexts = [FakeContext(ops), FakeContext(ops)]
    contexts[1].reject_profile = True
    with pytest.raises(VdsrError, match="optimization profile 1"):
        ExecutionPipeline(contexts, MAX_SHAPE, ops)  # type: ignore[arg-type]


# -- the runner ------------------------------------------------------------------------


def write_engine(
    folder: Path, *, gpu: DeviceInfo = GPU, version: str = TRT_VERSION, blob: bytes = b"serialized"
) -> Path:
    config = EngineBuildConfig(
        profile=profile_for_tiles(TileConfig(tile=8, halo=2), MAX_SHAPE[0]), contexts=2
    )
    key = engine_key("ab" * 32, config, gpu, version, cuda_major=12)
    path = folder / engine_file_name(key)
    path.write_bytes(blob)
    sidecar = EngineSidecar.from_key(
        key,
        engine_file=path.name,
        engine_sha256=hashlib.sha256(blob).hexdigest(),
        engine_bytes=len(blob),
        onnx_file="tiny.onnx",
        weights_sha256=None,
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
    ops: FakeOps, *, blob: bytes = b"serialized", profiles: int = 2
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
            return FakeContext(ops)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            return Engine() if data == blob else None

    module.ILogger = ILogger  # type: ignore[attr-defined]
    module.Runtime = Runtime  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_ops(fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch) -> FakeOps:
    """TensorRT (fake) on the fake GPU; the device work the runner gets to do."""
    ops = FakeOps()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(ops))
    monkeypatch.setattr(trt_library, "_SHARED_LOGGER", {})
    return ops


def test_runner_end_to_end_on_fakes(tmp_path: Path, fake_ops: FakeOps) -> None:
    runner = TensorRTRunner(write_engine(tmp_path), device_ops=fake_ops)
    batch = random_batch(8)  # more than the engine's max batch of 3: split
    with runner:
        assert runner.tensor_device == "cpu"  # the fake's; cuda:N with TorchCudaOps
        for _ in range(3):
            np.testing.assert_array_equal(runner.infer(batch), expected(batch))
            on_device = runner.infer_tensor(torch.from_numpy(batch))
            np.testing.assert_array_equal(on_device.numpy(), expected(batch))
        details = runner.info.details
        assert details["contexts"] == 2 and details["cuda_graphs"] == "on"
        assert details["stats"]["captures"] == 4  # per context, one per chunk shape: 3x8x8, 2x8x8
        with pytest.raises(InvalidInputError, match="outside the profile"):
            runner.infer(random_batch(1, h=16))
    assert all(r is None for r in fake_ops.recording.values())
    with pytest.raises(VdsrError, match="outside its 'with' block"):
        runner.infer(batch)


def test_runner_without_device_ops_binds_cuda_buffers(tmp_path: Path) -> None:
    runner = TensorRTRunner(write_engine(tmp_path), device=1)
    assert runner.tensor_device == "cuda:1" and runner.info.device == "cuda:1"


def test_runner_uses_fewer_contexts_when_asked(tmp_path: Path, fake_ops: FakeOps) -> None:
    runner = TensorRTRunner(
        write_engine(tmp_path), contexts=1, cuda_graphs=False, device_ops=fake_ops
    )
    with runner:
        batch = random_batch(5)
        np.testing.assert_array_equal(runner.infer(batch), expected(batch))
        assert runner.info.details["contexts"] == 1 and runner.info.details["cuda_graphs"] == "off"


def test_runner_refuses_an_engine_for_another_gpu_or_tensorrt(
    tmp_path: Path, fake_ops: FakeOps
) -> None:
    other = DeviceInfo(index=0, name="NVIDIA A100-SXM4-40GB", compute_capability=(8, 0))
    runner = TensorRTRunner(
        write_engine(tmp_path, gpu=other, version="10.8.0.43"), device_ops=fake_ops
    )
    with pytest.raises(EngineMismatchError) as raised, runner:
        pass
    message = str(raised.value)
    assert (
        "built for GPU NVIDIA A100-SXM4-40GB (compute 8.0) but this GPU is NVIDIA Fake GPU "
        "(compute 8.9)" in message
    )
    assert "built with TensorRT 10.8.0.43 but this is TensorRT 10.13.0.35" in message


def test_runner_refuses_an_engine_for_another_cuda_major(
    tmp_path: Path, fake_ops: FakeOps, fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fake_cuda, "cudaRuntimeGetVersion", lambda: (OK, 13000))
    runner = TensorRTRunner(write_engine(tmp_path), device_ops=fake_ops)
    with pytest.raises(EngineMismatchError, match="built for CUDA 12 but this is CUDA 13"), runner:
        pass


def test_runner_refuses_an_engine_that_differs_from_its_sidecar(
    tmp_path: Path, fake_ops: FakeOps
) -> None:
    path = write_engine(tmp_path)
    path.write_bytes(b"tampered")
    with (
        pytest.raises(EngineMismatchError, match="does not match its sidecar"),
        TensorRTRunner(path, device_ops=fake_ops),
    ):
        pass


def test_runner_reports_a_failed_deserialization(
    tmp_path: Path, fake_cuda: FakeCuda, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = FakeOps()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(ops, blob=b"something else"))
    monkeypatch.setattr(trt_library, "_SHARED_LOGGER", {})
    with (
        pytest.raises(EngineMismatchError, match="could not deserialize it"),
        TensorRTRunner(write_engine(tmp_path), device_ops=ops),
    ):
        pass
