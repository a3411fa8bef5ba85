"""Peak memory of upscaling one huge image: row bands (run_job) vs the whole-image path.

Each measurement runs in a fresh child process, which reports its resident set after
imports and model creation (the baseline) and its peak (``ru_maxrss``) after the job.
The input is a synthetic RGB PNG (gradients + noise), generated once; the model is a tiny
seeded VDSR (depth 3, 4 channels): memory, not speed, is measured.

    nice -n 19 python benchmarks/huge_image_memory.py --size 6000 --size 2000 \\
        --whole-size 2000 --note "2-core VM, training job running"

``bands``: :func:`vdsr_deploy.job.run_job` (decoded input + bounded bands, PNG streamed).
``whole``: the single-image path the batch job used before: ``colour.prepare`` on the whole
image (float64), tiled inference, ``colour.finish``, ``write_image``. Writes
benchmarks/results/huge_image_memory.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from vdsr_deploy.environment import cpu_model

RESULTS = Path(__file__).resolve().parent / "results"


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_image(path: Path, size: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for start in range(0, size, 500):  # in strips, to keep this process small too
        y, x = np.mgrid[start : min(size, start + 500), 0:size]
        strip = np.stack(
            [(x // 3 + y // 5) % 256, (x // 7 + 2 * y // 9) % 256, (x + y) // 11 % 256], axis=2
        )
        rows.append((strip + rng.integers(0, 24, strip.shape)).clip(0, 255).astype(np.uint8))
    Image.fromarray(np.concatenate(rows)).save(path, compress_level=1)


def child(
    mode: str, source: Path, out: Path, scale: float, tile: int, memory_mb: int
) -> dict[str, Any]:
    import torch

    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.model.network import VDSR
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig

    torch.manual_seed(0)
    model = VDSR(depth=3, channels=4).eval()
    tiling = TileConfig(tile=tile, halo=20)
    pipeline = PipelineConfig(scale=scale, tiling=tiling, batch=4)
    with TorchRunner(model) as runner:
        runner.infer(torch.zeros(1, 1, tile, tile).numpy())
        baseline = _rss_mib()
        started = time.perf_counter()
        if mode == "bands":
            from vdsr_deploy.job import JobConfig, run_job

            summary = run_job(
                JobConfig(
                    inputs=(str(source),), output=out, pipeline=pipeline, memory_mb=memory_mb
                ),
                runner,
            )
            if summary.failed:
                raise SystemExit(f"failed: {summary.failed}")
        else:
            from vdsr_deploy.imageio import read_image, write_image
            from vdsr_deploy.planes import colour
            from vdsr_deploy.planes.pipeline import upscale_plane

            image = read_image(source)
            prepared = colour.prepare(image.pixels, scale)
            y = upscale_plane(prepared.y, runner, tiling, batch=4)
            write_image(out / source.name, colour.finish(prepared, y), bit_depth=image.bit_depth)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "baseline_rss_mib": round(baseline, 1),
        "peak_rss_mib": round(peak, 1),
        "job_peak_above_baseline_mib": round(peak - baseline, 1),
        "seconds": round(seconds, 1),
    }


def measure(
    mode: str, size: int, scale: float, tile: int, memory_mb: int, work: Path
) -> dict[str, Any]:
    source = work / f"synthetic-{size}.png"
    if not source.exists():
        make_image(source, size)
    out = work / f"out-{mode}-{size}"
    out.mkdir(exist_ok=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--source",
        str(source),
        "--out",
        str(out),
        "--scale",
        str(scale),
        "--tile",
        str(tile),
        "--memory-mb",
        str(memory_mb),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for file in out.iterdir():
        file.unlink()
    if done.returncode != 0:
        return {"mode": mode, "size": size, "error": (done.stderr or done.stdout)[-800:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out_side = int(size * scale)
    return {
        "mode": mode,
        "input": f"{size}x{size} RGB 8-bit",
        "output": f"{out_side}x{out_side}",
        "output_megapixels": round(out_side * out_side / 1e6, 1),
        "memory_mb_setting": memory_mb,
        "tile": tile,
        **result,
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Peak memory: one huge image, row bands vs whole-image path",
        "",
        f"{report['date']} · {report['machine']} · Python {report['python']} · "
        f"{report['conditions']}",
        "",
        "Tiny seeded VDSR (depth 3, 4 channels), x{:g}, tile {}, PNG output. Peak RSS of a fresh "
        "process; *above baseline* subtracts the RSS after imports and model creation.".format(
            report["scale"], report["tile"]
        ),
        "",
        "| path | input | output | Mpx out | --memory-mb | baseline MiB | peak MiB "
        "| above baseline MiB | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if "error" in row:
            lines.append(
                f"| {row['mode']} | {row['size']} | error: {row['error'].splitlines()[-1]} |||||||"
            )
            continue
        lines.append(
            f"| {row['mode']} | {row['input']} | {row['output']} | {row['output_megapixels']} | "
            f"{row['memory_mb_setting']} | {row['baseline_rss_mib']} | {row['peak_rss_mib']} | "
            f"{row['job_peak_above_baseline_mib']} | {row['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, action="append", help="input side for the bands path")
    parser.add_argument(
        "--whole-size", type=int, action="append", default=[], help="input side, whole path"
    )
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument(
        "--memory-mb", type=int, action="append", help="--memory-mb settings to try (bands)"
    )
    parser.add_argument("--note", default="")
    parser.add_argument("--child", choices=["bands", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = args.memory_mb or [1024]
    if args.child:
        result = child(args.child, args.source, args.out, args.scale, args.tile, settings[0])
        print(json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="vdsr-memory-") as folder:
        work = Path(folder)
        for size in args.whole_size:
            rows.append(measure("whole", size, args.scale, args.tile, settings[0], work))
            print(rows[-1], flush=True)
        for size in args.size or [6000]:
            for memory_mb in settings:
                rows.append(measure("bands", size, args.scale, args.tile, memory_mb, work))
                print(rows[-1], flush=True)
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "conditions": args.note or "-",
        "scale": args.scale,
        "tile": args.tile,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "huge_image_memory.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "huge_image_memory.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
