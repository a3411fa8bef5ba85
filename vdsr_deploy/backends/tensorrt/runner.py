"""TensorRT runner: executes a built engine, never builds one (see :mod:`vdsr_deploy.backends.tensorrt.builder`).

Before deserializing, the engine's JSON sidecar must match this GPU and TensorRT version
and the engine file's hash (else :class:`~vdsr_deploy.errors.EngineMismatchError`).

Execution (:class:`ExecutionPipeline`): one execution context per optimization profile of
the engine (a dynamic-shape profile serves one context at a time, so the builder makes
identical copies), each with its own CUDA stream and its own input/output buffers: torch
CUDA tensors the runner owns, sized for the profile's max shape and bound once with
``set_tensor_address`` (their addresses never change, so captured graphs stay valid).

The device form (:meth:`TensorRTRunner.infer_tensor`) takes a float32 CUDA tensor and a
stream and only enqueues: the batch is cut into chunks of the profile's max batch, each
chunk goes to the next context (round robin, across calls too) as device copy-in ->
execute -> device copy-out on that context's stream, ordered after the caller's stream
and with the caller's stream ordered after it, with no host synchronisation. A partial
chunk runs at its own batch (never padded: padding computed up to batch-size times the
work, issue 22); the device pipeline fills batches across bands, so a tile size has
mostly full batches and one partial one per image. Contexts overlap when a call carries
several max-batches, or when calls come from different streams (one caller stream is
sequential by definition). The host form
(:meth:`TensorRTRunner.infer`, numpy) is a thin wrapper: upload, device form, download.

Per context: ``set_input_shape`` -> ``infer_shapes`` -> ``set_tensor_address`` ->
``execute_async_v3(stream)``. CUDA graphs: the first enqueue of a shape is a plain one (the
warm-up TensorRT needs before capture); the next one with the same shape is captured into
a graph and launched, and later ones replay it (after ``set_input_shape`` back to that
shape when the context was in another). Each context keeps the graphs of its
:data:`MAX_GRAPHS_PER_CONTEXT` most recent shapes. If a capture fails, graphs are switched off for this
runner and plain enqueues carry on (``info.details`` says why).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.tensorrt.keys import describe_profiles, sidecar_path
from vdsr_deploy.backends.tensorrt.library import require_tensorrt, shared_tensorrt_logger
from vdsr_deploy.backends.tensorrt.matching import environment_reasons
from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar, read_sidecar
from vdsr_deploy.backends.tensorrt.streams import DeviceOps, Graph, Stream, TorchCudaOps
from vdsr_deploy.errors import ConfigError, EngineMismatchError, InvalidInputError, VdsrError
from vdsr_deploy.io_names import CHANNELS, INPUT_NAME, OUTPUT_NAME, Shape, ShapeProfile
from vdsr_deploy.runner import Runner, RunnerInfo

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

_LOG = logging.getLogger(__name__)

# The runner splits any batch into chunks the engine takes; this only bounds validation.
MAX_SPLIT_BATCH = 2**31 - 1
# CUDA graphs kept per execution context (least recently used dropped): a tile size needs
# two (the full batch and an image's last, partial batch), whole images one per size.
MAX_GRAPHS_PER_CONTEXT = 4
FLOAT32_BYTES = 4


def split_batch(count: int, max_batch: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``max_batch`` covering ``count`` items."""
    if count < 1 or max_batch < 1:
        raise InvalidInputError(
            f"expected count >= 1 and max_batch >= 1, got {count} and {max_batch}"
        )
    return [(start, min(start + max_batch, count)) for start in range(0, count, max_batch)]


def check_engine_io(
    inputs: Sequence[str], outputs: Sequence[str], dtypes: Mapping[str, str]
) -> None:
    """The engine must have exactly our tensors (names from io_names), both float32."""
    if list(inputs) != [INPUT_NAME] or list(outputs) != [OUTPUT_NAME]:
        raise EngineMismatchError(
            f"expected an engine with input {INPUT_NAME!r} and output {OUTPUT_NAME!r}, got inputs "
            f"{list(inputs)} and outputs {list(outputs)}"
        )
    wrong = {name: dtype for name, dtype in dtypes.items() if dtype != "FLOAT"}
    if wrong:
        raise EngineMismatchError(f"expected float32 engine I/O, got {wrong}")


def _dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[index]) for index in range(len(dims)))


@dataclass
class _Slot:
    """One execution context with its profile, stream, owned device buffers (flat, sized
    for the profile's max shape: their addresses never change) and CUDA graph state."""

    index: int
    context: trt.IExecutionContext | None
    stream: Stream
    input: torch.Tensor
    output: torch.Tensor
    shape: Shape | None = None
    warm: set[Shape] = field(default_factory=set)
    graphs: OrderedDict[Shape, Graph] = field(default_factory=OrderedDict)


