"""A video frame's decoded planes straight to the network and back (no RGB in between).

The paper's network input is BT.601 studio-range luma scaled by 1/255: Y in ``[16, 235] / 255``.
A limited-range video's Y plane already is that quantity (at 8 bits ``Y / 255``; at ``b``
bits, ``Y / (255 * 2**(b - 8))``), so it goes in as it is. A full-range plane (``yuvj``,
``color_range=pc``) is mapped to studio range the way gray images are (``(16 + 219 g) / 255``).
Chroma planes are resized with the same MATLAB bicubic as the Y plane, at their own
(subsampled) size, and never converted. Pure numpy, runtime-agnostic.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError

F32 = NDArray[np.float32]
Samples = NDArray[Any]  # uint8, or uint16 for 9-16-bit samples


def _check(bit_depth: int) -> None:
    if not 8 <= bit_depth <= 16:
        raise InvalidInputError(f"expected a bit depth of 8..16, got {bit_depth}")


def luma_in(samples: Samples, bit_depth: int, full_range: bool) -> NDArray[np.float64]:
    """A Y plane's samples as the network's studio-range luma in ``[0, 1]`` (float64)."""
    _check(bit_depth)
    values = samples.astype(np.float64)
    if full_range:
        result: NDArray[np.float64] = (16.0 + 219.0 * (values / float((1 << bit_depth) - 1))) / 255.0
        return result
    return values / float(255 << (bit_depth - 8))


def luma_out(y: NDArray[np.floating], bit_depth: int, full_range: bool) -> Samples:
    """The network's luma back to samples: rounded half to even, clipped to the sample range."""
    _check(bit_depth)
    peak = (1 << bit_depth) - 1
    values = np.asarray(y, dtype=np.float64)
    scaled = (values * 255.0 - 16.0) / 219.0 * peak if full_range else values * float(255 << (bit_depth - 8))
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    result: Samples = np.clip(np.rint(scaled), 0, peak).astype(dtype)
    return result


def upscale_luma(samples: Samples, shape: tuple[int, int], bit_depth: int, full_range: bool) -> F32:
    """The network input for a Y plane: its luma, MATLAB-bicubic resized to ``shape``."""
    return _resize(luma_in(samples, bit_depth, full_range), shape)


def resize_chroma(samples: Samples, shape: tuple[int, int], bit_depth: int) -> Samples:
    """A chroma plane MATLAB-bicubic resized to ``shape``, rounded and clipped to its range."""
    _check(bit_depth)
    peak = (1 << bit_depth) - 1
    resized = _resize(samples.astype(np.float64) / peak, shape).astype(np.float64)
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    result: Samples = np.clip(np.rint(resized * peak), 0, peak).astype(dtype)
    return result


def _resize(plane: NDArray[np.float64], shape: tuple[int, int]) -> F32:
    if plane.shape == shape:
        return plane.astype(np.float32)
    return np.asarray(protocol.imresize(plane, output_shape=shape), dtype=np.float32)
