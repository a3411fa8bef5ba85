from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.pipeline import upscale_plane, upscale_planes
from vdsr_deploy.planes.tiling import TileConfig, plan_axis, plan_tiles

# depth 6 -> receptive-field radius 6: halo 6 must be exact, halo 5 must not
torch.manual_seed(7)
MODEL = VDSR(depth=6, channels=4).eval()
RADIUS = MODEL.receptive_field_radius


def whole(image: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return MODEL(torch.from_numpy(image)[None, None]).numpy()[0, 0]


@given(length=st.integers(1, 400), tile=st.integers(0, 120), halo=st.integers(0, 25))
def test_plan_axis_cores_partition_and_windows_stay_inside(
    length: int, tile: int, halo: int
) -> None:
    if tile and tile <= 2 * halo:
        return
    spans = plan_axis(length, tile, halo)
    assert spans[0].core_start == 0 and spans[-1].core_stop == length
    for span, following in itertools.pairwise(spans):
        assert span.core_stop == following.core_start
    for span in spans:
        assert 0 <= span.start <= span.core_start < span.core_stop <= span.stop <= length
        assert span.length == (min(tile, length) if tile else length)
        if span.core_start > 0:
            assert span.core_start - span.start >= halo
        if span.core_stop < length:
            assert span.stop - span.core_stop >= halo


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.sampled_from([1, 2, 3, 7, 13, 31, 37, 53, 64, 97]),
    width=st.sampled_from([1, 2, 5, 11, 29, 41, 59, 83, 101]),
    tile=st.sampled_from([0, 13, 17, 24, 32, 45]),
    halo=st.sampled_from([RADIUS, RADIUS + 1, RADIUS + 4]),
    batch=st.integers(1, 5),
)
def test_tiled_equals_untiled(height: int, width: int, tile: int, halo: int, batch: int) -> None:
    if tile and tile <= 2 * halo:
        return
    image = np.random.default_rng(height * 1000 + width).random((height, width), dtype=np.float32)
    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        tiled = upscale_plane(image, runner, TileConfig(tile=tile, halo=halo), batch=batch)
    assert np.max(np.abs(tiled - whole(image))) <= 1e-5


def test_halo_below_radius_is_not_exact() -> None:
    # 72 = 2 * halo + 4 cores of 16: windows overlap by exactly 2 * halo, no slack
    halo = RADIUS - 2
    image = np.random.default_rng(0).random((72, 72), dtype=np.float32)
    assert [s.start for s in plan_axis(72, 24, halo)] == [0, 16, 32, 48]
    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        tiled = upscale_plane(image, runner, TileConfig(tile=24, halo=halo), batch=2)
    assert np.max(np.abs(tiled - whole(image))) > 1e-4


def test_tiles_of_several_images_share_batches() -> None:
    calls: list[tuple[int, ...]] = []

    class Recording(TorchRunner):
        def _infer(self, batch: np.ndarray) -> np.ndarray:
            calls.append(batch.shape)
            return super()._infer(batch)

    rng = np.random.default_rng(3)
    images = {name: rng.random((40, 41), dtype=np.float32) for name in "abc"}
    with Recording(MODEL, device="cpu", channels_last=False) as runner:
        outputs = dict(
            upscale_planes(images.items(), runner, TileConfig(tile=30, halo=RADIUS), batch=6)
        )
    assert set(outputs) == set(images)
    for name, image in images.items():
        assert np.max(np.abs(outputs[name] - whole(image))) <= 1e-5
    assert all(shape[2:] == (30, 30) for shape in calls)
    assert max(shape[0] for shape in calls) == 6  # 3 images x 4 tiles -> batches of 6


def test_tile_config_validation() -> None:
    with pytest.raises(ConfigError, match="expected > 2 \\* halo"):
        TileConfig(tile=40, halo=20)
    with pytest.raises(ConfigError, match="halo"):
        TileConfig(tile=64, halo=-1)
    assert len(plan_tiles(10, 10, TileConfig(tile=0))) == 1


def test_computed_pixels_counts_every_window_with_its_halo() -> None:
    from vdsr_deploy.planes.tiling import computed_pixels

    assert computed_pixels(100, 60, TileConfig(tile=0, halo=20)) == 6000
    assert computed_pixels(50, 60, TileConfig(tile=64, halo=20)) == 3000  # shorter than a tile: whole
    # 1024 px at tile 256 / halo 20: ceil((1024 - 40) / 216) = 5 windows of 256 px per axis
    assert computed_pixels(1024, 1024, TileConfig(tile=256, halo=20)) == (5 * 256) ** 2


def test_halo_overhead_is_computed_over_output_pixels_minus_one() -> None:
    from vdsr_deploy.planes.tiling import halo_overhead

    assert halo_overhead([(768, 1024)], TileConfig(tile=0, halo=20)) == 0.0
    assert halo_overhead([], TileConfig(tile=256, halo=20)) == 0.0
    # 768: 4 windows (1024 px), 1024: 5 windows (1280 px)
    assert halo_overhead([(768, 1024)], TileConfig(tile=256, halo=20)) == pytest.approx(1024 * 1280 / (768 * 1024) - 1)
    mixed = halo_overhead([(768, 1024), (100, 100)], TileConfig(tile=256, halo=20))
    assert mixed == pytest.approx((1024 * 1280 + 100 * 100) / (768 * 1024 + 100 * 100) - 1)
