"""The x8 self-ensemble: run the network on the eight rotations/mirror images of each
network-input plane, map every output back and average them. Runtime-agnostic.

:func:`ensemble_planes` wraps :func:`~vdsr_deploy.planes.pipeline.upscale_planes` and nothing
else: the pipeline and the runners never know an ensemble is running. Each transformed
plane is a plane of its own for the pipeline (cut into tiles with the same tile config,
its tiles batched with those of the other transforms and images), so tiling stays exact
per transformed image and the ensemble is exact with tiling: tiled == untiled, as for a
single pass. It costs 8x the network compute.

Averaging: the eight outputs are mapped back and summed in float64, then divided by 8 and
rounded once to float32, so the result does not depend on the order the transforms finish
in (equal to ``np.mean`` of the eight in float64, cast to float32).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.planes.pipeline import Flush, upscale_plane, upscale_planes
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner

Key = TypeVar("Key", bound=Hashable)
F32 = NDArray[np.float32]
A = TypeVar("A", bound=np.generic)

TRANSFORMS = 8
"""Four rotations (by 0, 90, 180, 270 degrees) and the mirror image of each."""


def dihedral(array: NDArray[A], index: int) -> NDArray[A]:
    """Transform ``index`` (0..7) of a 2-D array: ``rot90`` by ``index % 4`` quarter turns,
    then mirrored left-right when ``index >= 4`` (0 = identity). A view, not a copy."""
    if not 0 <= index < TRANSFORMS:
        raise ValueError(f"expected a transform index 0..7, got {index}")
    rotated = np.rot90(array, k=index % 4)
    return rotated[:, ::-1] if index >= 4 else rotated


def inverse_dihedral(array: NDArray[A], index: int) -> NDArray[A]:
    """Undo :func:`dihedral`: ``inverse_dihedral(dihedral(a, i), i) == a``."""
    if not 0 <= index < TRANSFORMS:
        raise ValueError(f"expected a transform index 0..7, got {index}")
    unmirrored = array[:, ::-1] if index >= 4 else array
    return np.rot90(unmirrored, k=-(index % 4))


@dataclass
class _Average:
    total: NDArray[np.float64]
    received: int = 0


def ensemble_planes(
    planes: Iterable[tuple[Key, F32] | Flush],
    runner: Runner,
    tiling: TileConfig,
    *,
    batch: int = 4,
    max_images_in_flight: int = 8,
) -> Iterator[tuple[Key, F32]]:
    """:func:`~vdsr_deploy.planes.pipeline.upscale_planes` with the x8 self-ensemble: same
    arguments, same ``(key, output)`` stream, each output the float64 mean of the eight
    transformed runs mapped back, as float32. ``max_images_in_flight`` counts source
    images (each is eight planes for the pipeline)."""
    averages: dict[Key, _Average] = {}

    def expanded() -> Iterator[tuple[tuple[Key, int], F32] | Flush]:
        for entry in planes:
            if isinstance(entry, Flush):
                yield entry
                continue
            key, plane = entry
            for index in range(TRANSFORMS):
                # upscale_planes copies each plane into a contiguous buffer of its own
                yield (key, index), dihedral(plane, index)

    results = upscale_planes(
        expanded(),
        runner,
        tiling,
        batch=batch,
        max_images_in_flight=max_images_in_flight * TRANSFORMS,
    )
    for (key, index), output in results:
        restored = inverse_dihedral(output, index)
        state = averages.get(key)
        if state is None:
            state = averages[key] = _Average(np.zeros(restored.shape, dtype=np.float64))
        state.total += restored
        state.received += 1
        if state.received == TRANSFORMS:
            del averages[key]
            yield key, (state.total / TRANSFORMS).astype(np.float32)


def ensemble_plane(plane: F32, runner: Runner, tiling: TileConfig, *, batch: int = 4) -> F32:
    """One plane through :func:`ensemble_planes` (its eight transforms share batches)."""
    for _, output in ensemble_planes([(0, plane)], runner, tiling, batch=batch):
        return output
    raise AssertionError("unreachable: every plane yields an output")


class PlaneUpscaler(Protocol):
    """What :func:`plane_upscaler` returns: one plane in, one plane out."""

    def __call__(self, plane: F32, runner: Runner, tiling: TileConfig, *, batch: int = 4) -> F32: ...


class PlanesUpscaler(Protocol):
    """What :func:`planes_upscaler` returns: the ``(key, plane)`` stream of
    :func:`~vdsr_deploy.planes.pipeline.upscale_planes`."""

    def __call__(
        self,
        planes: Iterable[tuple[Key, F32] | Flush],
        runner: Runner,
        tiling: TileConfig,
        *,
        batch: int = 4,
        max_images_in_flight: int = 8,
    ) -> Iterator[tuple[Key, F32]]: ...


def plane_upscaler(ensemble: bool) -> PlaneUpscaler:
    """The one ensemble-or-not choice for a single plane: :func:`ensemble_plane` or
    :func:`~vdsr_deploy.planes.pipeline.upscale_plane`."""
    return ensemble_plane if ensemble else upscale_plane


def planes_upscaler(ensemble: bool) -> PlanesUpscaler:
    """The one ensemble-or-not choice for a stream of planes: :func:`ensemble_planes` or
    :func:`~vdsr_deploy.planes.pipeline.upscale_planes`."""
    return ensemble_planes if ensemble else upscale_planes
