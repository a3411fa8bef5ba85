"""Exact tiling: pure integer planning and stitching, no model code.

Each output pixel of VDSR depends only on input pixels within the receptive-field radius
(20 px). A tile is a window of the image of at most ``tile`` x ``tile`` pixels; its *core* is
the part of the window kept in the output. Cores partition the image, and every core lies
at least ``halo`` pixels inside its window except where the window touches the image
border. Windows never reach past the border (border windows are shifted inward, not
padded), because the network zero-pads every layer at the true border, which is not the
same as zero-extending the input. An axis shorter than ``tile`` is run at its own length.
With ``halo >= radius`` the stitched result equals whole-image inference up to float
rounding.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ConfigError, InvalidInputError

DEFAULT_TILE = 256
DEFAULT_HALO = 20


@dataclass(frozen=True)
class TileConfig:
    """``tile``: window side in pixels (0 = whole image, no tiling); ``halo``: context kept
    around every core (>= the model's receptive-field radius for exact results)."""

    tile: int = DEFAULT_TILE
    halo: int = DEFAULT_HALO

    def __post_init__(self) -> None:
        if self.halo < 0:
            raise ConfigError(f"halo: expected >= 0, got {self.halo}")
        if self.tile < 0:
            raise ConfigError(f"tile: expected 0 (whole image) or > 2 * halo, got {self.tile}")
        if self.tile and self.tile <= 2 * self.halo:
            raise ConfigError(
                f"tile: expected > 2 * halo = {2 * self.halo} so each tile keeps a core, got {self.tile}"
            )


@dataclass(frozen=True)
class Span:
    """One axis of a tile: the window ``[start, stop)`` and its core ``[core_start, core_stop)``."""

    start: int
    stop: int
    core_start: int
    core_stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Tile:
    """A window of the image (rows ``y``, columns ``x``) and the core it contributes."""

    y: Span
    x: Span

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y.length, self.x.length)


def plan_axis(length: int, tile: int, halo: int) -> list[Span]:
    """Windows and cores along one axis of ``length`` pixels (``tile`` 0 = one window)."""
    if length < 1:
        raise InvalidInputError(f"expected a positive length, got {length}")
    if tile == 0 or length <= tile:
        return [Span(0, length, 0, length)]
    core = tile - 2 * halo
    count = math.ceil((length - 2 * halo) / core)
    starts = [(index * (length - tile)) // (count - 1) for index in range(count)]
    boundaries = [0]
    for previous, current in itertools.pairwise(starts):
        boundaries.append((previous + tile + current) // 2)
    boundaries.append(length)
    return [
        Span(start, start + tile, boundaries[index], boundaries[index + 1])
        for index, start in enumerate(starts)
    ]


def plan_tiles(height: int, width: int, config: TileConfig) -> list[Tile]:
    """Tiles covering an ``height`` x ``width`` image, row-major."""
    rows = plan_axis(height, config.tile, config.halo)
    columns = plan_axis(width, config.tile, config.halo)
    return [Tile(y, x) for y in rows for x in columns]


def extract(image: NDArray[np.float32], tile: Tile) -> NDArray[np.float32]:
    """The window of ``tile`` from a 2-D image (a view, no copy)."""
    return image[tile.y.start : tile.y.stop, tile.x.start : tile.x.stop]


def place(output: NDArray[np.float32], tile: Tile, result: NDArray[np.float32]) -> None:
    """Copy the core of ``result`` (the model's output for ``tile``'s window) into ``output``."""
    if result.shape != tile.shape:
        raise InvalidInputError(f"expected a tile result of shape {tile.shape}, got {result.shape}")
    y, x = tile.y, tile.x
    output[y.core_start : y.core_stop, x.core_start : x.core_stop] = result[
        y.core_start - y.start : y.core_stop - y.start,
        x.core_start - x.start : x.core_stop - x.start,
    ]


def computed_pixels(height: int, width: int, config: TileConfig) -> int:
    """Pixels the network computes for an ``height`` x ``width`` output under ``config``:
    the area of every window, halos and overlaps included (``height * width`` untiled)."""
    rows = plan_axis(height, config.tile, config.halo)
    columns = plan_axis(width, config.tile, config.halo)
    return sum(r.length for r in rows) * sum(c.length for c in columns)


def halo_overhead(shapes: list[tuple[int, int]], config: TileConfig) -> float:
    """The fraction of extra pixels the halos cost over output ``shapes`` (height, width):
    computed pixels / output pixels - 1 (0.0 for whole images; 0.0 when there is nothing)."""
    output = sum(h * w for h, w in shapes)
    if not output:
        return 0.0
    return sum(computed_pixels(h, w, config) for h, w in shapes) / output - 1.0
