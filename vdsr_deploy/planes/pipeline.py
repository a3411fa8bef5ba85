"""Images -> tiles -> batches -> runner -> stitched images. Runtime-agnostic.

:func:`upscale_planes` is the engine room: it takes network-input planes (bicubic-upscaled
Y, float32) from any number of images, cuts them into tiles (:mod:`vdsr_deploy.planes.tiling`),
fills batches of same-shape tiles across images, runs them through a :class:`Runner`, and
yields each image as soon as its last tile is back. :func:`~vdsr_deploy.planes.image.upscale_pixels`
does one image, colour included; file handling lives in :mod:`vdsr_deploy.job`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import ConfigError
from vdsr_deploy.planes.tiling import Tile, TileConfig, extract, place, plan_tiles
from vdsr_deploy.protocol import check_scale
from vdsr_deploy.runner import Runner

Key = TypeVar("Key", bound=Hashable)
F32 = NDArray[np.float32]


class Flush:
    """Marker an input stream of :func:`upscale_planes` may yield instead of a plane: run the
    tiles that are waiting for a full batch now (e.g. when the producer has nothing ready, so
    the accelerator is not left idle and memory held by waiting planes is released)."""

    def __repr__(self) -> str:
        return "FLUSH"


FLUSH = Flush()


@dataclass(frozen=True)
class PipelineConfig:
    """``scale``: any factor > 1 (bicubic pre-upscale); ``tiling``; ``batch``: tiles per
    runner call; ``max_images_in_flight``: images whose tiles may wait for a full batch
    (bounds memory); ``ensemble``: the x8 self-ensemble (:mod:`vdsr_deploy.planes.ensemble`, 8x the
    compute), applied by :func:`~vdsr_deploy.planes.image.upscale_pixels` and :mod:`vdsr_deploy.job`."""

    scale: float = 2.0
    tiling: TileConfig = field(default_factory=TileConfig)
    batch: int = 4
    max_images_in_flight: int = 8
    ensemble: bool = False

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.batch < 1:
            raise ConfigError(f"batch: expected >= 1, got {self.batch}")
        if self.max_images_in_flight < 1:
            raise ConfigError(
                f"max_images_in_flight: expected >= 1, got {self.max_images_in_flight}"
            )


@dataclass
class _InFlight:
    source: F32
    output: F32
    remaining: int


def upscale_planes(
    planes: Iterable[tuple[Key, F32] | Flush],
    runner: Runner,
    tiling: TileConfig,
    *,
    batch: int = 4,
    max_images_in_flight: int = 8,
) -> Iterator[tuple[Key, F32]]:
    """Run the network on every ``(key, plane)``; yield ``(key, output)`` as images complete.

    Planes are float32 ``(H, W)``. Tiles of equal shape from different images share a batch;
    when more than ``max_images_in_flight`` images are waiting, or the stream yields
    :data:`FLUSH`, partial batches are run. The runner must already be active (inside its
    ``with`` block).
    """
    in_flight: dict[Key, _InFlight] = {}
    pending: dict[tuple[int, int], list[tuple[Key, Tile]]] = {}

    def run(shape: tuple[int, int]) -> Iterator[tuple[Key, F32]]:
        queue = pending.pop(shape, [])
        for start in range(0, len(queue), batch):
            group = queue[start : start + batch]
            stacked = np.empty((len(group), 1, *shape), dtype=np.float32)
            for slot, (key, tile) in enumerate(group):
                stacked[slot, 0] = extract(in_flight[key].source, tile)
            results = runner.infer(stacked)
            for slot, (key, tile) in enumerate(group):
                state = in_flight[key]
                place(state.output, tile, results[slot, 0])
                state.remaining -= 1
                if state.remaining == 0:
                    del in_flight[key]
                    yield key, state.output

    for entry in planes:
        if isinstance(entry, Flush):
            for shape in sorted(pending, key=lambda s: -len(pending[s])):
                yield from run(shape)
            continue
        key, plane = entry
        if plane.ndim != 2:
            raise ConfigError(f"expected a 2-D plane, got shape {plane.shape}")
        if key in in_flight:
            raise ConfigError(f"duplicate key {key!r}")
        source = np.ascontiguousarray(plane, dtype=np.float32)
        tiles = plan_tiles(source.shape[0], source.shape[1], tiling)
        in_flight[key] = _InFlight(source, np.empty_like(source), len(tiles))
        for tile in tiles:
            queue = pending.setdefault(tile.shape, [])
            queue.append((key, tile))
            if len(queue) == batch:
                yield from run(tile.shape)
        if len(in_flight) > max_images_in_flight:
            for shape in sorted(pending, key=lambda s: -len(pending[s])):
                yield from run(shape)
    for shape in sorted(pending, key=lambda s: -len(pending[s])):
        yield from run(shape)


def upscale_plane(plane: F32, runner: Runner, tiling: TileConfig, *, batch: int = 4) -> F32:
    """One plane through :func:`upscale_planes`."""
    for _, output in upscale_planes([(0, plane)], runner, tiling, batch=batch):
        return output
    raise AssertionError("unreachable: every plane yields an output")
