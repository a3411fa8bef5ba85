"""INT8 on full-contrast edges: which extra calibration tiles keep them, at what cost.

For each variant, the shipped calibration tiles plus extra HR tiles (Y 16/235 patterns)
calibrate a static INT8 model of the weights; reported per variant: the worst difference
to ONNX Runtime FP32 on the 64x64 1-px edge pattern ``vdsr validate`` checks (as a gray
image: Y mapped back with 255/219) at x2/x3/x4, and the task-PSNR cost on the held-out
tiles (what ``--precision auto`` reads). ``recipe`` is what ``--precision int8`` uses today
(:func:`vdsr_deploy.export.calibration.calibration_inputs` adds
:func:`vdsr_deploy.export.calibration.contrast_guard_tiles`); ``none`` is the shipped tiles alone.

    python benchmarks/int8_edges.py [--variant none --variant checker8 ...] [--weights W]

Prints one JSON line per variant (a few minutes each on 2 cores, mostly calibration).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
from vdsr_deploy.export.calibration import (
    SCALES,
    TILE,
    calibration_inputs,
    degraded,
    load_calibration_set,
    quality_cost,
)
from vdsr_deploy.export.int8 import DEFAULT_RECIPE
from vdsr_deploy.export.onnx import ensure_onnx
from vdsr_deploy.export.quantize import quantize_int8
from vdsr_deploy.model.weights import load_weights
from vdsr_deploy.parity import edge_case_images


def _luma(cells: NDArray[np.float64]) -> NDArray[np.float64]:
    return (16.0 + 219.0 * cells) / 255.0


def _checker(square: int) -> NDArray[np.float64]:
    return _luma(((np.arange(TILE)[:, None] // square + np.arange(TILE)[None, :] // square) % 2).astype(np.float64))


def _lines() -> NDArray[np.float64]:
    lines = np.zeros((TILE, TILE))
    lines[::6, :] = 1.0
    lines[:, 3::7] = 1.0
    return _luma(lines)


EXTRA_TILES = {
    "checker8": lambda: _checker(8),
    "checker4": lambda: _checker(4),
    "checker2": lambda: _checker(2),
    "lines": _lines,
    "lines-inverted": lambda: _luma(1.0 - (_lines() * 255.0 - 16.0) / 219.0),
}
VARIANTS = {
    "none": (),
    "recipe": None,  # what calibration_inputs gives today
    "checker8": ("checker8",),
    "checker4": ("checker4",),
    "checker2": ("checker2",),
    "lines": ("lines",),
    "checker8+lines+inverted": ("checker8", "lines", "lines-inverted"),
    "all": tuple(EXTRA_TILES),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    args = parser.parse_args()
    model, info = load_weights(args.weights)
    calibration = load_calibration_set()
    pattern = next(image for image in edge_case_images() if image.name == "edges-64x64")
    luma = _luma(pattern.pixels[..., 0].astype(np.float64))
    edge_inputs = {s: protocol.imresize(luma, s).astype(np.float32)[None, None] for s in SCALES}
    shipped = [
        degraded(calibration.calibration_tiles, s)[i, 0] for i in range(calibration.calibration) for s in SCALES
    ]
    with tempfile.TemporaryDirectory() as work:
        fp32 = ensure_onnx(model, info, "fp32", Path(work))
        for name in args.variant or list(VARIANTS):
            extra = VARIANTS[name]
            if extra is None:
                planes = calibration_inputs(calibration, SCALES)
            else:
                tiles = np.stack([EXTRA_TILES[e]() for e in extra]) if extra else np.empty((0, TILE, TILE))
                planes = shipped + [degraded(tiles, s)[i, 0] for i in range(len(tiles)) for s in SCALES]
            target = Path(work) / f"{name}.onnx"
            started = time.perf_counter()
            quantize_int8(fp32, target, planes, replace(DEFAULT_RECIPE, tiles=len(planes)), overwrite=True)
            seconds = time.perf_counter() - started
            with OnnxRuntimeRunner(fp32) as reference, OnnxRuntimeRunner(target) as int8:
                edge = {
                    f"x{s}": round(
                        float(np.abs(np.clip(int8.infer(x), 0, 1) - np.clip(reference.infer(x), 0, 1)).max())
                        * 255.0 / 219.0, 4,
                    )
                    for s, x in edge_inputs.items()
                }  # fmt: skip
                cost = quality_cost(reference.infer, int8.infer, calibration, SCALES)
            record = {"variant": name, "edge_max_abs": edge, "held_out_cost_db": cost, "calibrate_s": round(seconds, 1)}
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
