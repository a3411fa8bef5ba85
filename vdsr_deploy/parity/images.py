"""Images parity is checked on: the bundled sample, generated edge cases, a folder, HR pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.evaluation.run import crop_hr
from vdsr_deploy.imageio import read_image
from vdsr_deploy.imageio.folders import hr_pixels, list_images

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
SAMPLE_IMAGE_NAME = "sample.png"


@dataclass(frozen=True)
class ValidationImage:
    """An image to upscale: ``pixels`` (H, W, C) in [0, 1]; ``hr_y`` the HR Y (float64,
    [0, 1]) the output is scored against, when there is one (``hr_scale``: its integer scale)."""

    name: str
    kind: str
    pixels: F32 = field(repr=False)
    hr_y: F64 | None = field(default=None, repr=False)
    hr_scale: int | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 2, 3, 4):
            raise InvalidInputError(
                f"{self.name}: expected (H, W, C) pixels, got shape {self.pixels.shape}"
            )


def sample_image() -> ValidationImage:
    """The small procedurally drawn picture shipped in ``vdsr_deploy/assets``."""
    from importlib import resources

    path = Path(str(resources.files("vdsr_deploy.assets").joinpath(SAMPLE_IMAGE_NAME)))
    return ValidationImage("sample", "sample", read_image(path).pixels)


def edge_case_images(seed: int = 0) -> list[ValidationImage]:
    """Generated inputs that break naive runtimes and tilers: an odd size larger than a
    256 tile at x2 (border tiles shifted inward), flat gray and saturated white areas, hard
    black/white edges and 1-px lines, 1-pixel-wide rows and columns, a single pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:141, 0:131].astype(np.float32)
    smooth = 0.5 + 0.25 * np.sin(xx / 9.0)[..., None] * np.cos(yy / 13.0)[..., None] * np.array(
        [1.0, 0.6, -0.8]
    )
    odd = (smooth + 0.05 * rng.standard_normal((141, 131, 3))).clip(0, 1)
    checker = ((np.arange(64)[:, None] // 8 + np.arange(64)[None, :] // 8) % 2).astype(np.float32)
    checker[::16, :] = 1.0
    checker[:, 5] = 0.0
    return [
        ValidationImage("odd-141x131", "edge", odd.astype(np.float32)),
        ValidationImage("flat-gray-37x40", "edge", np.full((37, 40, 1), 0.5, np.float32)),
        ValidationImage("flat-white-33x31", "edge", np.ones((33, 31, 3), np.float32)),
        ValidationImage("edges-64x64", "edge", checker[..., None]),
        ValidationImage("row-1x75", "edge", rng.random((1, 75, 3), dtype=np.float32)),
        ValidationImage("column-75x1", "edge", rng.random((75, 1, 1), dtype=np.float32)),
        ValidationImage("pixel-1x1", "edge", np.array([[[0.9, 0.1, 0.4]]], np.float32)),
    ]


def folder_images(folder: Path) -> list[ValidationImage]:
    """Every image in ``folder``, upscaled as it is (no HR to score against)."""
    return [ValidationImage(p.stem, "user", read_image(p).pixels) for p in list_images(folder)]


def hr_images(folder: Path, scale: float) -> list[ValidationImage]:
    """Every HR image in ``folder``, degraded by the paper's protocol (:mod:`vdsr_deploy.evaluation.run`:
    read as MATLAB does, modcrop, MATLAB bicubic shrink by ``scale``) into the colour input;
    the output is scored against its HR Y."""
    s = round(protocol.check_scale(scale, integer=True))
    images: list[ValidationImage] = []
    for path in list_images(folder):
        hr = crop_hr(hr_pixels(path), s, path)
        lr = np.asarray(protocol.imresize(hr, 1.0 / s), dtype=np.float32)
        images.append(ValidationImage(f"{path.stem}-x{s}", "hr", lr, protocol.rgb2y(hr), s))
    return images


def default_images(seed: int = 0) -> list[ValidationImage]:
    """The bundled sample image plus the generated edge cases."""
    return [sample_image(), *edge_case_images(seed)]


def validation_images(
    folder: Path | None, hr: Path | None, scale: float, *, edge_cases: bool = True
) -> list[ValidationImage]:
    """The image set ``vdsr validate`` checks: every image in ``folder``, the HR images in
    ``hr`` (degraded by ``scale``), the sample image when neither is given, and the
    generated edge cases unless ``edge_cases`` is False."""
    images = folder_images(folder) if folder is not None else []
    if hr is not None:
        images += hr_images(hr, scale)
    if folder is None and hr is None:
        images.append(sample_image())
    if edge_cases:
        images += edge_case_images()
    return images
