"""Upscaling with every step on the runner's device: upload samples, prepare, tile, infer,
stitch, finish, quantize, download final samples. Runtime-agnostic.

:class:`DeviceUpscaler` cuts each image into row bands (one row of tiles each, as
:mod:`vdsr_deploy.job` does on the host), so device memory is bounded by a few bands, not by
the image. Per band, on the device: the MATLAB bicubic Y/CbCr/alpha rows
(:class:`~vdsr_deploy.planes.device_colour.DeviceColour`), tiles as views of the band;
tiles go to the runner in batches of ``batch`` filled across bands (a band's last tiles
wait for the next band's first ones, so only an image's last batch may be partial: no
padded work, full batches for the runtime), cores stitched by slice assignment, colour
finished and quantized once all of a band's tiles are back; only the final uint8/uint16
rows are downloaded. On CUDA the upload runs on a
copy stream, compute on a compute stream, the download (into pinned memory) on a third
stream; :meth:`DeviceUpscaler.bands` returns each band as a :class:`PendingRows` whose
``result()`` waits only for that band's download, so the caller encodes band *k* while the
device computes band *k + 1*.

Out of memory: when the runner raises ``torch.cuda.OutOfMemoryError``, the tile is halved
and the same windows are re-run as smaller tiles (exact: every kept pixel keeps its full
receptive field inside its sub-window), once per size, and a note is recorded; the rest of
the image uses the smaller tile directly, the next image starts again from the configured
tile. The cache is emptied after the failed call's tensors are released (outside the
``except`` block, whose traceback holds them). Below ``2 * halo + MIN_CORE`` it gives up with a clear error.

The runner is used through its device form, ``runner.infer_tensor(batch, stream=...)`` on
``runner.tensor_device`` (runtimes with a host form only make that a synchronous round
trip themselves).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.planes.colour import output_shape
from vdsr_deploy.planes.device_colour import DeviceColour, DevicePlanes
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import Span, TileConfig, plan_axis, plan_tiles
from vdsr_deploy.runner import Runner

if TYPE_CHECKING:
    import torch

Samples = NDArray[Any]  # uint8 or uint16
MIN_CORE = 32  # smallest tile core worth running: below it the halo's recomputation dominates


# ---------------------------------------------------------------------------------------------
# The runner's device form


def use_device_path(runner: Runner) -> bool:
    """Whether jobs should take the device path for ``runner``: when it computes on CUDA.
    On the CPU the numpy path stays (faster there: benchmarks/pipeline_overhead.py)."""
    return runner.tensor_device.startswith("cuda")


def free_device_memory(device: torch.device) -> None:
    """Give the caching allocator's free blocks back to the device (CUDA only)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()


def _out_of_memory_error() -> type[BaseException]:
    import torch

    return torch.cuda.OutOfMemoryError


# ---------------------------------------------------------------------------------------------
# Results


class PendingRows:
    """Final samples of one band, ``(rows, width, channels)`` uint8/uint16, possibly still
    being downloaded; :meth:`result` waits for them (from any thread)."""

    def __init__(self, host: torch.Tensor, ready: Any | None) -> None:
        self._host = host
        self._ready = ready  # a torch.cuda.Event, or None when already on the host

    def result(self) -> Samples:
        if self._ready is not None:
            self._ready.synchronize()
        rows: Samples = self._host.numpy()
        return rows

    @property
    def nbytes(self) -> int:
        return int(self._host.numel() * self._host.element_size())


@dataclass(frozen=True)
class Band:
    """One band of output rows: ``index`` in the image; ``span``: its window and core rows
    (``pixels`` holds the core rows)."""

    index: int
    span: Span
    pixels: PendingRows


@dataclass
class _BandWork:
    """A band in flight: its planes, its result (filled tile by tile, possibly by batches
    shared with other bands) and how many of its tiles are still to come."""

    index: int
    span: Span
    planes: DevicePlanes
    result: torch.Tensor
    windows: list[torch.Tensor]
    remaining: int