class ExecutionPipeline:
    """Execution contexts in flight on their own streams (see the module docstring).

    ``contexts[i]`` gets optimization profile ``i``. ``max_shape`` is the profile's max
    (it sizes the buffers; chunks are at most its batch, never padded). ``ops`` does the device
    work (:class:`~vdsr_deploy.backends.tensorrt.streams.TorchCudaOps` on a GPU).
    ``errors`` returns TensorRT's recent error messages for our exceptions.
    """

    def __init__(
        self,
        contexts: Sequence[trt.IExecutionContext],
        max_shape: Shape,
        ops: DeviceOps,
        *,
        cuda_graphs: bool = True,
        errors: Callable[[], str] | None = None,
    ) -> None:
        if not contexts:
            raise ConfigError("an execution pipeline needs at least one execution context")
        self._max_shape = max_shape
        self._ops = ops
        self._errors = errors or (lambda: "no TensorRT error message")
        self._graphs = cuda_graphs
        self.graph_state = "on" if cuda_graphs else "off"
        self.stats = {"enqueues": 0, "captures": 0, "graph_launches": 0, "chunks": 0}
        self._slots: list[_Slot] = []
        self._next = 0
        try:
            for index, context in enumerate(contexts):
                self._slots.append(self._make_slot(index, context))
        except BaseException:
            self.release(raise_errors=False)
            raise

    @property
    def contexts(self) -> int:
        return len(self._slots)

    def _make_slot(self, index: int, context: trt.IExecutionContext) -> _Slot:
        count = math.prod(self._max_shape)
        stream = self._ops.new_stream()
        slot = _Slot(
            index=index,
            context=context,
            stream=stream,
            input=self._ops.zeros(count),
            output=self._ops.zeros(count),
        )
        if not context.set_optimization_profile_async(index, stream.handle):
            raise VdsrError(
                f"TensorRT could not give optimization profile {index} to execution context "
                f"{index}: {self._errors()}"
            )
        self._ops.synchronize(stream)
        for name, buffer in ((INPUT_NAME, slot.input), (OUTPUT_NAME, slot.output)):
            if not context.set_tensor_address(name, buffer.data_ptr()):
                raise VdsrError(
                    f"TensorRT rejected the address of {name!r} on context {index}: "
                    f"{self._errors()}"
                )
        return slot

    # -- running ------------------------------------------------------------------------

    def run(self, batch: torch.Tensor, caller: Stream) -> torch.Tensor:
        """Enqueue a float32 ``(N, 1, H, W)`` device batch (H, W within the profile) and
        return its output tensor; everything is ordered after ``caller``'s queued work and
        ``caller`` is ordered after the result. No host synchronisation.

        The batch is cut into chunks of the profile's max batch. Each chunk goes to the
        next context (round robin, also across calls): copy into the context's input
        buffer, enqueue at the chunk's own batch, copy the rows out, all on that context's
        stream."""
        if not self._slots:
            raise VdsrError("the TensorRT execution pipeline was released")
        output = self._ops.empty_like(batch, caller)
        count, height, width = int(batch.shape[0]), int(batch.shape[2]), int(batch.shape[3])
        if height > self._max_shape[2] or width > self._max_shape[3]:
            raise InvalidInputError(
                f"input {height}x{width} is larger than the engine's profile allows "
                f"({self._max_shape[2]}x{self._max_shape[3]})"
            )
        used: list[_Slot] = []
        try:
            for start, stop in split_batch(count, self._max_shape[0]):
                # the chunk's own batch, never padded: no work is computed for nothing
                shape: Shape = (stop - start, CHANNELS, height, width)
                size = math.prod(shape)
                slot = self._slots[self._next % len(self._slots)]
                self._next += 1
                self._ops.wait(slot.stream, caller)
                self._ops.copy(slot.input[:size].view(shape), batch[start:stop], slot.stream)
                self._enqueue(slot, shape)
                self._ops.copy(output[start:stop], slot.output[:size].view(shape), slot.stream)
                self._ops.keep_alive(batch, slot.stream)
                self._ops.keep_alive(output, slot.stream)
                self.stats["chunks"] += 1
                if slot not in used:
                    used.append(slot)
            for slot in used:
                self._ops.wait(caller, slot.stream)
        except BaseException:
            self._quiesce()
            raise
        return output

    def _enqueue(self, slot: _Slot, shape: Shape) -> None:
        """Enqueue one inference of ``shape`` on ``slot``: its graph when one was captured
        for that shape, else a plain enqueue (the first time: TensorRT's warm-up), else a
        capture (the second time). The context's input shape is set whenever it differs,
        so a graph always replays with the context in the shape it was captured in."""
        if slot.shape != shape:
            self._set_shape(slot, shape)
        graph = slot.graphs.get(shape)
        if graph is not None:
            slot.graphs.move_to_end(shape)
            graph.launch(slot.stream)
            self.stats["graph_launches"] += 1
            return
        if self._graphs and shape in slot.warm:
            try:
                graph = self._ops.capture(slot.stream, lambda: self._execute(slot))
            except (VdsrError, RuntimeError) as error:
                self._disable_graphs(f"capture failed on context {slot.index}: {error}")
            else:
                slot.graphs[shape] = graph
                while len(slot.graphs) > MAX_GRAPHS_PER_CONTEXT:
                    slot.graphs.popitem(last=False)
                self.stats["captures"] += 1
                graph.launch(slot.stream)
                self.stats["graph_launches"] += 1
                return
        self._execute(slot)
        slot.warm.add(shape)

    def _set_shape(self, slot: _Slot, shape: Shape) -> None:
        context = slot.context
        assert context is not None
        if not context.set_input_shape(INPUT_NAME, shape):
            raise InvalidInputError(
                f"TensorRT rejected input shape {shape} on execution context {slot.index}: "
                f"{self._errors()}"
            )
        unresolved = context.infer_shapes()
        if unresolved:
            raise VdsrError(
                f"TensorRT could not infer the shapes of {list(unresolved)}: {self._errors()}"
            )
        produced = _dims_tuple(context.get_tensor_shape(OUTPUT_NAME))
        if produced != shape:
            raise VdsrError(
                f"TensorRT infers output shape {produced} for input {shape}; expected the same "
                "shape"
            )
        slot.shape = shape

    def _execute(self, slot: _Slot) -> None:
        assert slot.context is not None
        if not slot.context.execute_async_v3(slot.stream.handle):
            raise VdsrError(
                f"TensorRT execute_async_v3 failed on execution context {slot.index}: "
                f"{self._errors()}"
            )
        self.stats["enqueues"] += 1

    def _disable_graphs(self, reason: str) -> None:
        _LOG.warning("CUDA graphs switched off, falling back to plain enqueues: %s", reason)
        self._graphs = False
        self.graph_state = f"off ({reason})"
        for slot in self._slots:
            slot.graphs.clear()

    def _quiesce(self) -> None:
        """After an error: wait for every stream (so no copy still targets our buffers)."""
        for slot in self._slots:
            try:
                self._ops.synchronize(slot.stream)
            except (VdsrError, RuntimeError) as error:
                _LOG.warning(
                    "while recovering from an error, stream of context %d: %s", slot.index, error
                )

    # -- teardown -----------------------------------------------------------------------

    def release(self, *, raise_errors: bool = True) -> None:
        """Wait for every stream, then drop graphs, buffers and contexts; raises the first
        error after everything was attempted (unless ``raise_errors`` is False)."""
        slots, self._slots = self._slots, []
        first: BaseException | None = None
        for slot in slots:
            try:
                self._ops.synchronize(slot.stream)
            except (VdsrError, RuntimeError) as error:
                first = first or error
            slot.graphs.clear()
            slot.context = None
        if first is not None and raise_errors:
            raise first


