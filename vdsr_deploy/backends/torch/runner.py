"""PyTorch runner: the reference (fp32) and the fp16/bf16 paths, on CPU or CUDA.

On CUDA the device form (:meth:`TorchRunner.infer_tensor`) runs channels-last with
``cudnn.benchmark`` on, and replays one CUDA graph per input shape (:class:`ShapeGraphs`):
the 20 convolutions, bias adds and ReLUs of a call become one graph launch instead of ~60
kernel launches from Python. A shape is captured the second time it is seen (the first
runs eagerly, so one-off whole-image sizes never pay for a capture), into the runner's one
memory pool; at most :data:`MAX_GRAPHS` shapes are kept (least recently used dropped), and
a failed capture runs that call eagerly and is retried later (:class:`ShapeGraphs`).
``torch.compile`` was the alternative the issue allowed; it was not measured (no GPU
here), so graphs, which need no compiler toolchain, are what ships; ``cuda_graphs=False``
gives plain eager execution for comparison.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from vdsr_deploy.backends.device import resolve_device
from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.runner import Runner, RunnerInfo

_LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
"""What this runner implements (its descriptor declares the same; a test holds them equal)."""
MAX_GRAPHS = 8

Forward = Callable[[torch.Tensor], torch.Tensor]
Shape = tuple[int, ...]


@dataclass
class CapturedGraph:
    """A CUDA graph of ``forward`` for one input shape, with its static input and output.
    ``done`` is shared by every graph of a runner: recorded after a launch's output is
    copied out, and waited for by the next launch of any graph, so launches never overlap
    (the graphs share one memory pool, and their static buffers are reused per launch)."""

    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    static_output: torch.Tensor
    done: torch.cuda.Event

    def launch(self, batch: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor:
        """Enqueue copy-in, replay and copy-out on ``stream``; no host synchronisation."""
        stream.wait_event(self.done)
        with torch.cuda.stream(stream):
            self.static_input.copy_(batch, non_blocking=True)
            self.graph.replay()
            output = self.static_output.clone()
            self.done.record(stream)
        return output


class Launchable(Protocol):
    """What :class:`ShapeGraphs` keeps per shape (a :class:`CapturedGraph` on CUDA)."""

    def launch(self, batch: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor: ...


def capture_cuda_graph(
    forward: Forward, shape: Shape, device: torch.device, pool: object, done: torch.cuda.Event
) -> CapturedGraph:
    """Warm ``forward`` up once on a side stream (cuDNN chose its algorithms when the shape
    first ran eagerly), then capture it for ``shape`` on ``device`` into ``pool`` (the
    runner's one memory pool: see :class:`ShapeGraphs`)."""
    static_input = torch.zeros(shape, dtype=torch.float32, device=device)
    side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        forward(static_input)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):  # type: ignore[arg-type]
        static_output = forward(static_input)
    return CapturedGraph(graph, static_input, static_output, done)


MAX_CAPTURE_FAILURES = 3  # per shape; then that shape runs eagerly (other shapes still captured)
SEEN_SHAPES = 64  # shapes remembered as run once (whole images: most sizes come once)