@dataclass
class _OomState:
    tile_limit: int = 0  # 0: no limit yet
    tried: set[int] = field(default_factory=set)


class DeviceUpscaler:
    """Super-resolves uint8/uint16 samples on the runner's device (see the module docstring).

    The runner must be active. ``compute_dtype`` is the colour/bicubic arithmetic
    (float64: bit-identical to the CPU reference on the CPU device; float32: faster on GPUs
    with slow float64, within one level). Notes (out-of-memory retries) go to ``on_note``.
    """

    def __init__(
        self,
        runner: Runner,
        config: PipelineConfig,
        *,
        compute_dtype: str = "float64",
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        import torch

        self.runner = runner
        self.config = config
        self.device = torch.device(runner.tensor_device)
        self.colour = DeviceColour(self.device, compute_dtype=compute_dtype)
        self.on_note: Callable[[str], None] = on_note or (lambda message: None)
        self._oom = _OomState()
        cuda = self.device.type == "cuda"
        self._copy = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]
        self._compute = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]
        self._download = torch.cuda.Stream(self.device) if cuda else None  # type: ignore[no-untyped-call]

    @property
    def tile_limit(self) -> int:
        """The tile side out-of-memory retries came down to (0: never hit)."""
        return self._oom.tile_limit

    # -- whole images ------------------------------------------------------------------------

    def upscale(self, samples: Samples, *, bit_depth: int | None = None) -> Samples:
        """``(H, W, C)`` uint8/uint16 -> ``(ceil(sH), ceil(sW), C)`` samples at ``bit_depth``
        (default: the input's)."""
        depth = bit_depth or (16 if samples.dtype == np.uint16 else 8)
        # every band is enqueued before the first download is waited for: the device never
        # idles while the host waits (a band's result() waits for that band only)
        pending = [band.pixels for band in self.bands(samples, bit_depth=depth)]
        return np.concatenate([rows.result() for rows in pending], axis=0)

    def bands(
        self,
        samples: Samples,
        *,
        bit_depth: int,
        wait: Callable[[int], Any] | None = None,
    ) -> Iterator[Band]:
        """The image's output bands in order; each band's work is enqueued before it is
        yielded. ``wait(nbytes)`` is called before a band's download buffer is allocated
        (e.g. to acquire a host memory budget)."""
        tiling = self.config.tiling
        self._oom = _OomState()  # a smaller tile an earlier image needed is not kept: memory moves
        height, width = output_shape(int(samples.shape[0]), int(samples.shape[1]), self.config.scale)
        on_device = self.colour.upload(samples, stream=self._copy)
        if self._compute is not None and self._copy is not None:
            self._compute.wait_stream(self._copy)
            on_device.record_stream(self._compute)
        columns = plan_axis(width, tiling.tile, tiling.halo)
        pending: list[tuple[_BandWork, int]] = []  # tiles waiting for a full batch
        open_bands: list[_BandWork] = []  # in order; finished ones are yielded from the front
        spans = plan_axis(height, tiling.tile, tiling.halo)
        for index, span in enumerate(spans):
            with self._on_stream(self._compute):
                work = self._start_band(on_device, index, span, columns, width)
                open_bands.append(work)
                pending.extend((work, column) for column in range(len(columns)))
                last = index == len(spans) - 1
                # tiles are batched across bands: only the image's last batch may be partial
                while len(pending) >= self.config.batch or (last and pending):
                    chunk, pending = pending[: self.config.batch], pending[self.config.batch :]
                    self._run_tiles(chunk, columns)
            while open_bands and open_bands[0].remaining == 0:
                done = open_bands.pop(0)
                with self._on_stream(self._compute):
                    final = self._finish_band(done, bit_depth)
                if wait is not None:
                    wait(int(final.numel() * final.element_size()))
                yield Band(done.index, done.span, self._fetch(final))

    def _on_stream(self, stream: torch.cuda.Stream | None) -> Any:
        import contextlib

        import torch

        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def _start_band(
        self, samples: torch.Tensor, index: int, span: Span, columns: list[Span], width: int
    ) -> _BandWork:
        """The band's planes and its tiles' windows (views of its Y rows)."""
        import torch

        try:
            planes = self.colour.prepare_rows(samples, self.config.scale, span.start, span.stop)
        except _out_of_memory_error() as error:  # the colour planes, not the runner (retried there)
            raise VdsrError(
                f"out of device memory for a band of {span.length}x{width} output pixels "
                f"(colour planes): lower --tile ({error})"
            ) from error
        y = planes.y
        windows = [y[:, c.start : c.stop] for c in columns]
        return _BandWork(index, span, planes, torch.empty_like(y), windows, len(columns))

    def _run_tiles(self, chunk: list[tuple[_BandWork, int]], columns: list[Span]) -> None:
        """One runner batch of tiles (from one or several bands); cores stitched into their
        bands' results."""
        outputs = self._infer_windows([work.windows[column] for work, column in chunk])
        for (work, column_index), output in zip(chunk, outputs, strict=True):
            column = columns[column_index]
            core = slice(column.core_start - column.start, column.core_stop - column.start)
            work.result[:, column.core_start : column.core_stop] = output[:, core]
            work.remaining -= 1

    def _finish_band(self, work: _BandWork, bit_depth: int) -> torch.Tensor:
        span = work.span
        rows = slice(span.core_start - span.start, span.core_stop - span.start)
        pixels = self.colour.finish(work.planes.rows(rows.start, rows.stop), work.result[rows])
        return self.colour.quantize(pixels, bit_depth)

    def _fetch(self, final: torch.Tensor) -> PendingRows:
        import torch

        if self.device.type != "cuda" or self._download is None:
            return PendingRows(final.cpu(), None)
        host = torch.empty(final.shape, dtype=final.dtype, pin_memory=True)
        if self._compute is not None:
            self._download.wait_stream(self._compute)
        with torch.cuda.stream(self._download):
            host.copy_(final, non_blocking=True)
            final.record_stream(self._download)
            ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
            ready.record(self._download)
        return PendingRows(host, ready)

    # -- tiles through the runner, with out-of-memory retries --------------------------------

    def _infer_windows(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run 2-D windows (any shapes) through the runner; same-shape windows share batches."""
        groups: dict[tuple[int, int], list[int]] = {}
        for position, window in enumerate(windows):
            groups.setdefault((int(window.shape[0]), int(window.shape[1])), []).append(position)
        outputs: list[torch.Tensor | None] = [None] * len(windows)
        for members in groups.values():
            results = self._infer_group([windows[i] for i in members])
            for position, result in zip(members, results, strict=True):
                outputs[position] = result
        return [o for o in outputs if o is not None]

    def _infer_group(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        """Same-shape windows, in batches of ``config.batch``; on out-of-memory, halve the tile."""

        side = max(int(windows[0].shape[0]), int(windows[0].shape[1]))
        limit = self._oom.tile_limit
        if limit and side > limit:
            return [self._subtiled(window, limit) for window in windows]
        try:
            return self._run_batches(windows)
        except _out_of_memory_error():
            pass  # handled below, once the failed call's tensors are released with its frame
        # Outside the except block: the traceback (and with it the frames holding the
        # failed batch, its output and the runner's temporaries) is gone, so emptying the
        # cache can give that memory back before the retry.
        free_device_memory(self.device)
        smaller = self._halve(side, min(len(windows), self.config.batch))
        return [self._subtiled(window, smaller) for window in windows]

    def _run_batches(self, windows: list[torch.Tensor]) -> list[torch.Tensor]:
        import torch

        batch = self.config.batch
        outputs: list[torch.Tensor] = []
        for start in range(0, len(windows), batch):
            stacked = torch.stack(windows[start : start + batch])[:, None].contiguous()
            result = self.runner.infer_tensor(stacked, stream=self._compute)
            outputs.extend(result[:, 0])
        return outputs

    def _halve(self, side: int, batch: int) -> int:

        halo = self.config.tiling.halo
        current = min(side, self._oom.tile_limit or side)
        smaller = current // 2
        floor = 2 * halo + MIN_CORE
        if smaller < floor or smaller in self._oom.tried:
            raise VdsrError(
                f"out of device memory even at tile {current} (batch {batch}); halving it would "
                f"go below {floor} px (halo {halo} each side + a {MIN_CORE} px core): free device "
                "memory or lower --batch"
            )
        self._oom.tried.add(smaller)
        self._oom.tile_limit = smaller
        self.on_note(
            f"out of device memory at tile {current} (batch {batch}): halved the tile to "
            f"{smaller} and retried"
        )
        return smaller

    def _subtiled(self, window: torch.Tensor, limit: int) -> torch.Tensor:
        """``window`` run as tiles of at most ``limit`` (same halo): exact for every pixel of
        the window that lies at least ``halo`` inside its edges or on the image border."""
        import torch

        height, width = int(window.shape[0]), int(window.shape[1])
        tiles = plan_tiles(height, width, TileConfig(tile=limit, halo=self.config.tiling.halo))
        views = [window[t.y.start : t.y.stop, t.x.start : t.x.stop] for t in tiles]
        result = torch.empty_like(window)
        for tile, output in zip(tiles, self._infer_windows(views), strict=True):
            y, x = tile.y, tile.x
            result[y.core_start : y.core_stop, x.core_start : x.core_stop] = output[
                y.core_start - y.start : y.core_stop - y.start,
                x.core_start - x.start : x.core_stop - x.start,
            ]
        return result


# ---------------------------------------------------------------------------------------------
# --tile auto


def activation_bytes_per_pixel(channels: int = 64, precision: str = "fp32") -> int:
    """Device bytes per network-input pixel while VDSR runs one layer: the layer's input and
    output feature maps (``channels`` each) plus the fp32 input, residual and output planes."""
    element = 2 if precision in ("fp16", "bf16") else 4
    return 2 * channels * element + 3 * 4


def int32_pixel_limit(channels: int = 64) -> int:
    """Pixels of one network input whose widest feature map (``channels`` planes) still has
    fewer than 2**31 elements: cuDNN's convolutions index with 32 bits."""
    return (2**31 - 1) // channels


def auto_tile(
    sizes: list[tuple[int, int]],
    *,
    budget_bytes: int,
    batch: int,
    halo: int,
    bytes_per_pixel: int,
    multiple: int = 32,
    max_pixels: int | None = None,
) -> int:
    """The tile for ``--tile auto``: 0 (whole images) when ``batch`` of the largest output
    image fits ``budget_bytes`` at ``bytes_per_pixel``, else the largest side (a multiple of
    ``multiple``) whose ``batch`` tiles fit. ``max_pixels``: pixels one network input may have
    at most (e.g. :func:`int32_pixel_limit`). Pure arithmetic; raises ConfigError when not
    even the smallest useful tile (``2 * halo + max(multiple, MIN_CORE)``) fits."""
    if not sizes:
        raise ConfigError("--tile auto: no images to size the tile for")
    if budget_bytes <= 0 or batch < 1 or bytes_per_pixel < 1 or multiple < 1:
        raise ConfigError(
            f"--tile auto: expected a positive budget, batch and bytes per pixel, got "
            f"{budget_bytes}, {batch}, {bytes_per_pixel}"
        )
    largest = max(h * w for h, w in sizes)
    if batch * largest * bytes_per_pixel <= budget_bytes and (max_pixels is None or largest <= max_pixels):
        return 0
    side = math.isqrt(budget_bytes // (batch * bytes_per_pixel))
    if max_pixels is not None:
        side = min(side, math.isqrt(max_pixels))
    side -= side % multiple
    longest = max(max(h, w) for h, w in sizes)
    smallest = 2 * halo + max(multiple, MIN_CORE)
    if side < smallest:
        raise ConfigError(
            f"--tile auto: {budget_bytes / 2**20:.0f} MiB fits no tile of at least {smallest} px "
            f"at batch {batch}; lower --batch or give --tile"
        )
    return min(side, longest)
