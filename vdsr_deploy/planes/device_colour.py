"""Colour handling and MATLAB bicubic on a torch device: the :mod:`vdsr_deploy.planes.colour`
pipeline, run where the network runs.

The CPU float64 protocol (:mod:`vdsr_deploy.planes.colour`, :mod:`vdsr_deploy.protocol`) stays the
reference; this module computes the same planes in ``compute_dtype`` (float32 by default)
on any torch device, so pixels travel to the device once as uint8/uint16 samples and come
back once as final uint8/uint16 samples. What is the same as the reference, by construction:

- the bicubic contributions (weights and mirrored source indices) are
  :func:`vdsr_deploy.protocol.resize_contributions` itself, copied to the device once per
  (in length, out length, scale) and cached there; the dimension with the smaller scale is
  resized first, as MATLAB does;
- RGB -> YCbCr (BT.601 studio range), gray as ``Y = (16 + 219 g) / 255``, alpha resized on
  its own and clipped, YCbCr -> RGB with the inverse matrix computed once (module constant);
- quantisation as :func:`vdsr_deploy.imageio.quantize`: clip to [0, 1], scale by the peak,
  round half to even, saturate.

What differs: arithmetic is float32 where the reference is float64, so a value that lands
within ~1e-6 of a rounding boundary may round the other way (one level, rarely;
``tests/planes/test_device_colour.py`` measures it).

Layout: planes are channel-first ``(C, H, W)`` on the device; samples are ``(H, W, C)``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.planes.colour import output_shape

if TYPE_CHECKING:
    import torch

# The reference's constants, in the reference's own float64, once.
_RGB_TO_YCBCR: NDArray[np.float64] = protocol._RGB_TO_YCBCR
_YCBCR_OFFSET: NDArray[np.float64] = protocol._YCBCR_OFFSET
_YCBCR_TO_RGB: NDArray[np.float64] = np.asarray(np.linalg.inv(_RGB_TO_YCBCR), dtype=np.float64)

SAMPLE_PEAKS = {8: 255.0, 16: 65535.0}


@dataclass(frozen=True)
class DevicePlanes:
    """Rows of the network input and what finishing needs, on the device.

    All float32 (as the reference's :class:`~vdsr_deploy.planes.colour.PreparedImage`). ``y``:
    ``(R, W')`` network input (bicubic Y, nominally [0, 1]); ``chroma``: ``(2, R, W')`` Cb, Cr,
    or None (gray); ``alpha``: ``(R, W')`` clipped to [0, 1], or None."""

    y: torch.Tensor
    chroma: torch.Tensor | None
    alpha: torch.Tensor | None

    def rows(self, start: int, stop: int) -> DevicePlanes:
        """Rows ``[start, stop)`` of every plane (views)."""
        return DevicePlanes(
            self.y[start:stop],
            None if self.chroma is None else self.chroma[:, start:stop],
            None if self.alpha is None else self.alpha[start:stop],
        )


class DeviceColour:
    """Prepare and finish images on ``device`` (any torch device: ``cpu``, ``cuda:0``).

    One instance per device and dtype; it caches the bicubic contributions it has copied
    there, so reuse it across images (thread-safe for reading; create it in one thread).
    """

    def __init__(self, device: str | torch.device = "cpu", *, compute_dtype: str = "float64") -> None:
        import torch

        if compute_dtype not in ("float32", "float64"):
            raise InvalidInputError(
                f"compute_dtype: expected float32 or float64, got {compute_dtype!r}"
            )
        self.device = torch.device(device)
        self.dtype = getattr(torch, compute_dtype)
        self._contrib: dict[tuple[int, int, float], tuple[torch.Tensor, torch.Tensor]] = {}
        self._divisors: dict[tuple[float, torch.dtype], torch.Tensor] = {}
        # the host copy of each cached index table: which input rows a band needs is read
        # here, never from the device (that would wait for the device's queued work)
        self._host_indices: dict[tuple[int, int, float], NDArray[np.int64]] = {}

        def const(values: NDArray[np.float64]) -> torch.Tensor:
            return torch.as_tensor(values, dtype=self.dtype, device=self.device)

        # Y = offset/255 + (M/255) . rgb; RGB = inv(M) . (255 ycbcr - offset)
        self._to_ycbcr = const(_RGB_TO_YCBCR / 255.0)
        self._ycbcr_offset = const(_YCBCR_OFFSET / 255.0)
        self._to_rgb = const(_YCBCR_TO_RGB)
        self._rgb_offset = const(_YCBCR_OFFSET)

    def divide(self, tensor: torch.Tensor, value: float) -> torch.Tensor:
        """``tensor / value`` as true division, as the reference's numpy computes it. A
        Python number as divisor is a CPU scalar, which PyTorch's CUDA kernel turns into
        ``tensor * (1 / value)`` (126 of the 256 uint8 values and 512 of the 65,536 uint16
        values then differ from true division in float32); a 0-dim tensor on the device is
        divided elementwise. The divisors are made once per (value, dtype)."""
        import torch

        key = (float(value), tensor.dtype)
        divisor = self._divisors.get(key)
        if divisor is None:
            divisor = torch.full((), float(value), dtype=tensor.dtype, device=self.device)
            self._divisors[key] = divisor
        return tensor / divisor

    # -- upload ------------------------------------------------------------------------------

    def upload(
        self, samples: NDArray[np.generic], *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        """``(H, W, C)`` uint8/uint16 host samples -> the same tensor on the device.

        On CUDA the samples go through pinned memory and ``stream`` (asynchronous: the caller
        orders later work after it, e.g. ``compute.wait_stream(stream)``)."""
        import torch

        if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
            raise InvalidInputError(
                f"expected (H, W, C) samples with C in 1..4, got shape {samples.shape}"
            )
        if samples.dtype not in (np.uint8, np.uint16):
            raise InvalidInputError(f"expected uint8 or uint16 samples, got {samples.dtype}")
        host = torch.from_numpy(np.require(samples, requirements=["C", "W"]))
        if self.device.type != "cuda":
            return host.to(self.device)
        pinned = host.pin_memory()
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            on_device = pinned.to(self.device, non_blocking=True)
        return on_device

    # -- preparation -------------------------------------------------------------------------

    def contributions(
        self, in_length: int, out_length: int, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``protocol.resize_contributions`` on the device: weights ``(taps, out)`` in the compute
        dtype and 0-based source indices ``(taps, out)`` (int64), copied once and cached."""
        import torch

        key = (in_length, out_length, float(scale))
        cached = self._contrib.get(key)
        if cached is None:
            weights, indices = protocol.resize_contributions(in_length, out_length, float(scale), True)
            host = np.ascontiguousarray(indices.T)
            cached = (
                torch.as_tensor(np.ascontiguousarray(weights.T), dtype=self.dtype, device=self.device),
                torch.as_tensor(host, dtype=torch.int64, device=self.device),
            )
            self._contrib[key] = cached
            self._host_indices[key] = host
        return cached

    def _resize_axis(
        self, planes: torch.Tensor, axis: int, weights: torch.Tensor, indices: torch.Tensor
    ) -> torch.Tensor:
        """Weighted gather along ``axis`` (1 = rows, 2 = columns) of ``(C, H, W)`` planes:
        ``out[o] = sum_t weights[t, o] * planes[indices[t, o]]``, one tap at a time so the
        only temporaries are output-sized."""
        shape = (-1, 1) if axis == 1 else (-1,)
        result: torch.Tensor | None = None
        for tap in range(int(weights.shape[0])):
            term = planes.index_select(axis, indices[tap]) * weights[tap].reshape(shape)
            result = term if result is None else result.add_(term)
        assert result is not None
        return result

    def resize_rows(
        self,
        read: Callable[[int, int], torch.Tensor],
        in_shape: tuple[int, int],
        out_shape: tuple[int, int],
        start: int,
        stop: int,
    ) -> torch.Tensor:
        """Rows ``[start, stop)`` of the MATLAB bicubic resize of ``(C, H, W)`` planes to
        ``out_shape``, where ``read(a, b)`` gives input rows ``[a, b)`` in the compute dtype.
        Only the input rows those output rows need are read."""
        height, width = in_shape
        out_h, out_w = out_shape
        scale_h, scale_w = out_h / height, out_w / width
        resize_rows = not (height == out_h and scale_h == 1.0)
        resize_cols = not (width == out_w and scale_w == 1.0)
        columns_first = scale_w < scale_h  # imresize: smaller scale first, ties rows first
        col_weights, col_indices = (
            self.contributions(width, out_w, scale_w) if resize_cols else (None, None)
        )

        def columns(planes: torch.Tensor) -> torch.Tensor:
            if col_weights is None or col_indices is None:
                return planes
            return self._resize_axis(planes, 2, col_weights, col_indices)

        if not resize_rows:
            return columns(read(start, stop))
        weights, indices = self.contributions(height, out_h, scale_h)
        wanted = indices[:, start:stop]
        host = self._host_indices[(height, out_h, float(scale_h))][:, start:stop]
        low, high = int(host.min()), int(host.max()) + 1  # no host synchronisation
        block = read(low, high)
        if columns_first:
            block = columns(block)
        block = self._resize_axis(block, 1, weights[:, start:stop], wanted - low)
        return block if columns_first else columns(block)

    def prepare_rows(
        self, samples: torch.Tensor, scale: float, start: int, stop: int
    ) -> DevicePlanes:
        """Rows ``[start, stop)`` of :func:`vdsr_deploy.planes.colour.prepare` for device samples
        ``(H, W, C)`` uint8/uint16 (C = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA)."""
        import torch

        if samples.ndim != 3 or samples.shape[2] not in (1, 2, 3, 4):
            raise InvalidInputError(
                f"expected (H, W, C) samples with C in 1..4, got shape {tuple(samples.shape)}"
            )
        if samples.dtype not in (torch.uint8, torch.uint16):
            raise InvalidInputError(f"expected uint8 or uint16 samples, got {samples.dtype}")
        peak = 255.0 if samples.dtype == torch.uint8 else 65535.0
        height, width, channels = (int(v) for v in samples.shape)
        out = output_shape(height, width, scale)
        if not 0 <= start < stop <= out[0]:
            raise InvalidInputError(f"expected 0 <= start < stop <= {out[0]}, got [{start}, {stop})")

        def pixels(a: int, b: int, first: int, last: int) -> torch.Tensor:
            # the reference's float32 pixels (samples / peak), then the compute dtype, (C, R, W)
            part = self.divide(samples[a:b, :, first:last].to(torch.float32), peak)
            converted: torch.Tensor = part.to(self.dtype).permute(2, 0, 1).contiguous()
            return converted

        def colour_rows(a: int, b: int) -> torch.Tensor:
            if channels >= 3:
                rgb = pixels(a, b, 0, 3)
                return torch.einsum("ij,jhw->ihw", self._to_ycbcr, rgb) + self._ycbcr_offset.reshape(3, 1, 1)
            gray = pixels(a, b, 0, 1)
            return self.divide(16.0 + 219.0 * gray, 255.0)

        planes = self.resize_rows(colour_rows, (height, width), out, start, stop)
        alpha = None
        if channels in (2, 4):
            alpha = self.resize_rows(
                lambda a, b: pixels(a, b, channels - 1, channels), (height, width), out, start, stop
            )[0]
            alpha = alpha.to(torch.float32).clamp_(0.0, 1.0)  # the reference clips after the cast
        # float32 planes, as the reference's PreparedImage (and half the memory)
        chroma = planes[1:].to(torch.float32) if channels >= 3 else None
        return DevicePlanes(
            planes[0].to(torch.float32), chroma, None if alpha is None else alpha.to(torch.float32)
        )

    # -- finishing ---------------------------------------------------------------------------

    def finish(self, planes: DevicePlanes, y: torch.Tensor) -> torch.Tensor:
        """The network's Y ``(R, W')`` plus chroma/alpha -> ``(C, R, W')`` float32 in [0, 1]
        (:func:`vdsr_deploy.planes.colour.finish` on the device; C = 1..4 as the input had)."""
        import torch

        if tuple(y.shape) != tuple(planes.y.shape):
            raise InvalidInputError(
                f"expected Y of shape {tuple(planes.y.shape)}, got {tuple(y.shape)}"
            )
        y = y.to(torch.float32)  # the network's output, as the reference sees it
        if planes.chroma is not None:
            ycbcr = torch.cat([y[None], planes.chroma]).to(self.dtype) * 255.0
            ycbcr -= self._rgb_offset.reshape(3, 1, 1)
            colour = torch.einsum("ij,jhw->ihw", self._to_rgb, ycbcr)
        else:
            colour = self.divide(y * 255.0 - 16.0, 219.0)[None]  # float32, as the reference
        colour = colour.to(torch.float32)  # the reference rounds to float32 before clipping
        if planes.alpha is not None:
            colour = torch.cat([colour, planes.alpha.to(torch.float32)[None]])
        return colour.clamp_(0.0, 1.0)

    def quantize(self, pixels: torch.Tensor, bit_depth: int) -> torch.Tensor:
        """``(C, R, W)`` in [0, 1] -> ``(R, W, C)`` uint8/uint16 samples (contiguous), as
        :func:`vdsr_deploy.imageio.quantize`: scale, round half to even, saturate."""
        import torch

        if bit_depth not in SAMPLE_PEAKS:
            raise InvalidInputError(f"bit_depth: expected 8 or 16, got {bit_depth}")
        peak = SAMPLE_PEAKS[bit_depth]
        scaled = (pixels.to(self.dtype) * peak).round_().clamp_(0.0, peak)
        dtype = torch.uint8 if bit_depth == 8 else torch.uint16
        return scaled.to(dtype).permute(1, 2, 0).contiguous()
