"""Regenerate ``vdsr_deploy/assets/sample.png``: the small validation image shipped with the
package, drawn here procedurally (no third-party picture involved).

A 192x160 RGB landscape rendered at 4x and box-filtered down, so it has what real photos
have and parity checks need: smooth gradients (sky), soft and hard edges (sun, house),
fine periodic detail (fence, windows), multi-octave texture (hills, grass) and saturated
areas. Deterministic: the same file every run.

    python benchmarks/make_sample_image.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

F64 = NDArray[np.float64]
WIDTH, HEIGHT, SUPERSAMPLE = 192, 160, 4


def _noise(rng: np.random.Generator, height: int, width: int, octaves: int = 5) -> F64:
    """Sum of bilinearly upsampled random grids (value noise), roughly in [-1, 1]."""
    total = np.zeros((height, width))
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = rng.standard_normal((cells + 1, cells + 1))
        ys = np.linspace(0, cells, height)
        xs = np.linspace(0, cells, width)
        y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
        bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
        total += (top * (1 - fy) + bottom * fy) / 2**octave
    return total / 2.0


def render(seed: int = 2016) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    h, w = HEIGHT * SUPERSAMPLE, WIDTH * SUPERSAMPLE
    yy, xx = np.mgrid[0:h, 0:w] / SUPERSAMPLE
    image = np.zeros((h, w, 3))
    # sky: vertical gradient
    t = yy / HEIGHT
    image[..., 0] = 0.35 + 0.45 * t
    image[..., 1] = 0.55 + 0.35 * t
    image[..., 2] = 0.95 - 0.15 * t
    # sun with a soft halo
    distance = np.hypot(xx - 150, yy - 30)
    halo = np.clip(1 - distance / 40, 0, 1) ** 2
    image += halo[..., None] * np.array([0.3, 0.25, 0.0])
    image[distance < 14] = (1.0, 0.97, 0.8)
    # far hills: ridge line plus texture
    ridge = 95 - 18 * np.sin(xx / 23.0) - 9 * np.sin(xx / 7.3 + 1.0)
    hills = yy > ridge
    texture = _noise(rng, h, w)
    image[hills] = (np.array([0.25, 0.45, 0.22]) + 0.12 * texture[hills, None]).clip(0, 1)
    # near grass with fine texture
    grass = yy > 128 + 3 * np.sin(xx / 11.0)
    blades = 0.5 + 0.5 * np.sin(xx * 2.1 + 3 * texture)
    image[grass] = np.stack([0.2 + 0.15 * blades, 0.55 + 0.2 * blades, 0.15 + 0.05 * blades], -1)[
        grass
    ]
    # house: wall, roof, door, windows (hard, high-contrast edges)
    wall = (xx > 30) & (xx < 90) & (yy > 92) & (yy < 140)
    image[wall] = (0.92, 0.88, 0.78)
    roof = (yy > 66) & (yy <= 92) & (np.abs(xx - 60) < (yy - 66) * 1.3)
    image[roof] = (0.6, 0.12, 0.08)
    for wx in (38, 68):
        window = (xx > wx) & (xx < wx + 14) & (yy > 100) & (yy < 114)
        image[window] = (0.08, 0.1, 0.18)
        image[window & ((np.abs(xx - wx - 7) < 0.6) | (np.abs(yy - 107) < 0.6))] = (
            0.95,
            0.95,
            0.95,
        )
    door = (xx > 54) & (xx < 66) & (yy > 118) & (yy < 140)
    image[door] = (0.35, 0.2, 0.1)
    # fence: 1-2 px posts and two rails (fine periodic detail)
    posts = (xx > 100) & (xx < 186) & (yy > 120) & (yy < 146) & ((xx % 5) < 1.5)
    rails = (xx > 100) & (xx < 186) & ((np.abs(yy - 126) < 0.75) | (np.abs(yy - 138) < 0.75))
    image[posts | rails] = (0.97, 0.97, 0.95)
    image = image.clip(0, 1)
    small = image.reshape(HEIGHT, SUPERSAMPLE, WIDTH, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.rint(small * 255).astype(np.uint8)


def main() -> None:
    target = Path(__file__).resolve().parents[1] / "vdsr_deploy" / "assets" / "sample.png"
    Image.fromarray(render(), mode="RGB").save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
