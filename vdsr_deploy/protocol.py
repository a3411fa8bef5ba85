"""The evaluation protocol every published VDSR number uses, MATLAB-exact.

- :func:`imresize` reproduces MATLAB ``imresize(..., 'bicubic')``: Keys cubic (a = -0.5),
  kernel stretched by ``1/scale`` when shrinking (antialiasing), output size
  ``ceil(in * scale)``, mirror-symmetric borders, the dimension with the smaller scale first.
- :func:`rgb2ycbcr` / :func:`ycbcr2rgb`: MATLAB's BT.601 studio-range conversion.
- :func:`modcrop`, :func:`psnr`, :func:`ssim`: Y only, ``shave`` pixels cut from every border.
- :func:`check_scale`: the one rule for an upscaling factor, used by every command and config.

All functions are pure numpy and work in float64 unless stated.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ConfigError, InvalidInputError

FloatArray = NDArray[np.float64]

# MATLAB rgb2ycbcr (double input in [0, 1]; output in [0, 1] scaled from 0..255 studio range)
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def _cubic(x: FloatArray) -> FloatArray:
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    result: FloatArray = near + far
    return result


def check_scale(value: float, *, integer: bool = False, name: str = "scale") -> float:
    """``value`` as a float if it is an upscaling factor: finite and > 1, and with
    ``integer`` a whole number (the paper's protocol modcrops and shrinks HR images by an
    integer factor: ``vdsr eval``, ``vdsr validate --hr``, training); else ConfigError
    "<name>: expected a factor > 1, got X"."""
    number = float(value)
    if not (number > 1.0 and math.isfinite(number)):
        raise ConfigError(f"{name}: expected a factor > 1, got {_scale_text(number)}")
    if integer and not number.is_integer():
        raise ConfigError(
            f"{name}: expected an integer factor (the paper's protocol crops and shrinks each HR image by "
            f"it; upscale takes any factor > 1), got {_scale_text(number)}"
        )
    return number


def _scale_text(number: float) -> str:
    """``2`` for 2 and 2.0 alike (so every command words a refusal the same), else as given."""
    return str(int(number)) if math.isfinite(number) and number.is_integer() else str(number)


def output_length(in_length: int, scale: float) -> int:
    """MATLAB's output size ``ceil(in * scale)``, robust to 1/3-style float error."""
    return max(1, math.ceil(in_length * scale - 1e-9))


