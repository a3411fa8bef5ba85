"""Training pairs exactly as the paper makes them, and a seeded patch sampler.

For each HR image and scale s: Y channel (MATLAB rgb2ycbcr), modcrop to a multiple of s,
LR = MATLAB bicubic shrink by 1/s, network input = MATLAB bicubic enlarge back. Patches are
cut on the fly at random positions with one of the 8 rotations/flips; scales are mixed in
every mini-batch. Preparing the 291-image set in memory takes a few seconds, and cutting a
batch far less than a training step, so no worker processes or disk cache are needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import ImageReadError, InvalidInputError, TrainingError
from vdsr_deploy.imageio.folders import hr_luma, list_images
from vdsr_deploy.planes.ensemble import dihedral


@dataclass(frozen=True)
class TrainingPair:
    """One image at one scale: ``network_input`` and ``target``, float32 (H, W) in [0, 1]."""

    name: str
    scale: int
    network_input: NDArray[np.float32]
    target: NDArray[np.float32]


def find_images(folders: Sequence[Path]) -> list[Path]:
    """All images directly inside ``folders`` (:func:`vdsr_deploy.imageio.folders.list_images`, in
    folder order); a clear error for missing or empty ones."""
    try:
        return [path for folder in folders for path in list_images(folder)]
    except InvalidInputError as error:
        raise TrainingError(str(error)) from error


def prepare_pairs(
    paths: Sequence[Path], scales: Sequence[int], patch_size: int
) -> list[TrainingPair]:
    """Degrade every image at every scale; images smaller than a patch are skipped."""
    pairs: list[TrainingPair] = []
    for path in paths:
        try:
            y = hr_luma(path)
        except ImageReadError as error:
            raise TrainingError(str(error)) from error
        for scale in scales:
            hr = np.asarray(protocol.modcrop(y, scale), dtype=np.float64)
            if min(hr.shape) < patch_size:
                continue
            pairs.append(
                TrainingPair(
                    name=path.stem,
                    scale=scale,
                    network_input=protocol.degrade(hr, scale).astype(np.float32),
                    target=hr.astype(np.float32),
                )
            )
    if not pairs:
        raise TrainingError(f"no training image is at least {patch_size}x{patch_size} pixels")
    return pairs


class PatchSampler:
    """Random ``patch_size`` crops from prepared pairs, deterministic per (seed, step).

    Each pair is drawn with probability proportional to its area, so every pixel of the
    training set is equally likely, whatever the image size. ``scale_mix`` (scale -> relative
    weight) sets the share of patches of each scale instead; within a scale, pixels stay
    equally likely.
    """

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        *,
        patch_size: int,
        seed: int,
        augment: bool = True,
        scale_mix: Mapping[int, float] | None = None,
    ) -> None:
        if not pairs:
            raise TrainingError("no training pairs")
        self.pairs = list(pairs)
        self.patch_size = patch_size
        self.seed = seed
        self.augment = augment
        areas = np.array([p.target.size for p in self.pairs], dtype=np.float64)
        if scale_mix:
            scales = np.array([p.scale for p in self.pairs])
            missing = sorted(set(scales.tolist()) - set(scale_mix))
            if missing:
                raise TrainingError(f"scale mix {dict(scale_mix)}: no weight for scale(s) {missing}")
            if min(scale_mix.values()) <= 0:
                raise TrainingError(f"scale mix {dict(scale_mix)}: weights must be > 0")
            for scale in set(scales.tolist()):
                chosen = scales == scale
                areas[chosen] *= scale_mix[scale] / areas[chosen].sum()
        self.weights = areas / areas.sum()

    def batch(self, step: int, batch_size: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(inputs, targets)``, each float32 ``(batch_size, 1, P, P)``."""
        rng = np.random.default_rng([self.seed, step])
        size = self.patch_size
        chosen = rng.choice(len(self.pairs), size=batch_size, p=self.weights)
        inputs = np.empty((batch_size, 1, size, size), dtype=np.float32)
        targets = np.empty_like(inputs)
        for slot, index in enumerate(chosen):
            pair = self.pairs[int(index)]
            height, width = pair.target.shape
            top = int(rng.integers(0, height - size + 1))
            left = int(rng.integers(0, width - size + 1))
            transform = int(rng.integers(0, 8)) if self.augment else 0
            window = (slice(top, top + size), slice(left, left + size))
            inputs[slot, 0] = dihedral(pair.network_input[window], transform)
            targets[slot, 0] = dihedral(pair.target[window], transform)
        return inputs, targets
