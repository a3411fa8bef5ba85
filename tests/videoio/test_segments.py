"""Keyframe segments (pure) and the frame <-> plane maths of the luma path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vdsr_deploy.errors import ConfigError, InvalidInputError
from vdsr_deploy.planes import luma
from vdsr_deploy.protocol import rgb2ycbcr
from vdsr_deploy.videoio.segments import cut_points, plan_segments, segment_of

MS = Fraction(1, 1000)


def test_segments_start_at_keyframes_and_last_at_least_the_given_time() -> None:
    keyframes = [0, 500, 1000, 1800, 2000, 4100]
    segments = plan_segments(keyframes, MS, 1.0)
    assert [(s.start, s.stop) for s in segments][1:] == [(1000, 2000), (2000, 4100), (4100, None)]
    assert segments[0].stop == 1000 and segments[0].start < 0  # frames before the first keyframe too
    cuts = cut_points(segments)
    assert [segment_of(cuts, pts) for pts in (-40, 0, 999, 1000, 1999, 2000, 4099, 4100, 10**9)] == [
        0, 0, 0, 1, 1, 2, 2, 3, 3,
    ]  # fmt: skip
    assert len(plan_segments(keyframes, MS, 0)) == 1
    assert len(plan_segments(keyframes, MS, 0.001)) == len(keyframes)


def test_segment_plans_refuse_nonsense() -> None:
    with pytest.raises(ConfigError, match="expected at least one keyframe"):
        plan_segments([], MS, 1.0)
    with pytest.raises(ConfigError, match="sorted, distinct"):
        plan_segments([5, 0], MS, 1.0)


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_limited_range_luma_is_the_papers_y_and_round_trips(bits: int) -> None:
    peak = (1 << bits) - 1
    samples = np.arange(0, peak + 1, max(1, peak // 500), dtype=np.uint8 if bits == 8 else np.uint16)[None, :]
    y = luma.luma_in(samples, bits, full_range=False)
    if bits == 8:  # BT.601 studio range: rgb2ycbcr of gray v gives exactly what Y = 16 + 219 v maps to
        gray = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
        assert rgb2ycbcr(gray)[0, :, 0] == pytest.approx(luma.luma_in(np.array([[16, 235]], np.uint8), 8, False)[0])
    np.testing.assert_array_equal(luma.luma_out(y, bits, full_range=False), samples)
    np.testing.assert_array_equal(luma.luma_out(luma.luma_in(samples, bits, True), bits, True), samples)


def test_full_range_luma_maps_like_a_gray_image() -> None:
    samples = np.array([[0, 128, 255]], dtype=np.uint8)
    gray = samples[0].astype(float) / 255
    assert luma.luma_in(samples, 8, full_range=True)[0] == pytest.approx((16 + 219 * gray) / 255)


def test_chroma_is_resized_to_its_own_shape_and_clipped() -> None:
    plane = np.array([[0, 255, 0], [255, 0, 255]], dtype=np.uint8)
    resized = luma.resize_chroma(plane, (4, 6), 8)
    assert resized.shape == (4, 6) and resized.dtype == np.uint8
    assert resized.min() == 0 and resized.max() == 255  # bicubic overshoot clipped
    with pytest.raises(InvalidInputError, match=r"expected a bit depth of 8\.\.16, got 7"):
        luma.luma_out(np.zeros((2, 2)), 7, False)
