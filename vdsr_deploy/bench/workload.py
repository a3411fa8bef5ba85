"""The benchmark's work: one in-memory low-resolution image (:func:`bench_image`) and the
batches of tiles the pipeline sends to a runner for it (:func:`make_workload`), so the bare
runtime can be timed on exactly the calls the whole pipeline makes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo


@dataclass(frozen=True)
class Workload:
    """One in-memory image and its tiles, cut and stacked the way the pipeline batches them."""

    lr_pixels: NDArray[np.float32] = field(repr=False)
    output_shape: tuple[int, int]
    tiling: TileConfig
    batch: int
    batches: tuple[NDArray[np.float32], ...] = field(repr=False)

    @property
    def tiles(self) -> int:
        return sum(int(b.shape[0]) for b in self.batches)

    @property
    def network_pixels(self) -> int:
        """Pixels the network computes per image, halos included."""
        return sum(int(b.shape[0] * b.shape[2] * b.shape[3]) for b in self.batches)

    @property
    def output_pixels(self) -> int:
        return self.output_shape[0] * self.output_shape[1]


def bench_image(size: tuple[int, int], scale: float, seed: int = 0) -> NDArray[np.float32]:
    """A low-resolution RGB test image whose ``scale`` upscale has ``size``: the bundled
    sample picture tiled over the area, with a little noise so no two tiles are equal."""
    from vdsr_deploy.parity import sample_image

    height = max(1, math.floor(size[0] / scale + 1e-9))
    width = max(1, math.floor(size[1] / scale + 1e-9))
    sample = sample_image().pixels
    reps = (math.ceil(height / sample.shape[0]), math.ceil(width / sample.shape[1]), 1)
    tiled = np.tile(sample, reps)[:height, :width]
    noise = np.random.default_rng(seed).normal(0.0, 0.01, tiled.shape)
    result: NDArray[np.float32] = np.clip(tiled + noise, 0.0, 1.0).astype(np.float32)
    return result


class _BatchRecorder(Runner):
    """A runner that keeps a copy of every batch it is given and returns the batch itself
    (the identity: the pipeline's stitching works, the output is not looked at)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[NDArray[np.float32]] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(backend="workload-recorder", device="cpu", precision="fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.batches.append(batch.copy())
        return batch


def make_workload(
    lr_pixels: NDArray[np.float32],
    scale: float,
    tiling: TileConfig,
    batch: int,
    *,
    ensemble: bool = False,
) -> Workload:
    """The batches :func:`~vdsr_deploy.planes.image.upscale_pixels` sends to its runner for
    ``lr_pixels`` (the prepared Y plane, with ``ensemble`` its eight rotations/mirror images,
    cut into tiles and stacked into batches of same-shape tiles), recorded from one run of
    the pipeline itself through a runner that returns its input, so the batching has one
    home and the bare runtime is timed on the very calls the pipeline makes."""
    recorder = _BatchRecorder()
    config = PipelineConfig(scale=scale, tiling=tiling, batch=batch, ensemble=ensemble)
    with recorder:
        output = upscale_pixels(lr_pixels, recorder, config)
    shape = (int(output.shape[0]), int(output.shape[1]))
    return Workload(lr_pixels, shape, tiling, batch, tuple(recorder.batches))
