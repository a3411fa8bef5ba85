"""Padded work of the TensorRT path (issue 22, defect 2), counted by the TensorRT simulator.

Runs the real ``vdsr upscale --backend tensorrt`` (engine cache, runner, device pipeline)
under tests/trtsim on 1080p and 4K output frames at batch 8 and counts the tile rows
TensorRT executes against the tiles the tile plan needs. The simulator computes with
``passthrough`` (output = input): the count does not depend on the pixels. Not a timing:
tile counts only, so the figure is the same on any machine and on a GPU.

    python benchmarks/trt_padded_work.py [--out benchmarks/results/trt_padded_work.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

FRAMES = {"1080p": (540, 960), "4K": (1080, 1920)}  # inputs; x2 gives 1920x1080 and 3840x2160
TILES = (256, 512)
HALO = 20
BATCH = 8


def measure(folder: Path, weights: Path) -> list[dict[str, Any]]:
    import numpy as np
    import trtsim
    from PIL import Image
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app
    from vdsr_deploy.planes.colour import output_shape
    from vdsr_deploy.planes.tiling import plan_axis

    rows = []
    for name, (height, width) in FRAMES.items():
        image = folder / f"{name}.png"
        data = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
        Image.fromarray(data).save(image)
        for tile in TILES:
            sim = trtsim.install(compute="passthrough")
            try:
                result = CliRunner().invoke(
                    app,
                    [
                        "upscale", str(image), "-o", str(folder / f"out-{name}-{tile}"), "-s", "2",
                        "-w", str(weights), "--backend", "tensorrt", "--precision", "fp16",
                        "--tile", str(tile), "--halo", str(HALO), "--batch", str(BATCH),
                        "--engines-dir", str(folder / "engines"), "--quiet",
                    ],
                )
                if result.exit_code != 0:
                    raise SystemExit(f"upscale failed: {result.output}")
                out_h, out_w = output_shape(height, width, 2.0)
                needed = len(plan_axis(out_h, tile, HALO)) * len(plan_axis(out_w, tile, HALO))
                computed = sim.counters.tiles_computed
                calls = sim.counters.executions
                rows.append(
                    {
                        "frame": name,
                        "output": f"{out_w}x{out_h}",
                        "tile": tile,
                        "batch": BATCH,
                        "tiles_needed": needed,
                        "tiles_computed": computed,
                        "padded_work_percent": round(100.0 * (computed - needed) / needed, 2),
                        "executions": calls,
                        "mean_batch_fill": round(computed / (calls * BATCH), 3),
                    }
                )
            finally:
                trtsim.uninstall()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "trt_padded_work.json")
    args = parser.parse_args()
    import torch

    from vdsr_deploy.model.network import VDSR
    from vdsr_deploy.model.weights import save_weights

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        torch.manual_seed(0)
        weights = save_weights(VDSR(depth=2, channels=4).eval(), folder / "tiny.safetensors")
        rows = measure(folder, weights)
    report = {
        "what": "tile rows TensorRT executes vs tiles the plan needs, vdsr upscale --backend tensorrt "
        "under the TensorRT simulator (tests/trtsim), one frame per run",
        "rows": rows,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for row in rows:
        print(
            f"{row['frame']:>5} {row['output']:>9} tile {row['tile']:>3} batch {row['batch']}: "
            f"{row['tiles_computed']} computed / {row['tiles_needed']} needed, padded "
            f"{row['padded_work_percent']}%, {row['executions']} executions, "
            f"mean batch fill {row['mean_batch_fill']}"
        )


if __name__ == "__main__":
    main()
