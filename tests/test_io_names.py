"""io_names: the shape profile guards every axis in both directions."""

from __future__ import annotations

import pytest

from vdsr_deploy.errors import ConfigError
from vdsr_deploy.io_names import CHANNELS, ShapeProfile, profile_for_tiles
from vdsr_deploy.planes.tiling import TileConfig

PROFILE = ShapeProfile(min=(1, 1, 3, 5), opt=(2, 1, 17, 19), max=(4, 1, 33, 29))


@pytest.mark.parametrize(
    "shape, inside",
    [
        ((1, 1, 3, 5), True),  # the minimum itself
        ((4, 1, 33, 29), True),  # the maximum itself
        ((5, 1, 17, 19), False),  # too many in a batch
        ((2, 1, 34, 19), False),  # too tall
        ((2, 1, 17, 30), False),  # too wide
        ((2, 2, 17, 19), False),  # too many channels
        ((0, 1, 17, 19), False),  # an empty batch
        ((2, 1, 2, 19), False),  # too short
        ((2, 1, 17, 4), False),  # too narrow
    ],
)
def test_profile_contains_checks_each_axis_both_ways(shape: tuple[int, int, int, int], inside: bool) -> None:
    assert PROFILE.contains(shape) is inside


@pytest.mark.parametrize("axis", range(4))
def test_profile_refuses_min_above_opt_or_opt_above_max_on_every_axis(axis: int) -> None:
    low, mid, high = [1, 1, 3, 5], [2, 1, 17, 19], [4, 1, 33, 29]
    if axis == 1:
        with pytest.raises(ConfigError, match="channel"):
            ShapeProfile(min=(1, 2, 3, 5), opt=(2, 2, 17, 19), max=(4, 2, 33, 29))
        with pytest.raises(ConfigError, match=r"expected 1 channel, got 1\.\.2"):  # one side only
            ShapeProfile(min=(1, 1, 3, 5), opt=(2, 2, 17, 19), max=(4, 2, 33, 29))
        return
    over = list(mid)
    over[axis] = high[axis] + 1
    with pytest.raises(ConfigError, match=f"axis {axis}: expected 1 <= min <= opt <= max"):
        ShapeProfile(tuple(low), tuple(over), tuple(high))  # type: ignore[arg-type]
    under = list(mid)
    under[axis] = low[axis] - 1
    with pytest.raises(ConfigError, match=f"axis {axis}"):
        ShapeProfile(tuple(low), tuple(under), tuple(high))  # type: ignore[arg-type]
    zero = list(low)
    zero[axis] = 0
    with pytest.raises(ConfigError, match=f"axis {axis}"):
        ShapeProfile(tuple(zero), tuple(mid), tuple(high))  # type: ignore[arg-type]


def test_profile_round_trips_through_a_dict() -> None:
    assert ShapeProfile.from_dict(PROFILE.to_dict()) == PROFILE
    assert PROFILE.to_dict() == {"min": [1, 1, 3, 5], "opt": [2, 1, 17, 19], "max": [4, 1, 33, 29]}


def test_profile_for_tiles_takes_every_tile_up_to_the_batch() -> None:
    profile = profile_for_tiles(TileConfig(tile=40, halo=4), 3)
    assert profile == ShapeProfile((1, CHANNELS, 1, 1), (3, CHANNELS, 40, 40), (3, CHANNELS, 40, 40))
    assert profile.contains((1, 1, 1, 40)) and profile.contains((3, 1, 40, 1))
    assert not profile.contains((4, 1, 40, 40)) and not profile.contains((1, 1, 41, 40))
    whole = profile_for_tiles(TileConfig(tile=0, halo=0), 1, max_side=97)
    assert whole.max == (1, CHANNELS, 97, 97)
    with pytest.raises(ConfigError, match="needs max_side"):
        profile_for_tiles(TileConfig(tile=0, halo=0), 1)
    with pytest.raises(ConfigError, match="batch: expected >= 1, got 0"):
        profile_for_tiles(TileConfig(tile=40, halo=4), 0)