class ShapeGraphs:
    """One captured graph per input shape, least recently used dropped beyond ``limit``.

    A shape is captured the second time it comes (the first call runs eagerly: with whole
    images most sizes come once, and a capture costs a device synchronisation). Every
    capture goes into one memory pool (``pool``, from ``torch.cuda.graph_pool_handle()``;
    launches are serialised, see :class:`CapturedGraph`), so the graphs hold about one
    forward pass's memory, not one pool each. A failed capture (out of memory included) runs
    that call eagerly and is retried on a later call, up to :data:`MAX_CAPTURE_FAILURES`
    per shape; graphs stay on for other shapes.

    :meth:`launch` returns None when the caller should run eagerly. ``capture(shape, pool)``
    is :func:`capture_cuda_graph` bound to the runner; tests pass a fake.
    """

    def __init__(
        self,
        capture: Callable[[Shape, object], Launchable],
        *,
        limit: int = MAX_GRAPHS,
        pool: object = None,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._capture = capture
        self._limit = limit
        self._pool = pool
        self._on_failure = on_failure or (lambda: None)
        self._graphs: OrderedDict[Shape, Launchable] = OrderedDict()
        self._seen: OrderedDict[Shape, None] = OrderedDict()
        self._lock = threading.Lock()
        self.failures: dict[Shape, int] = {}
        self.last_failure = ""
        self.state = "on"
        self.captures = 0
        self.launches = 0

    def launch(self, batch: torch.Tensor, stream: torch.cuda.Stream) -> torch.Tensor | None:
        if self.state != "on":
            return None
        shape = tuple(int(v) for v in batch.shape)
        with self._lock:
            graph = self._graphs.get(shape)
            if graph is None:
                if shape not in self._seen:  # the first time: eagerly
                    self._seen[shape] = None
                    while len(self._seen) > SEEN_SHAPES:
                        self._seen.popitem(last=False)
                    return None
                if self.failures.get(shape, 0) >= MAX_CAPTURE_FAILURES:
                    return None
                try:
                    graph = self._capture(shape, self._pool)
                except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                    self.failures[shape] = self.failures.get(shape, 0) + 1
                    self.last_failure = f"capture failed for shape {shape}: {error}"
                    _LOG.warning("CUDA graph %s; this call runs eagerly", self.last_failure)
                else:
                    self.captures += 1
                    self._graphs[shape] = graph
                    while len(self._graphs) > self._limit:
                        self._graphs.popitem(last=False)
            if graph is None:  # outside the except block: its traceback no longer holds memory
                self._on_failure()
                return None
            self._graphs.move_to_end(shape)
            self.launches += 1
            return graph.launch(batch, stream)

    @property
    def shapes(self) -> list[Shape]:
        return list(self._graphs)


BF16_LAYERS = "first and last conv fp32, inner convs bf16 autocast"
"""What ``precision="bf16"`` runs (:class:`Bf16Body`); part of the key of its cost record."""


@dataclass(frozen=True)
class Bf16Body:
    """The VDSR body as ``precision="bf16"`` runs it: which layers run in which precision.

    - ``first``: the first convolution (``in_channels -> channels``, reads the image) and
      its ReLU, in fp32;
    - ``inner``: the inner convolutions (``channels -> channels``, 99.8% of the
      multiply-adds in the paper's model) and their ReLUs, under bf16 autocast: bf16-rounded inputs and weights,
      fp32 accumulation, bf16 outputs;
    - ``last``: the last convolution (``channels -> in_channels``, the residual), in fp32 on
      the inner layers' bf16 output (upcast exactly); the residual comes out in fp32.

    Why: autocasting the first convolution rounds the input image itself to bf16 (up to
    3.8e-3 near 1.0, about one 8-bit step), and the network's high-frequency gain amplifies
    that: on the shipped weights that rounding alone, every other layer in fp32, costs
    45.4 dB vs fp32 on the black/white edge pattern at x4 (max 0.052), where the all-autocast
    body scores 44.9 dB and this split 58.4 dB. The last convolution in fp32 keeps the
    residual that is added to the fp32 image out of bf16 (measured neutral to +0.15 dB).
    The same numerics on bf16 hardware: autocast's rounding does not depend on the CPU.
    """

    first: torch.nn.Module
    inner: torch.nn.Module
    last: torch.nn.Module

    @classmethod
    def split(cls, body: torch.nn.Module) -> Bf16Body:
        """``body`` as :class:`VDSR` builds it: conv, ReLU, ..., conv (at least 2 convs;
        with exactly 2, ``inner`` is empty and nothing runs in bf16)."""
        if (
            not isinstance(body, torch.nn.Sequential)
            or len(body) < 3
            or not isinstance(body[0], torch.nn.Conv2d)
            or not isinstance(body[1], torch.nn.ReLU)
            or not isinstance(body[-1], torch.nn.Conv2d)
        ):
            raise VdsrError("bf16: expected a VDSR body (conv, ReLU, ..., conv)")
        return cls(body[:2], body[2:-1], body[-1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The residual of the fp32 batch ``x``, in fp32."""
        device = x.device.type
        with torch.autocast(device, enabled=False):
            h = self.first(x.float())
        # no autocast weight cache: it would outlive a CUDA graph capture
        with torch.autocast(device, dtype=torch.bfloat16, cache_enabled=False):
            h = self.inner(h)
        with torch.autocast(device, enabled=False):
            residual: torch.Tensor = self.last(h.float())
        return residual


TF32State = tuple[object, ...]


def _new_tf32_api() -> bool:
    """Whether this torch has the ``fp32_precision`` TF32 API (2.9 and later)."""
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(
        torch.backends.cudnn, "conv"
    )


def _cudnn_conv() -> Any:
    """``torch.backends.cudnn.conv`` (not in torch's type information)."""
    cudnn: Any = torch.backends.cudnn
    return cudnn.conv


def tf32_state() -> TF32State:
    """The process's TF32 settings for matmul and cuDNN convolutions, to restore later.
    Read through the ``fp32_precision`` API where torch has it: reading the legacy
    ``allow_tf32`` flags raises once anything in the process set the new one (issue 22)."""
    if _new_tf32_api():
        return (
            torch.backends.cuda.matmul.fp32_precision,
            _cudnn_conv().fp32_precision,
        )
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def set_tf32(allow: bool | TF32State) -> None:
    """TF32 on or off for matmul and cuDNN convolutions (or a :func:`tf32_state` back),
    through the ``fp32_precision`` API where torch has it, else the legacy flags."""
    if _new_tf32_api():
        matmul, conv = (("tf32", "tf32") if allow else ("ieee", "ieee")) if isinstance(allow, bool) else allow
        torch.backends.cuda.matmul.fp32_precision = matmul
        _cudnn_conv().fp32_precision = conv
        return
    legacy = (allow, allow) if isinstance(allow, bool) else allow
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (bool(v) for v in legacy)


class TorchRunner(Runner):
    """Runs a :class:`VDSR` module.

    ``fp32``: reference; TF32 is switched off on CUDA unless ``allow_tf32`` (parity baselines
    need true fp32). ``fp16`` (CUDA only): the 20 conv layers run in half precision, the
    global residual add in fp32, as in the FP16 ONNX graph. ``bf16`` (CPU and CUDA): the
    first and last convolutions in fp32, the inner ones under bf16 autocast, the residual
    add in fp32 (:class:`Bf16Body`).
    """

    def __init__(
        self,
        model: VDSR,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = True,
        allow_tf32: bool = False,
        cuda_graphs: bool = True,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
        resolved = resolve_device(device)
        if resolved.type == "cuda" and resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
        self._device = resolved
        if precision == "fp16" and self._device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device for PyTorch; use bf16 on CPU")
        self._precision = precision
        self._channels_last = channels_last
        self._allow_tf32 = allow_tf32
        self._model = model
        self._body: torch.nn.Module | None = None  # a copy on the device, while active
        self._bf16: Bf16Body | None = None  # that copy split by precision (bf16 only)
        self._saved_flags: tuple[TF32State, bool] | None = None
        self._cuda_graphs = cuda_graphs and self._device.type == "cuda"
        self._graphs: ShapeGraphs | None = None

    @property
    def info(self) -> RunnerInfo:
        name = torch.cuda.get_device_name(self._device) if self._device.type == "cuda" else "cpu"
        return RunnerInfo(
            backend="torch",
            device=str(self._device),
            precision=self._precision,
            details={
                "torch": torch.__version__,
                "device_name": name,
                "threads": torch.get_num_threads(),
                "channels_last": self._channels_last,
                "tf32": self._allow_tf32,
                "cuda_graphs": self._graph_state(),
                "graph_stats": {
                    "captures": self._graphs.captures,
                    "launches": self._graphs.launches,
                    "capture_failures": sum(self._graphs.failures.values()),
                    "last_failure": self._graphs.last_failure,
                }
                if self._graphs is not None
                else None,
            },
        )

    def _graph_state(self) -> str:
        if self._graphs is not None:
            return self._graphs.state
        if self._device.type != "cuda":
            return "off (CPU)"
        return "on" if self._cuda_graphs else "off (asked)"

    def activate(self) -> None:
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        # A copy: the caller's model stays where it is, in its dtype (runners of one model
        # on two devices, or fp32 and fp16, can be open at once).
        body = copy.deepcopy(self._model.body).to(self._device).eval()
        body = body.to(memory_format=memory_format)  # type: ignore[call-overload]
        self._body = body.half() if self._precision == "fp16" else body
        self._bf16 = Bf16Body.split(body) if self._precision == "bf16" else None
        if self._device.type == "cuda":
            self._saved_flags = (tf32_state(), torch.backends.cudnn.benchmark)
            self._apply_flags()
        if self._cuda_graphs:
            device = self._device
            done = torch.cuda.Event()  # type: ignore[no-untyped-call]
            self._graphs = ShapeGraphs(
                lambda shape, pool: capture_cuda_graph(self._forward, shape, device, pool, done),
                pool=torch.cuda.graph_pool_handle(),
                on_failure=torch.cuda.empty_cache,
            )

    def _apply_flags(self) -> None:
        """This runner's TF32 and cudnn.benchmark settings. They are process-wide, so they
        are set again on every call: another runner opened or closed in between (a
        benchmark comparing TF32 on and off) cannot change what this one runs with."""
        set_tf32(self._allow_tf32)
        torch.backends.cudnn.benchmark = True

    def deactivate(self) -> None:
        self._graphs = None
        if self._saved_flags is not None:
            tf32, torch.backends.cudnn.benchmark = self._saved_flags
            set_tf32(tf32)
            self._saved_flags = None
        self._body = None
        self._bf16 = None

    @property
    def tensor_device(self) -> str:
        return str(self._device)

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        x = torch.from_numpy(batch).to(self._device)
        output = self._infer_tensor(x, None)
        result: NDArray[np.float32] = output.cpu().numpy()
        return result

    def _infer_tensor(self, batch: torch.Tensor, stream: torch.cuda.Stream | None) -> torch.Tensor:
        if self._device.type != "cuda":
            return self._forward(batch)
        stream = stream or torch.cuda.current_stream(self._device)
        self._apply_flags()
        if self._graphs is not None:
            output = self._graphs.launch(batch, stream)
            if output is not None:
                return output
        with torch.cuda.stream(stream):
            return self._forward(batch)

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        body = self._body
        if body is None:
            raise VdsrError(f"{self.info.label}: not activated")
        memory_format = torch.channels_last if self._channels_last else torch.contiguous_format
        # no_grad, not inference_mode: callers may modify the output in place afterwards.
        with torch.no_grad():
            x = batch.contiguous(memory_format=memory_format)
            if self._precision == "fp16":
                residual = body(x.half()).float()
            elif self._bf16 is not None:
                residual = self._bf16(x)
            else:
                residual = body(x)
            output: torch.Tensor = (x + residual).contiguous()
            return output
