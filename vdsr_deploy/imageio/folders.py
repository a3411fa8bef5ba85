"""Folders of images as evaluation, validation, calibration and training read them: the one
listing (:func:`list_images`) and HR images as the paper's protocol reads them
(:func:`hr_pixels`, :func:`hr_luma`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.imageio.read import IMAGE_SUFFIXES, read_image


def hr_pixels(path: Path) -> NDArray[np.float64]:
    """An HR image as ``(H, W, 3)`` RGB float64 in [0, 1], as MATLAB's im2double reads it
    (8-bit values exact); gray images become R=G=B, alpha is dropped."""
    image = read_image(path)
    pixels = image.pixels.astype(np.float64)
    if image.bit_depth == 8:
        # exact 8-bit values, as MATLAB im2double gives
        pixels = np.rint(pixels * 255.0) / 255.0
    return pixels[..., :3] if pixels.shape[2] >= 3 else np.repeat(pixels[..., :1], 3, axis=2)


def hr_luma(path: Path) -> NDArray[np.float64]:
    """Y (MATLAB rgb2ycbcr) of an HR image in [0, 1]; gray images are treated as R=G=B."""
    return protocol.rgb2y(hr_pixels(path))


def list_images(folder: Path) -> list[Path]:
    """The images directly inside ``folder`` (by suffix, :data:`IMAGE_SUFFIXES`; hidden files
    included, subfolders not), sorted by name: what evaluation, parity and training read.
    A clear error when ``folder`` is not a folder or holds no image."""
    if not folder.is_dir():
        why = " (it does not exist)" if not folder.exists() else ""
        raise InvalidInputError(f"{folder}: not a folder{why}")
    paths = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not paths:
        expected = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InvalidInputError(f"{folder}: no images found (expected {expected} files)")
    return paths