@lru_cache(maxsize=256)
def resize_contributions(
    in_length: int, out_length: int, scale: float, antialias: bool
) -> tuple[FloatArray, NDArray[np.intp]]:
    """Weights ``(out, taps)`` and 0-based source indices ``(out, taps)`` for one axis."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kernel(x: FloatArray) -> FloatArray:
            return scale * _cubic(scale * x)
    else:
        kernel = _cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    index_array = mirror[np.mod(indices.astype(np.intp) - 1, 2 * in_length)]
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    index_array = np.ascontiguousarray(index_array[:, keep])
    weights.setflags(write=False)
    index_array.setflags(write=False)
    return weights, index_array


def _resize_axis(image: FloatArray, axis: int, out_length: int, scale: float) -> FloatArray:
    in_length = image.shape[axis]
    weights, indices = resize_contributions(in_length, out_length, float(scale), True)
    moved = np.moveaxis(image, axis, 0)
    gathered = moved[indices]  # (out, taps, ...)
    expand = (slice(None), slice(None)) + (None,) * (moved.ndim - 1)
    result = np.einsum(
        "ot...,ot...->o...", gathered, np.broadcast_to(weights[expand], gathered.shape)
    )
    return np.moveaxis(result, 0, axis)


def imresize(
    image: NDArray[np.generic],
    scale: float | None = None,
    *,
    output_shape: tuple[int, int] | None = None,
) -> NDArray[np.generic]:
    """MATLAB ``imresize(image, scale, 'bicubic')``.

    ``image``: ``(H, W)`` or ``(H, W, C)``; float arrays are resized in float64 and returned as
    float64 (values are not clipped, like MATLAB on doubles); ``uint8``/``uint16`` arrays are
    computed in float64 then rounded half away from zero and saturated, like MATLAB.
    Give ``scale`` (any positive factor) or ``output_shape`` (then each axis uses its own
    ``out / in`` scale).
    """
    if image.ndim not in (2, 3):
        raise InvalidInputError(f"expected an (H, W) or (H, W, C) array, got shape {image.shape}")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise InvalidInputError(f"expected a non-empty image, got shape {image.shape}")
    if output_shape is not None:
        out_h, out_w = output_shape
        if out_h < 1 or out_w < 1:
            raise InvalidInputError(f"expected a positive output shape, got {output_shape}")
        scales = (out_h / height, out_w / width)
    elif scale is not None:
        if not (scale > 0 and math.isfinite(scale)):
            raise InvalidInputError(f"expected a positive finite scale, got {scale}")
        scales = (float(scale), float(scale))
        out_h, out_w = output_length(height, scale), output_length(width, scale)
    else:
        raise InvalidInputError("imresize needs a scale or an output_shape")
    input_dtype = image.dtype
    result = image.astype(np.float64, copy=False)
    lengths = (out_h, out_w)
    # MATLAB resizes the dimension with the smaller scale first (ties: rows first)
    for axis in sorted((0, 1), key=lambda a: scales[a]):
        if result.shape[axis] == lengths[axis] and scales[axis] == 1.0:
            continue
        result = _resize_axis(result, axis, lengths[axis], scales[axis])
    if np.issubdtype(input_dtype, np.integer):
        info = np.iinfo(input_dtype)  # type: ignore[type-var]
        rounded = np.sign(result) * np.floor(np.abs(result) + 0.5)
        integer_result: NDArray[np.generic] = np.clip(rounded, info.min, info.max).astype(input_dtype)
        return integer_result
    return result


def rgb2ycbcr(rgb: NDArray[np.floating]) -> FloatArray:
    """MATLAB ``rgb2ycbcr`` on doubles: ``(..., 3)`` RGB in [0, 1] -> YCbCr in [0, 1].

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255, i.e. BT.601 studio range.
    """
    if rgb.shape[-1] != 3:
        raise InvalidInputError(f"expected (..., 3) RGB, got shape {rgb.shape}")
    ycbcr: FloatArray = (rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET) / 255.0
    return ycbcr


def rgb2y(rgb: NDArray[np.floating]) -> FloatArray:
    """Y channel only of :func:`rgb2ycbcr`: ``(..., 3)`` in [0, 1] -> ``(...)`` in [0, 1]."""
    if rgb.shape[-1] != 3:
        raise InvalidInputError(f"expected (..., 3) RGB, got shape {rgb.shape}")
    y: FloatArray = (rgb.astype(np.float64) @ _RGB_TO_YCBCR[0] + 16.0) / 255.0
    return y


def ycbcr2rgb(ycbcr: NDArray[np.floating]) -> FloatArray:
    """Inverse of :func:`rgb2ycbcr` (MATLAB ``ycbcr2rgb`` on doubles), not clipped."""
    if ycbcr.shape[-1] != 3:
        raise InvalidInputError(f"expected (..., 3) YCbCr, got shape {ycbcr.shape}")
    inverse = np.linalg.inv(_RGB_TO_YCBCR)
    rgb: FloatArray = (ycbcr.astype(np.float64) * 255.0 - _YCBCR_OFFSET) @ inverse.T
    return rgb


def modcrop(image: NDArray[Any], scale: int) -> NDArray[Any]:
    """Crop the bottom/right so height and width divide by ``scale`` (keep top-left)."""
    if scale < 1:
        raise InvalidInputError(f"expected an integer scale >= 1, got {scale}")
    height, width = image.shape[:2]
    cropped: NDArray[Any] = image[: height - height % scale, : width - width % scale]
    return cropped


def shave(image: NDArray[Any], border: int) -> NDArray[Any]:
    """Remove ``border`` pixels from every side."""
    if border <= 0:
        return image
    inner: NDArray[Any] = image[border:-border, border:-border]
    return inner


def psnr(
    a: NDArray[np.floating], b: NDArray[np.floating], *, border: int = 0, peak: float = 1.0
) -> float:
    """PSNR in dB of two same-shape arrays after shaving ``border`` px (``peak`` = max value)."""
    if a.shape != b.shape:
        raise InvalidInputError(f"expected equal shapes, got {a.shape} and {b.shape}")
    diff = shave(a.astype(np.float64), border) - shave(b.astype(np.float64), border)
    mse = float(np.mean(diff * diff))
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(peak * peak / mse)


def task_psnr(sr_y: NDArray[np.floating], hr_y: NDArray[np.floating], scale: int) -> float:
    """The paper's PSNR of an output Y in [0, 1] against the HR Y in [0, 1]: the output
    clipped to [0, 1], both on the 0..255 scale in double precision without rounding (as
    the MATLAB scripts), ``scale`` px shaved."""
    sr = np.clip(sr_y.astype(np.float64), 0.0, 1.0)
    return psnr(sr * 255.0, np.asarray(hr_y, dtype=np.float64) * 255.0, border=scale, peak=255.0)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> FloatArray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(coords**2) / (2 * sigma * sigma))
    window: FloatArray = np.outer(g, g)
    normalised: FloatArray = window / window.sum()
    return normalised


def _filter_valid(image: FloatArray, window: FloatArray) -> FloatArray:
    size = window.shape[0]
    view = np.lib.stride_tricks.sliding_window_view(image, (size, size))
    result: FloatArray = np.einsum("ijkl,kl->ij", view, window)
    return result


def ssim(
    a: NDArray[np.floating], b: NDArray[np.floating], *, border: int = 0, peak: float = 1.0
) -> float:
    """SSIM (Wang et al. 2004, the reference ``ssim_index.m``) on 2-D arrays.

    11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering, after
    shaving ``border`` px. ``peak`` is the dynamic range L.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise InvalidInputError(f"expected two equal 2-D arrays, got {a.shape} and {b.shape}")
    x = shave(a.astype(np.float64), border)
    y = shave(b.astype(np.float64), border)
    if min(x.shape) < 11:
        raise InvalidInputError(f"expected at least 11x11 pixels after shave, got {x.shape}")
    window = _gaussian_window()
    c1 = (0.01 * peak) ** 2
    c2 = (0.03 * peak) ** 2
    mu_x = _filter_valid(x, window)
    mu_y = _filter_valid(y, window)
    sigma_x = _filter_valid(x * x, window) - mu_x**2
    sigma_y = _filter_valid(y * y, window) - mu_y**2
    sigma_xy = _filter_valid(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    )
    return float(np.mean(ssim_map))


def degrade(hr: NDArray[np.floating], scale: float) -> FloatArray:
    """The paper's degradation: bicubic shrink by ``scale`` then bicubic enlarge back.

    ``hr`` must already be cropped to a multiple of ``scale`` when ``scale`` is an integer
    (see :func:`modcrop`); the result has the same shape as ``hr``.
    """
    lr = imresize(hr, 1.0 / scale)
    result: FloatArray = np.asarray(imresize(lr, output_shape=hr.shape[:2]), dtype=np.float64)
    return result
