"""Colour handling around the Y-only network: pure numpy, runtime-agnostic.

RGB: to YCbCr (MATLAB BT.601 studio range), MATLAB-bicubic upscale of all three channels,
the network refines Y, back to RGB. Gray: treated as R = G = B, i.e. Y = (16 + 219 g) / 255,
which is exactly what the model saw in training, and mapped back afterwards. Alpha is
upscaled bicubically on its own and clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class PreparedImage:
    """Network input ``y`` (H', W') float32 plus what is needed to rebuild the image."""

    y: F32
    chroma: F32 | None  # (H', W', 2) Cb, Cr in [0, 1], or None for gray
    alpha: F32 | None  # (H', W') in [0, 1], or None

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.y.shape[0]), int(self.y.shape[1]))


def output_shape(height: int, width: int, scale: float) -> tuple[int, int]:
    """Output size for ``scale`` (MATLAB's ``ceil(in * scale)``)."""
    return protocol.output_length(height, scale), protocol.output_length(width, scale)


def _resize(plane: NDArray[np.floating], shape: tuple[int, int]) -> F32:
    if plane.shape[:2] == shape:
        return np.asarray(plane, dtype=np.float32)
    return np.asarray(protocol.imresize(plane, output_shape=shape), dtype=np.float32)


def prepare(pixels: NDArray[np.floating], scale: float) -> PreparedImage:
    """Split ``(H, W, C)`` pixels in [0, 1] (C = 1, 2, 3 or 4) and upscale by ``scale``."""
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise InvalidInputError(
            f"expected (H, W, C) pixels with C in 1..4, got shape {pixels.shape}"
        )
    if not scale > 0:
        raise InvalidInputError(f"expected a positive scale, got {scale}")
    shape = output_shape(pixels.shape[0], pixels.shape[1], scale)
    channels = pixels.shape[2]
    alpha = _resize(pixels[..., -1], shape).clip(0.0, 1.0) if channels in (2, 4) else None
    if channels >= 3:
        ycbcr = protocol.rgb2ycbcr(pixels[..., :3])
        upscaled = _resize(ycbcr, shape)
        y = np.ascontiguousarray(upscaled[..., 0])
        return PreparedImage(y, np.ascontiguousarray(upscaled[..., 1:]), alpha)
    gray = pixels[..., 0].astype(np.float64)
    y = _resize((16.0 + 219.0 * gray) / 255.0, shape)
    return PreparedImage(y, None, alpha)


def finish(prepared: PreparedImage, y: NDArray[np.floating]) -> F32:
    """Recombine the network's Y with chroma/alpha: ``(H', W', C)`` float32 in [0, 1]."""
    if y.shape != prepared.y.shape:
        raise InvalidInputError(f"expected Y of shape {prepared.y.shape}, got {y.shape}")
    if prepared.chroma is not None:
        ycbcr = np.concatenate([y[..., None].astype(np.float32), prepared.chroma], axis=2)
        colour = protocol.ycbcr2rgb(ycbcr).astype(np.float32)
    else:
        colour = ((y.astype(np.float32) * 255.0 - 16.0) / 219.0)[..., None]
    parts = [colour] if prepared.alpha is None else [colour, prepared.alpha[..., None]]
    result: F32 = np.clip(np.concatenate(parts, axis=2), 0.0, 1.0).astype(np.float32)
    return result


# ---------------------------------------------------------------------------------------------
# Row bands: the same planes as :func:`prepare`, a few rows at a time, with bounded memory.

DEFAULT_CHUNK_BYTES = 32 << 20
_MIN_ROWS = 2  # numpy's einsum picks another kernel for 1-row operands; 2+ rows match bit for bit


class RowPreparer:
    """Rows of :func:`prepare`'s planes, computed on demand and bit-identical to it.

    MATLAB bicubic is local: output row ``r`` depends on a few input rows only (mirrored at
    the border), so any band of rows can be produced from the input rows it needs. Memory
    is bounded by ``chunk_bytes`` (the resize's float64 temporaries), not by the image.

    ``source``: ``(H, W, C)`` with C in 1..4, either float pixels in ``[0, 1]`` (as given to
    :func:`prepare`) or integer samples with ``peak`` (255 or 65535): then row ``i`` is
    ``source[i].astype(float32) / peak``, which is exactly ``DecodedImage.pixels``.
    """

    def __init__(
        self,
        source: NDArray[np.generic],
        scale: float,
        *,
        peak: float | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if source.ndim != 3 or source.shape[2] not in (1, 2, 3, 4):
            raise InvalidInputError(
                f"expected (H, W, C) pixels with C in 1..4, got shape {source.shape}"
            )
        if not scale > 0:
            raise InvalidInputError(f"expected a positive scale, got {scale}")
        if np.issubdtype(source.dtype, np.integer) and not peak:
            raise InvalidInputError("integer samples need their peak value (255 or 65535)")
        if chunk_bytes < 1:
            raise InvalidInputError(f"chunk_bytes: expected >= 1, got {chunk_bytes}")
        self._source = source
        self._peak = peak
        self._chunk_bytes = chunk_bytes
        self.in_shape = (int(source.shape[0]), int(source.shape[1]))
        self.channels = int(source.shape[2])
        self.out_shape = output_shape(*self.in_shape, scale)

    def _pixels(self, start: int, stop: int) -> NDArray[np.floating]:
        rows = self._source[start:stop]
        if self._peak:
            converted: NDArray[np.floating] = rows.astype(np.float32) / np.float32(self._peak)
            return converted
        return np.asarray(rows)

    def _colour_rows(self, start: int, stop: int) -> NDArray[np.float64]:
        pixels = self._pixels(start, stop)
        if self.channels >= 3:
            return protocol.rgb2ycbcr(pixels[..., :3])
        gray = pixels[..., 0].astype(np.float64)
        result: NDArray[np.float64] = (16.0 + 219.0 * gray) / 255.0
        return result

    def _alpha_rows(self, start: int, stop: int) -> NDArray[np.float64]:
        return self._pixels(start, stop)[..., -1].astype(np.float64)

    def rows(self, start: int, stop: int) -> PreparedImage:
        """Rows ``[start, stop)`` of ``prepare(pixels, scale)``: Y, chroma and alpha."""
        height, width = self.out_shape
        if not 0 <= start < stop <= height:
            raise InvalidInputError(
                f"expected 0 <= start < stop <= {height}, got [{start}, {stop})"
            )
        count = stop - start
        colour_channels = 3 if self.channels >= 3 else 1
        has_alpha = self.channels in (2, 4)
        y = np.empty((count, width), dtype=np.float32)
        chroma = np.empty((count, width, 2), dtype=np.float32) if colour_channels == 3 else None
        alpha = np.empty((count, width), dtype=np.float32) if has_alpha else None
        per_row = width * (colour_channels + 1) * 8 * 8  # float64 gathers of ~6 taps, plus results
        step = max(_MIN_ROWS, self._chunk_bytes // max(1, per_row))
        for first in range(start, stop, step):
            last = min(stop, first + step)
            planes = _resize_rows(self._colour_rows, self.in_shape, self.out_shape, first, last)
            upscaled = planes.astype(np.float32)
            if chroma is not None:
                y[first - start : last - start] = upscaled[..., 0]
                chroma[first - start : last - start] = upscaled[..., 1:]
            else:
                y[first - start : last - start] = upscaled
            if alpha is not None:
                band = _resize_rows(self._alpha_rows, self.in_shape, self.out_shape, first, last)
                alpha[first - start : last - start] = band.astype(np.float32).clip(0.0, 1.0)
        return PreparedImage(y, chroma, alpha)


def _resize_rows(
    read: Callable[[int, int], NDArray[np.float64]],
    in_shape: tuple[int, int],
    out_shape: tuple[int, int],
    start: int,
    stop: int,
) -> NDArray[np.float64]:
    """Rows ``[start, stop)`` of ``protocol.imresize(image, output_shape=out_shape)`` where
    ``read(a, b)`` returns float64 rows ``[a, b)`` of the image: same weights, same order of
    axes, same arithmetic, so the result is bit-identical to the whole-image resize."""
    height, width = in_shape
    out_h, out_w = out_shape
    scale_h, scale_w = out_h / height, out_w / width
    count = stop - start
    first, last = start, stop
    if last - first < _MIN_ROWS and out_h >= _MIN_ROWS:
        first = max(0, last - _MIN_ROWS)
        last = first + _MIN_ROWS
    resize_rows = not (height == out_h and scale_h == 1.0)
    resize_cols = not (width == out_w and scale_w == 1.0)
    columns_first = scale_w < scale_h  # imresize: smaller scale first, ties rows first
    if not resize_rows:
        block = read(first, last)
        result = protocol._resize_axis(block, 1, out_w, scale_w) if resize_cols else block
        return result[start - first : start - first + count]
    weights, indices = protocol.resize_contributions(height, out_h, float(scale_h), True)
    wanted = indices[first:last]
    low, high = int(wanted.min()), int(wanted.max()) + 1
    block = read(low, high)
    if resize_cols and columns_first:
        block = protocol._resize_axis(block, 1, out_w, scale_w)
    gathered = block[wanted - low]
    expand = (slice(None), slice(None)) + (None,) * (block.ndim - 1)
    taps = np.broadcast_to(weights[first:last][expand], gathered.shape)
    result = np.einsum("ot...,ot...->o...", gathered, taps)
    if resize_cols and not columns_first:
        result = protocol._resize_axis(result, 1, out_w, scale_w)
    return np.asarray(result)[start - first : start - first + count]