class TensorRTRunner(Runner):
    """Runs a built VDSR TensorRT engine (fp16 or fp32; I/O float32).

    ``engine_path`` needs its JSON sidecar next to it (see :mod:`vdsr_deploy.backends.tensorrt.builder`).
    ``contexts``: execution contexts in flight (default: one per optimization profile of
    the engine). ``cuda_graphs``: capture and replay CUDA graphs for repeated shapes.
    Batches larger than the engine's max batch are split, so :attr:`profile` bounds only
    height and width; :attr:`engine_profile` is the engine's own.
    """

    def __init__(
        self,
        engine_path: Path,
        *,
        device: int = 0,
        cuda_graphs: bool = True,
        contexts: int | None = None,
        device_ops: DeviceOps | None = None,
    ) -> None:
        super().__init__()
        self._path = Path(engine_path)
        if not self._path.is_file():
            raise InvalidInputError(f"{self._path}: TensorRT engine not found")
        if device < 0:
            raise ConfigError(f"device: expected a CUDA device index >= 0, got {device}")
        if contexts is not None and contexts < 1:
            raise ConfigError(f"contexts: expected >= 1, got {contexts}")
        self._sidecar = read_sidecar(sidecar_path(self._path))
        self._device = device
        self._cuda_graphs = cuda_graphs
        self._contexts = contexts
        self._ops = device_ops
        self._pipeline: ExecutionPipeline | None = None
        self._engine: trt.ICudaEngine | None = None
        self._runtime: trt.Runtime | None = None
        self._lock = threading.Lock()

    @property
    def engine_path(self) -> Path:
        return self._path

    @property
    def sidecar(self) -> EngineSidecar:
        return self._sidecar

    @property
    def engine_profile(self) -> ShapeProfile:
        return self._sidecar.profile

    @property
    def profile(self) -> ShapeProfile:
        engine = self._sidecar.profile
        return ShapeProfile(
            min=engine.min,
            opt=engine.opt,
            max=(MAX_SPLIT_BATCH, CHANNELS, engine.max[2], engine.max[3]),
        )

    @property
    def info(self) -> RunnerInfo:
        pipeline = self._pipeline
        details: dict[str, Any] = {
            "engine": str(self._path),
            "tensorrt": self._sidecar.tensorrt_version,
            "gpu": self._sidecar.gpu_name,
            "profiles": describe_profiles(self._sidecar.profiles),
            "contexts": pipeline.contexts
            if pipeline
            else self._contexts or len(self._sidecar.profiles),
            "cuda_graphs": pipeline.graph_state
            if pipeline
            else ("on" if self._cuda_graphs else "off"),
        }
        if pipeline is not None:
            details["stats"] = dict(pipeline.stats)
        return RunnerInfo(
            backend="tensorrt",
            device=self.tensor_device,
            precision=self._sidecar.precision,
            details=details,
        )

    def activate(self) -> None:
        tensorrt_version = require_tensorrt()
        import tensorrt as trt

        gpu = cuda.require_device(self._device)
        reasons = environment_reasons(
            self._sidecar, gpu, tensorrt_version, cuda_major=cuda.runtime_version() // 1000
        )
        if reasons:
            raise EngineMismatchError(
                f"{self._path.name} cannot run here: {'; '.join(reasons)}; rebuild it on this "
                "machine (vdsr build)"
            )
        blob = self._path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != self._sidecar.engine_sha256:
            raise EngineMismatchError(
                f"{self._path}: the engine file does not match its sidecar (sha256 differs); "
                "rebuild it (vdsr build)"
            )
        sink, logger = shared_tensorrt_logger()
        try:
            with sink.capturing():
                self._runtime = trt.Runtime(logger)
                engine = self._runtime.deserialize_cuda_engine(blob)
                if engine is None:
                    raise EngineMismatchError(
                        f"{self._path}: TensorRT {tensorrt_version} could not deserialize it "
                        f"({sink.summary()})"
                    )
                self._engine = engine
                names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
                check_engine_io(
                    [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
                    [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT],
                    {
                        n: "FLOAT"
                        if engine.get_tensor_dtype(n) == trt.DataType.FLOAT
                        else str(engine.get_tensor_dtype(n))
                        for n in names
                    },
                )
                available = engine.num_optimization_profiles
                count = min(self._contexts or available, available)
                contexts = []
                for index in range(count):
                    context = engine.create_execution_context()
                    if context is None:
                        raise VdsrError(
                            f"TensorRT could not create execution context {index} for "
                            f"{self._path.name} "
                            f"(out of GPU memory?): {sink.summary()}"
                        )
                    contexts.append(context)
                self._pipeline = ExecutionPipeline(
                    contexts,
                    self._sidecar.profile.max,
                    self._device_ops(),
                    cuda_graphs=self._cuda_graphs,
                    errors=sink.summary,
                )
        except (RuntimeError, TypeError, ValueError) as error:
            self._drop_engine()
            raise VdsrError(
                f"TensorRT failed to load {self._path.name}: {error} ({sink.summary()})"
            ) from error
        except BaseException:
            self._drop_engine()
            raise

    def _drop_engine(self) -> None:
        # Contexts (inside the pipeline) before the engine, the engine before the runtime.
        self._pipeline = None
        self._engine = None
        self._runtime = None

    def deactivate(self) -> None:
        pipeline = self._pipeline
        try:
            if pipeline is not None:
                pipeline.release()
        finally:
            self._drop_engine()

    def _device_ops(self) -> DeviceOps:
        if self._ops is None:
            self._ops = TorchCudaOps(self._device)
        return self._ops

    @property
    def tensor_device(self) -> str:
        return self._ops.device if self._ops is not None else f"cuda:{self._device}"

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        import torch

        on_device = torch.from_numpy(batch).to(self.tensor_device)
        result: NDArray[np.float32] = self._infer_tensor(on_device, None).cpu().numpy()
        return result

    def _infer_tensor(self, batch: torch.Tensor, stream: torch.cuda.Stream | None) -> torch.Tensor:
        ops = self._device_ops()
        with self._lock, ops.on_device():  # the lock only guards enqueueing
            if self._pipeline is None:
                raise VdsrError(f"{self.info.label}: not activated")
            return self._pipeline.run(batch, ops.stream_of(stream))
