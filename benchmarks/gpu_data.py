"""Lossless WebP copies of the training and validation images, small enough to travel to a
GPU machine with the checkout (one device call carries at most 64 MiB in all; the 291
training PNGs alone are 59 MiB).

    python benchmarks/gpu_data.py ../shared/data .devdata

writes ``.devdata/train/t91``, ``.devdata/train/bsd200``, ``.devdata/val/set5`` and
``.devdata/val/set14`` (``.devdata/`` is git-ignored) and checks every copy: the decoded
pixels and the Y plane the training and evaluation code reads (``hr_luma``) must equal the
original's exactly, or the script fails. It prints the total size and refuses to finish
above ``--limit-mib`` (default 58: the checkout itself is ~5 MiB of the 64).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from vdsr_deploy.imageio.folders import hr_luma

FOLDERS = ("train/t91", "train/bsd200", "val/set5", "val/set14")
MIB = 1 << 20


def copy_folder(source: Path, target: Path) -> int:
    """Lossless WebP copies of every image in ``source``; their total size in bytes."""
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in sorted(p for p in source.iterdir() if p.suffix.lower() in (".png", ".bmp")):
        out = target / f"{path.stem}.webp"
        with Image.open(path) as image:
            original = np.asarray(image.convert("RGB"))
            Image.fromarray(original).save(out, format="WEBP", lossless=True, quality=100, method=4)
        with Image.open(out) as copy:
            if not np.array_equal(np.asarray(copy.convert("RGB")), original):
                raise SystemExit(f"{out}: the WebP copy's pixels differ from {path}")
        if not np.array_equal(hr_luma(out), hr_luma(path)):
            raise SystemExit(f"{out}: the WebP copy's Y plane differs from {path}")
        total += out.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out", type=Path, help="where the copies go (.devdata)")
    parser.add_argument("--limit-mib", type=float, default=58.0)
    args = parser.parse_args()
    total = 0
    for folder in FOLDERS:
        size = copy_folder(args.data / folder, args.out / folder)
        count = len(list((args.out / folder).glob("*.webp")))
        print(f"{args.out / folder}: {count} images, {size / MIB:.1f} MiB (pixels and Y checked equal)")
        total += size
    print(f"total {total / MIB:.1f} MiB")
    if total > args.limit_mib * MIB:
        sys.exit(f"error: {total / MIB:.1f} MiB is over the {args.limit_mib} MiB limit")


if __name__ == "__main__":
    main()
