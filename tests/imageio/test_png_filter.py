"""The PNG scanline filter is byte-identical to the original int16 implementation (kept
here as the reference), on random and structured data, for every bytes-per-pixel."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from vdsr_deploy.imageio import bands
from vdsr_deploy.imageio.bands import _png_filter

BPPS = (1, 2, 3, 4, 6, 8)  # 8-bit gray, gray+alpha / 16-bit gray, RGB, RGBA / 16-bit GA, RGB, RGBA


def reference_png_filter(
    raw: NDArray[np.uint8], prior: NDArray[np.uint8], bpp: int
) -> NDArray[np.uint8]:
    """The original implementation: all five candidates in int16, then argmin of the
    libpng heuristic (sum of |signed byte|)."""
    rows, stride = raw.shape
    a = np.zeros_like(raw, dtype=np.int16)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.empty_like(raw, dtype=np.int16)
    b[0] = prior
    b[1:] = raw[:-1]
    c = np.zeros_like(raw, dtype=np.int16)
    c[:, bpp:] = b[:, :-bpp]
    x = raw.astype(np.int16)
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = np.stack([x, x - a, x - b, x - ((a + b) >> 1), x - paeth]).astype(np.uint8)
    signed = candidates.view(np.int8).astype(np.int16)
    scores = np.abs(signed).sum(axis=2, dtype=np.int64)
    choice = np.argmin(scores, axis=0)
    out = np.empty((rows, stride + 1), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = candidates[choice, np.arange(rows)]
    return out


def _structured(rng: np.random.Generator, rows: int, stride: int, kind: int) -> NDArray[np.uint8]:
    """Data on which different filters win: gradients, flat areas, 0x7f/0x80 edges, noise."""
    yy, xx = np.mgrid[0:rows, 0:stride]
    if kind == 0:  # smooth horizontal ramp + light noise: Sub/Average/Paeth territory
        values = xx * 0.7 + rng.normal(0, 2, (rows, stride))
    elif kind == 1:  # vertical ramp: Up
        values = yy * 3.0 + (xx % 5)
    elif kind == 2:  # diagonal with a hard step: Paeth
        values = (xx + yy) * 1.3 + 90 * ((xx > stride // 2) ^ (yy > rows // 2))
    elif kind == 3:  # bytes around the signed boundary (0x7f, 0x80, 0x81, 0x00, 0xff)
        values = rng.choice(np.array([0x00, 0x7F, 0x80, 0x81, 0xFF]), (rows, stride))
    else:  # random rows of each of the above, wrapped mod 256
        values = rng.integers(0, 4, (rows, 1)) * 64 + xx * rng.integers(-3, 4, (rows, 1))
    return (np.round(values).astype(np.int64) % 256).astype(np.uint8)


def _check(raw: NDArray[np.uint8], prior: NDArray[np.uint8], bpp: int) -> NDArray[np.uint8]:
    got = _png_filter(raw, prior, bpp)
    want = reference_png_filter(raw, prior, bpp)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    return got


@pytest.mark.parametrize("bpp", BPPS)
def test_filter_equals_reference(bpp: int) -> None:
    rng = np.random.default_rng(1000 + bpp)
    chosen: set[int] = set()
    for pixels in (1, 2, 3, 7, 33, 129):  # odd widths, one pixel (stride == bpp) included
        stride = pixels * bpp
        for rows in (1, 2, 5, 40):
            zeros = np.zeros(stride, dtype=np.uint8)
            random_prior = rng.integers(0, 256, stride, dtype=np.uint8)
            uniform = rng.integers(0, 256, (rows, stride), dtype=np.uint8)
            for prior in (zeros, random_prior, np.full(stride, 0x80, np.uint8)):
                _check(uniform, prior, bpp)
                for kind in range(5):
                    out = _check(_structured(rng, rows, stride, kind), prior, bpp)
                    chosen.update(int(t) for t in out[:, 0])
            for value in (0x00, 0x7F, 0x80, 0xFF):  # constant rows: ties everywhere
                _check(np.full((rows, stride), value, np.uint8), random_prior, bpp)
    assert chosen == {0, 1, 2, 3, 4}  # the data really exercises every filter type


@pytest.mark.parametrize("bpp", (1, 3, 8))
def test_filter_blocks_chain_rows(bpp: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows filtered in several internal blocks (block boundaries mid-chunk, one row per
    block, a row wider than the block) still use the right row above."""
    rng = np.random.default_rng(bpp)
    prior = rng.integers(0, 256, 31 * bpp, dtype=np.uint8)
    raw = _structured(rng, 23, 31 * bpp, 2) ^ rng.integers(0, 4, (23, 31 * bpp), dtype=np.uint8)
    want = reference_png_filter(raw, prior, bpp)
    for block in (1, 31 * bpp, 3 * 31 * bpp + 5, 1 << 20):
        monkeypatch.setattr(bands, "_FILTER_BLOCK_BYTES", block)
        np.testing.assert_array_equal(_png_filter(raw, prior, bpp), want)

