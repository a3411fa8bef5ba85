"""Regenerate ``vdsr_deploy/assets/calibration_tiles.npz``: the small set of HR tiles that
ships with the package for INT8 calibration and for measuring a fast path's quality cost.

Source: the paper's 291 training images (T91 of Yang et al. + BSD200), as found in
``../shared/data/train/{t91,bsd200}``; never Set5/Set14 (those score the result). From
every k-th image (sorted by name, both folders) one 96x96 tile is cut: of 6 random
positions (seeded), the one with the most gradient energy, so that edges and texture, where
rounding errors show, are represented. Stored: the MATLAB ``rgb2ycbcr`` Y channel rounded
to uint8 (what MATLAB gives for 8-bit images), the source image and position of each tile,
and which tiles calibrate and which are held out to measure quality.

    python benchmarks/make_calibration_tiles.py --data ../shared/data/train

96 divides by 2, 3 and 4, so every tile degrades cleanly at each scale.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from vdsr_deploy.evaluate import hr_luma, list_images
from vdsr_deploy.quality import CALIBRATION_ASSET, TILE

ROOT = Path(__file__).resolve().parents[1]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--calibration", type=int, default=20, help="tiles used to calibrate")
    parser.add_argument("--held-out", type=int, default=12, help="tiles used to measure quality")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "vdsr_deploy" / "assets" / CALIBRATION_ASSET)
    return parser.parse_args()


def gradient_energy(tile: np.ndarray) -> float:
    return float(np.abs(np.diff(tile, axis=0)).mean() + np.abs(np.diff(tile, axis=1)).mean())


def main() -> None:
    args = arguments()
    paths = list_images(args.data / "t91") + list_images(args.data / "bsd200")
    count = args.calibration + args.held_out
    step = len(paths) / count
    chosen = [paths[int(i * step)] for i in range(count)]
    rng = np.random.default_rng(args.seed)
    tiles, sources = [], []
    for path in chosen:
        y = np.rint(hr_luma(path) * 255.0)
        best: tuple[float, int, int] | None = None
        for _ in range(6):
            top = int(rng.integers(0, y.shape[0] - TILE + 1))
            left = int(rng.integers(0, y.shape[1] - TILE + 1))
            energy = gradient_energy(y[top : top + TILE, left : left + TILE])
            if best is None or energy > best[0]:
                best = (energy, top, left)
        assert best is not None
        _, top, left = best
        tiles.append(y[top : top + TILE, left : left + TILE].astype(np.uint8))
        sources.append(f"{path.parent.name}/{path.name}@{top},{left}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        hr_y=np.stack(tiles),
        source=np.array(sources),
        calibration=np.array(args.calibration),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB, {count} tiles)")


if __name__ == "__main__":
    main()
