"""Row bands of the bicubic planes are bit-identical to whole-image MATLAB imresize."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.pipeline import FLUSH, upscale_planes
from vdsr_deploy.runner import Runner, RunnerInfo


def _source(
    rng: np.random.Generator, height: int, width: int, channels: int, depth: int | None
) -> tuple[np.ndarray[Any, Any], float | None]:
    if depth == 8:
        return rng.integers(0, 256, (height, width, channels)).astype(np.uint8), 255.0
    if depth == 16:
        return rng.integers(0, 65536, (height, width, channels)).astype(np.uint16), 65535.0
    return rng.random((height, width, channels)).astype(np.float32), None


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 48),
    width=st.integers(1, 48),
    channels=st.integers(1, 4),
    scale=st.sampled_from([2.0, 3.0, 4.0, 2.5, 1.7, 3.01]),
    depth=st.sampled_from([8, 16, None]),
    band=st.integers(1, 40),
    chunk=st.integers(1, 20_000),
    seed=st.integers(0, 2**16),
)
def test_row_bands_equal_prepare(
    height: int,
    width: int,
    channels: int,
    scale: float,
    depth: int | None,
    band: int,
    chunk: int,
    seed: int,
) -> None:
    source, peak = _source(np.random.default_rng(seed), height, width, channels, depth)
    pixels = source.astype(np.float32) / np.float32(peak) if peak else source
    whole = colour.prepare(pixels, scale)
    rows = colour.RowPreparer(source, scale, peak=peak, chunk_bytes=chunk)
    assert rows.out_shape == whole.shape
    for start in range(0, whole.shape[0], band):
        stop = min(whole.shape[0], start + band)
        part = rows.rows(start, stop)
        np.testing.assert_array_equal(part.y, whole.y[start:stop])
        if whole.chroma is not None:
            assert part.chroma is not None
            np.testing.assert_array_equal(part.chroma, whole.chroma[start:stop])
        if whole.alpha is not None:
            assert part.alpha is not None
            np.testing.assert_array_equal(part.alpha, whole.alpha[start:stop])


def test_bands_equal_protocol_imresize_on_a_wide_image() -> None:
    rng = np.random.default_rng(3)
    gray = rng.random((37, 301, 1))
    reference = protocol.imresize((16.0 + 219.0 * gray[..., 0]) / 255.0, 2.0).astype(np.float32)
    rows = colour.RowPreparer(gray, 2.0, chunk_bytes=1)  # smallest chunks (2 rows)
    np.testing.assert_array_equal(
        np.concatenate([rows.rows(r, r + 1).y for r in range(74)]), reference
    )


def test_row_preparer_validates() -> None:
    with pytest.raises(InvalidInputError):
        colour.RowPreparer(np.zeros((4, 4, 3), np.uint8), 2.0)  # integer samples need a peak
    rows = colour.RowPreparer(np.zeros((4, 4, 1), np.float32), 2.0)
    with pytest.raises(InvalidInputError):
        rows.rows(5, 3)


def test_flush_runs_waiting_tiles_now() -> None:
    class Counting(Runner):
        calls: ClassVar[list[int]] = []

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("count", "cpu", "fp32")

        def _infer(self, batch: np.ndarray) -> np.ndarray:
            Counting.calls.append(batch.shape[0])
            return batch

    from vdsr_deploy.planes.tiling import TileConfig

    plane = np.zeros((10, 10), np.float32)
    done: list[int] = []
    with Counting() as runner:
        stream = iter([(0, plane), FLUSH, (1, plane), (2, plane)])
        for key, _ in upscale_planes(stream, runner, TileConfig(tile=0), batch=4):
            done.append(key)
    assert Counting.calls == [1, 2] and done == [0, 1, 2]
