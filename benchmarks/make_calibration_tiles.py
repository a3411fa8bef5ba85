"""Regenerate ``vdsr_deploy/assets/calibration_tiles.npz``: the small set of HR tiles that
ships with the package for INT8 calibration and for measuring a fast path's quality cost.

Drawn procedurally, like the shipped sample image (``make_sample_image.py``, whose noise and
landscape renderer this reuses): no third-party picture is involved. Each scene is rendered
at 4x and box-filtered down (so edges are anti-aliased as a camera would), with what real
photos have and VDSR cares about: smooth gradients, hard and soft (blurred) edges at many
orientations, fine periodic gratings up to near the 8-bit image's Nyquist limit, text-like
strokes, multi-octave texture and saturated (clipped) areas. Scenes are seeded; the
calibration tiles come from scenes (and landscape renders) that the held-out tiles never
come from. From each scene, tiles are cut on a grid and the most detailed (gradient energy)
are kept. Stored: the MATLAB ``rgb2ycbcr`` Y rounded to uint8, the scene and position of
each tile, and how many of the first tiles calibrate (the rest are held out).

    python benchmarks/make_calibration_tiles.py

Deterministic: the same arrays every run (the file's zip timestamps aside; the project keys
on a hash of the arrays, :attr:`vdsr_deploy.export.calibration.CalibrationSet.sha256`). 96 divides by
2, 3 and 4, so every tile degrades cleanly at each scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from make_sample_image import SUPERSAMPLE, _noise, render
from numpy.typing import NDArray

from vdsr_deploy.export.calibration import CALIBRATION_ASSET, TILE
from vdsr_deploy.protocol import rgb2y

F64 = NDArray[np.float64]
ROOT = Path(__file__).resolve().parents[1]
GENERATOR_VERSION = 1
SCENE = 288  # 3x3 tiles of 96
CALIBRATION_SCENES = (101, 102, 103, 104)  # 4 tiles each + 4 from landscape renders = 20
LANDSCAPE_SEEDS = (7, 8)  # 2 tiles each (the sample's layout, other textures)
HELD_OUT_SCENES = (201, 202, 203)  # 4 tiles each = 12
TILES_PER_SCENE = 4


def _soft_step(distance: F64, width: float) -> F64:
    """0 -> 1 across an edge at distance 0: hard (width 0) or a smooth ramp of ``width`` px."""
    if width <= 0:
        return (distance > 0).astype(np.float64)
    return np.asarray(0.5 + 0.5 * np.tanh(distance / width), dtype=np.float64)


def _colour(rng: np.random.Generator) -> F64:
    return np.asarray(rng.random(3), dtype=np.float64)


def render_scene(seed: int, size: int = SCENE) -> NDArray[np.uint8]:
    """A ``size`` x ``size`` RGB test scene; every seed a different arrangement."""
    rng = np.random.default_rng(seed)
    h = w = size * SUPERSAMPLE
    yy, xx = np.mgrid[0:h, 0:w] / SUPERSAMPLE
    # smooth gradient background in a random direction
    angle = rng.uniform(0, np.pi)
    t = ((xx * np.cos(angle) + yy * np.sin(angle)) / (size * 1.5)).clip(0, 1)[..., None]
    image = _colour(rng) * (1 - t) + _colour(rng) * t
    # multi-octave texture over everything, stronger in one half-plane
    texture = _noise(rng, h, w, octaves=int(rng.integers(4, 7)))
    mask = _soft_step(xx * np.cos(angle + 1.0) + yy * np.sin(angle + 1.0) - size * rng.uniform(0.3, 0.9), 6.0)
    image += (0.1 + 0.5 * mask)[..., None] * texture[..., None] * _colour(rng)
    # half-planes and discs: hard and soft edges at many orientations
    for _ in range(6):
        theta = rng.uniform(0, 2 * np.pi)
        cx, cy = rng.uniform(0, size, 2)
        width = float(rng.choice([0.0, 0.0, 0.7, 2.0, 5.0]))
        if rng.random() < 0.5:
            distance = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
            limit = np.hypot(xx - cx, yy - cy) < rng.uniform(40, 140)
            alpha = _soft_step(distance, width) * limit
        else:
            alpha = _soft_step(rng.uniform(8, 50) - np.hypot(xx - cx, (yy - cy) * rng.uniform(0.5, 2)), width)
        image = image * (1 - alpha[..., None]) + alpha[..., None] * _colour(rng)
    # fine periodic gratings (sine and square wave), periods 2.2-9 px, random orientation
    for _ in range(3):
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(2.2, 9.0)
        phase = (xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period
        wave = np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))
        cx, cy = rng.uniform(0, size, 2)
        patch = (np.abs(xx - cx) < rng.uniform(25, 60)) & (np.abs(yy - cy) < rng.uniform(25, 60))
        image[patch] = (0.5 + 0.45 * wave[patch, None] * rng.uniform(0.3, 1.0)) * _colour(rng) + 0.2
    # text-like strokes: rows of small glyphs of 1-2 px lines, dark on light or light on dark
    for _ in range(2):
        left, top = rng.uniform(0, size - 120), rng.uniform(0, size - 40)
        glyph, thickness = rng.uniform(6, 14), rng.uniform(0.6, 1.4)
        ink, paper = (0.05, 0.95) if rng.random() < 0.5 else (0.95, 0.1)
        rows = slice(int(top * SUPERSAMPLE), int((top + 2.5 * glyph) * SUPERSAMPLE))
        columns = slice(int(left * SUPERSAMPLE), int((left + 120) * SUPERSAMPLE))
        by_, bx_ = yy[rows, columns], xx[rows, columns]
        strokes = np.zeros(by_.shape, dtype=bool)
        for row in range(2):
            for column in range(int(110 // (glyph * 0.8))):
                x0, y0 = left + 4 + column * glyph * 0.8, top + 2 + row * glyph * 1.2
                for _ in range(int(rng.integers(2, 4))):
                    ax, bx = x0 + rng.uniform(0, glyph * 0.6, 2)
                    ay, by = y0 + rng.uniform(0, glyph * 0.9, 2)
                    vx, vy = bx - ax, by - ay
                    along = (((bx_ - ax) * vx + (by_ - ay) * vy) / max(vx * vx + vy * vy, 1e-6)).clip(0, 1)
                    strokes |= np.hypot(bx_ - ax - along * vx, by_ - ay - along * vy) < thickness / 2
        image[rows, columns] = np.where(strokes[..., None], ink, paper)
    # saturated areas: over-exposed highlights and crushed shadows, pure primaries
    for _ in range(3):
        cx, cy = rng.uniform(0, size, 2)
        blob = np.hypot(xx - cx, yy - cy) < rng.uniform(10, 30)
        image[blob] = image[blob] * 2.5 + rng.choice([-1.5, 0.6])
    image = image.clip(0, 1)
    small = image.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.rint(small * 255).astype(np.uint8)


def luma_uint8(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """MATLAB rgb2ycbcr Y of 8-bit RGB, rounded to 8 bits."""
    return np.rint(rgb2y(rgb.astype(np.float64) / 255.0) * 255.0).astype(np.uint8)


def gradient_energy(tile: NDArray[np.uint8]) -> float:
    values = tile.astype(np.float64)
    return float(np.abs(np.diff(values, axis=0)).mean() + np.abs(np.diff(values, axis=1)).mean())


def detailed_tiles(y: NDArray[np.uint8], name: str, count: int) -> list[tuple[NDArray[np.uint8], str]]:
    """The ``count`` grid tiles of ``y`` with the most gradient energy (ties: grid order)."""
    tops = sorted({*range(0, y.shape[0] - TILE + 1, TILE), y.shape[0] - TILE})
    lefts = sorted({*range(0, y.shape[1] - TILE + 1, TILE), y.shape[1] - TILE})
    grid = [(top, left) for top in tops for left in lefts]
    ranked = sorted(grid, key=lambda p: -gradient_energy(y[p[0] : p[0] + TILE, p[1] : p[1] + TILE]))
    return [(y[t : t + TILE, s : s + TILE].copy(), f"{name}@{t},{s}") for t, s in sorted(ranked[:count])]


def calibration_tiles() -> tuple[NDArray[np.uint8], list[str], int]:
    """All tiles (calibration first), their sources, and how many calibrate."""
    calibrate: list[tuple[NDArray[np.uint8], str]] = []
    for seed in CALIBRATION_SCENES:
        calibrate += detailed_tiles(luma_uint8(render_scene(seed)), f"scene-{seed}", TILES_PER_SCENE)
    for seed in LANDSCAPE_SEEDS:
        calibrate += detailed_tiles(luma_uint8(render(seed)), f"landscape-{seed}", 2)
    held_out: list[tuple[NDArray[np.uint8], str]] = []
    for seed in HELD_OUT_SCENES:
        held_out += detailed_tiles(luma_uint8(render_scene(seed)), f"scene-{seed}", TILES_PER_SCENE)
    tiles = calibrate + held_out
    sources = [f"v{GENERATOR_VERSION}:{source}" for _, source in tiles]
    return np.stack([tile for tile, _ in tiles]), sources, len(calibrate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "vdsr_deploy" / "assets" / CALIBRATION_ASSET)
    parser.add_argument("--preview", type=Path, help="also write the scenes as PNGs into this folder")
    args = parser.parse_args()
    hr_y, sources, calibration = calibration_tiles()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, hr_y=hr_y, source=np.array(sources), calibration=np.array(calibration))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {len(hr_y)} tiles, {calibration} calibrate)")
    if args.preview is not None:
        from PIL import Image

        args.preview.mkdir(parents=True, exist_ok=True)
        for seed in CALIBRATION_SCENES + HELD_OUT_SCENES:
            Image.fromarray(render_scene(seed), mode="RGB").save(args.preview / f"scene-{seed}.png")


if __name__ == "__main__":
    main()
