"""Colour handling around the Y-only network: pure numpy, runtime-agnostic.

RGB: to YCbCr (MATLAB BT.601 studio range), MATLAB-bicubic upscale of all three channels,
the network refines Y, back to RGB. Gray: treated as R = G = B, i.e. Y = (16 + 219 g) / 255,
which is exactly what the model saw in training, and mapped back afterwards. Alpha is
upscaled bicubically on its own and clipped to [0, 1].
"""

from __future__ import annotations

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
        raise InvalidInputError(f"expected (H, W, C) pixels with C in 1..4, got shape {pixels.shape}")
    if not scale > 0:
        raise InvalidInputError(f"expected a positive scale, got {scale}")
    shape = output_shape(pixels.shape[0], pixels.shape[1], scale)
    channels = pixels.shape[2]
    alpha = _resize(pixels[..., -1], shape).clip(0.0, 1.0) if channels in (2, 4) else None
    if channels >= 3:
        ycbcr = protocol.rgb2ycbcr(pixels[..., :3])
        upscaled = _resize(ycbcr, shape)
        return PreparedImage(np.ascontiguousarray(upscaled[..., 0]), np.ascontiguousarray(upscaled[..., 1:]), alpha)
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
