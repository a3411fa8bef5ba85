"""Training pairs stay pairs (issue 27, kind 5): the patch sampler crops and transforms the
network input and its target identically. Checked as properties, since a mismatched pair
still trains (the loss still falls) and keeps every shape."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from train.data import PatchSampler, TrainingPair, dihedral

PATCH = 6


def _pair(rng: np.random.Generator, shape: tuple[int, int], name: str = "p", scale: int = 2) -> TrainingPair:
    target = rng.random(shape, dtype=np.float32)
    # the input is a pointwise function of the target: any crop or dihedral transform
    # applied to both keeps input == 1 - target, and any mismatch breaks it
    return TrainingPair(name=name, scale=scale, network_input=(1.0 - target).astype(np.float32), target=target)


def _locate(patch: NDArray[np.float32], plane: NDArray[np.float32]) -> list[tuple[int, int, int]]:
    """Every (top, left, transform) with ``dihedral(plane[window], transform) == patch``."""
    found = []
    height, width = plane.shape
    for top in range(height - PATCH + 1):
        for left in range(width - PATCH + 1):
            window = plane[top : top + PATCH, left : left + PATCH]
            found += [(top, left, t) for t in range(8) if np.array_equal(dihedral(window, t), patch)]
    return found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_input_and_target_stay_identical(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = rng.random((11, 14), dtype=np.float32)
    pair = TrainingPair(name="same", scale=2, network_input=target.copy(), target=target)
    sampler = PatchSampler([pair], patch_size=PATCH, seed=seed)
    for step in range(20):
        inputs, targets = sampler.batch(step, 4)
        np.testing.assert_array_equal(inputs, targets)


@pytest.mark.parametrize("augment", [True, False])
def test_each_patch_is_one_crop_and_one_transform_of_both_planes(augment: bool) -> None:
    rng = np.random.default_rng(27)
    pairs = [_pair(rng, (10, 13), "a"), _pair(rng, (12, 9), "b", scale=3)]
    sampler = PatchSampler(pairs, patch_size=PATCH, seed=4, augment=augment)
    transforms: set[int] = set()
    for step in range(12):
        inputs, targets = sampler.batch(step, 3)
        assert inputs.shape == targets.shape == (3, 1, PATCH, PATCH)
        for slot in range(3):
            target, network_input = targets[slot, 0], inputs[slot, 0]
            np.testing.assert_allclose(network_input, 1.0 - target, rtol=0, atol=1e-6)
            matches = [(p, m) for p in pairs for m in _locate(target, p.target)]
            assert len(matches) == 1, matches  # random content: exactly one crop and transform
            pair, (top, left, transform) = matches[0]
            window = pair.network_input[top : top + PATCH, left : left + PATCH]
            np.testing.assert_array_equal(network_input, dihedral(window, transform))
            transforms.add(transform)
    if augment:
        assert transforms == set(range(8))  # every rotation and flip is drawn
    else:
        assert transforms == {0}
