"""The device work the TensorRT runner enqueues, behind one small interface.

:class:`TorchCudaOps` does it with PyTorch on ``cuda:N``: the runner's input/output
bindings are torch CUDA tensors it owns (their ``data_ptr()`` never changes, so a captured
CUDA graph stays valid), each execution context gets its own ``torch.cuda.Stream``,
streams order each other with ``wait_stream`` (device-side, no host synchronisation), and
graphs are captured with ``torch.cuda.graph`` on the context's stream. Tests drive the
same pipeline with a fake that runs on the CPU (tests/backends/test_tensorrt_runner.py).
torch is imported when a :class:`TorchCudaOps` is made, not when this module is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch


class Stream(Protocol):
    """A stream the runner enqueues on; ``handle`` is the ``cudaStream_t`` TensorRT takes."""

    @property
    def handle(self) -> int: ...


class Graph(Protocol):
    """A captured CUDA graph."""

    def launch(self, stream: Stream) -> None: ...


class DeviceOps(Protocol):
    """Everything device-side the execution pipeline does, all enqueued (asynchronous)
    except :meth:`synchronize` and :meth:`capture` (capture syncs the device once per shape)."""

    @property
    def device(self) -> str:
        """The torch device string of the buffers, e.g. ``cuda:0``."""

    def stream_of(self, stream: torch.cuda.Stream | None) -> Stream:
        """The caller's stream (None: the current stream of :attr:`device`)."""

    def new_stream(self) -> Stream: ...

    def zeros(self, count: int) -> torch.Tensor:
        """A new flat float32 buffer of ``count`` elements on :attr:`device`."""

    def empty_like(self, tensor: torch.Tensor, stream: Stream) -> torch.Tensor:
        """A new tensor like ``tensor``, allocated for use on ``stream``."""

    def copy(self, target: torch.Tensor, source: torch.Tensor, stream: Stream) -> None: ...

    def wait(self, stream: Stream, other: Stream) -> None:
        """``stream`` waits (on the device) for the work queued on ``other`` so far."""

    def keep_alive(self, tensor: torch.Tensor, stream: Stream) -> None:
        """``tensor``'s memory is in use on ``stream`` (for the caching allocator)."""

    def capture(self, stream: Stream, enqueue: Callable[[], None]) -> Graph: ...

    def synchronize(self, stream: Stream) -> None: ...

    def on_device(self) -> AbstractContextManager[None]:
        """Make :attr:`device` current for this thread (TensorRT runs on the current one)."""


class TorchStream:
    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream = stream

    @property
    def handle(self) -> int:
        return int(self.stream.cuda_stream)


class TorchGraph:
    def __init__(self, graph: torch.cuda.CUDAGraph) -> None:
        self.graph = graph

    def launch(self, stream: Stream) -> None:
        import torch

        assert isinstance(stream, TorchStream)
        with torch.cuda.stream(stream.stream):
            self.graph.replay()


class TorchCudaOps:
    """:class:`DeviceOps` with PyTorch on CUDA device ``index``."""

    def __init__(self, index: int) -> None:
        import torch

        self._torch: Any = torch
        self._device = torch.device("cuda", index)

    @property
    def device(self) -> str:
        return str(self._device)

    def stream_of(self, stream: torch.cuda.Stream | None) -> TorchStream:
        return TorchStream(stream or self._torch.cuda.current_stream(self._device))

    def new_stream(self) -> TorchStream:
        return TorchStream(self._torch.cuda.Stream(self._device))

    def zeros(self, count: int) -> torch.Tensor:
        buffer: torch.Tensor = self._torch.zeros(
            count, dtype=self._torch.float32, device=self._device
        )
        return buffer

    def empty_like(self, tensor: torch.Tensor, stream: Stream) -> torch.Tensor:
        assert isinstance(stream, TorchStream)
        with self._torch.cuda.stream(stream.stream):
            result: torch.Tensor = self._torch.empty_like(tensor)
        return result

    def copy(self, target: torch.Tensor, source: torch.Tensor, stream: Stream) -> None:
        assert isinstance(stream, TorchStream)
        with self._torch.cuda.stream(stream.stream):
            target.copy_(source, non_blocking=True)

    def wait(self, stream: Stream, other: Stream) -> None:
        assert isinstance(stream, TorchStream) and isinstance(other, TorchStream)
        if stream.stream != other.stream:
            stream.stream.wait_stream(other.stream)

    def keep_alive(self, tensor: torch.Tensor, stream: Stream) -> None:
        assert isinstance(stream, TorchStream)
        tensor.record_stream(stream.stream)

    def capture(self, stream: Stream, enqueue: Callable[[], None]) -> TorchGraph:
        assert isinstance(stream, TorchStream)
        graph = self._torch.cuda.CUDAGraph()
        with self._torch.cuda.graph(graph, stream=stream.stream, capture_error_mode="thread_local"):
            enqueue()
        return TorchGraph(graph)

    def synchronize(self, stream: Stream) -> None:
        assert isinstance(stream, TorchStream)
        stream.stream.synchronize()

    @contextmanager
    def on_device(self) -> Iterator[None]:
        with self._torch.cuda.device(self._device):
            yield
