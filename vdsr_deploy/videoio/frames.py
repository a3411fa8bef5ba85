"""Decoded video frames <-> numpy samples, the two ways a frame can reach the network.

- **RGB** (:func:`frame_rgb`, :func:`rgb_frame`): the frame converted to RGB by FFmpeg's
  swscale with the frame's own matrix and range, 8-bit (``rgb24``) or 16-bit (``rgb48``) for
  deeper formats; the way back converts to the output's pixel format with the same tags.
- **planes** (:func:`frame_planes`, :func:`planes_frame`): the decoded Y, Cb, Cr planes as
  they are (``uint8``, or ``uint16`` holding the 9-16-bit values), with no colour conversion.
  Only for planar YUV and gray formats without alpha (:func:`has_luma_planes`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.videoio.library import require_av
from vdsr_deploy.videoio.probe import ColourTags

Samples = NDArray[Any]  # uint8, or uint16 for 9-16-bit samples

RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2  # FFmpeg's AVColorRange
INTERPOLATION = "BICUBIC"  # swscale's chroma resampling for RGB <-> YUV, both ways


def rgb_format(bit_depth: int) -> str:
    """The RGB format a frame of ``bit_depth`` bits is converted to (and from)."""
    return "rgb24" if bit_depth <= 8 else "rgb48le"


def _range(value: int) -> int | None:
    return value if value in (RANGE_LIMITED, RANGE_FULL) else None


def frame_rgb(frame: Any, bit_depth: int) -> Samples:
    """``(H, W, 3)`` RGB samples of a decoded frame (uint8, or uint16 for deeper formats)."""
    samples: Samples = frame.to_ndarray(
        format=rgb_format(bit_depth),
        src_color_range=_range(int(frame.color_range)),
        interpolation=INTERPOLATION,
    )
    return samples


def rgb_frame(samples: Samples, pix_fmt: str, colour: ColourTags) -> Any:
    """A frame in ``pix_fmt`` from RGB samples, converted with the source's matrix and range
    and tagged with all its colour tags."""
    av = require_av()
    bit_depth = 8 if samples.dtype == np.uint8 else 16
    rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(samples), format=rgb_format(bit_depth))
    frame = rgb.reformat(
        format=pix_fmt,
        dst_colorspace=colour.matrix if colour.matrix not in (0, 2) else None,
        dst_color_range=_range(colour.range),
        interpolation=INTERPOLATION,
    )
    tag(frame, colour)
    return frame


def tag(frame: Any, colour: ColourTags) -> None:
    """Set ``frame``'s colour tags to ``colour``."""
    frame.color_primaries = colour.primaries
    frame.color_trc = colour.transfer
    frame.colorspace = colour.matrix
    frame.color_range = colour.range


def has_luma_planes(pix_fmt: str) -> bool:
    """Whether ``pix_fmt`` is planar YUV or gray, little-endian, without alpha: the formats
    whose Y plane can go to the network directly."""
    av = require_av()
    fmt = av.VideoFormat(pix_fmt)
    components = list(fmt.components)
    if fmt.is_rgb or fmt.has_palette or len(components) not in (1, 3) or pix_fmt.endswith("be"):
        return False
    return all(c.plane == i and not c.is_alpha for i, c in enumerate(components))


def _dtype(bit_depth: int) -> type[np.uint8] | type[np.uint16]:
    return np.uint8 if bit_depth <= 8 else np.uint16


def frame_planes(frame: Any, bit_depth: int) -> list[Samples]:
    """The frame's planes (Y, then Cb and Cr if any), each ``(h, w)``, copied out of FFmpeg's
    padded buffers."""
    if not has_luma_planes(frame.format.name):
        raise InvalidInputError(f"expected a planar YUV or gray frame, got {frame.format.name}")
    dtype = _dtype(bit_depth)
    size = np.dtype(dtype).itemsize
    planes: list[Samples] = []
    for plane in frame.planes:
        buffer = np.frombuffer(plane, dtype=dtype)
        rows = buffer[: plane.height * (plane.line_size // size)].reshape(plane.height, plane.line_size // size)
        planes.append(rows[:, : plane.width].copy())
    return planes


def plane_shapes(width: int, height: int, pix_fmt: str) -> list[tuple[int, int]]:
    """``(h, w)`` of each plane of a ``width`` x ``height`` frame in ``pix_fmt``."""
    av = require_av()
    frame = av.VideoFrame(width, height, pix_fmt)
    return [(int(p.height), int(p.width)) for p in frame.planes]


def planes_frame(planes: list[Samples], width: int, height: int, pix_fmt: str, colour: ColourTags) -> Any:
    """A ``pix_fmt`` frame holding ``planes`` (shapes as :func:`plane_shapes`), colour-tagged."""
    av = require_av()
    frame = av.VideoFrame(width, height, pix_fmt)
    if len(planes) != len(frame.planes):
        raise InvalidInputError(f"expected {len(frame.planes)} planes for {pix_fmt}, got {len(planes)}")
    for plane, samples in zip(frame.planes, planes, strict=True):
        size = samples.dtype.itemsize
        if samples.shape != (plane.height, plane.width):
            raise InvalidInputError(f"expected a plane of {(plane.height, plane.width)}, got {samples.shape}")
        buffer = np.frombuffer(plane, dtype=samples.dtype)
        rows = buffer[: plane.height * (plane.line_size // size)].reshape(plane.height, plane.line_size // size)
        rows[:, : plane.width] = samples
    tag(frame, colour)
    return frame
