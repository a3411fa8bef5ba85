"""`vdsr upscale --cluster local --actors N` against plain `vdsr upscale` on the same files.

Each run is a fresh `vdsr` process (as a user runs it), interleaved mode by mode so that
machine load hits both alike; the `--report` of each run gives the job's own seconds and,
for the cluster, Ray's start-up (connect) and the workers' start (placement + runner open).
Ratios are cluster / plain, for the job alone and end to end (whole command, Ray start
included). Results: benchmarks/results/cluster_scaling.{json,md}.

    python benchmarks/cluster_scaling.py [--actors 2] [--repeats 2] [--scale 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vdsr_deploy.environment import cpu_model, package_version

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "val"
FILES = [
    "set5/bird.png",
    "set5/butterfly.png",
    "set5/head.png",
    "set5/woman.png",
    "set14/comic.png",
    "set14/face.png",
    "set14/coastguard.png",
    "set14/foreman.png",
]
RESULTS = Path(__file__).resolve().parent / "results"


def run(args: list[str], report: Path) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "vdsr_deploy.cli", "upscale", *args, "--quiet", "--report", str(report)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"vdsr upscale failed ({done.returncode}):\n{done.stderr}")
    data = json.loads(report.read_text())
    return {"wall_seconds": wall, "job_seconds": data["seconds"], "megapixels": data["megapixels_out"], **(
        {"cluster": data["cluster"]} if "cluster" in data else {}
    )}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scale", default="2")
    options = parser.parse_args()
    inputs = [str(DATA / name) for name in FILES]
    if not all(Path(p).is_file() for p in inputs):
        raise SystemExit(f"needs the shared data in {DATA}")
    work = Path(tempfile.mkdtemp(prefix="vdsr-cluster-bench-"))
    common = ["--scale", options.scale, "--engines-dir", str(work / "engines")]
    try:
        run([*inputs, "-o", str(work / "warm"), *common], work / "warm.json")  # exports the ONNX once
        runs: dict[str, list[dict[str, object]]] = {"plain": [], "cluster": []}
        for repeat in range(options.repeats):
            for mode in ("plain", "cluster"):
                out = work / f"{mode}{repeat}"
                extra = ["--cluster", "local", "--actors", str(options.actors)] if mode == "cluster" else []
                runs[mode].append(run([*inputs, "-o", str(out), *common, *extra], work / f"{mode}{repeat}.json"))
                print(mode, repeat, runs[mode][-1]["wall_seconds"], runs[mode][-1]["job_seconds"], flush=True)
        identical = all(
            (work / "plain0" / name).read_bytes() == (work / "cluster0" / name).read_bytes() for name in FILES
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in runs[mode])  # type: ignore[arg-type]

    megapixels = float(runs["plain"][0]["megapixels"])  # type: ignore[arg-type]
    startup = [r["cluster"]["startup_seconds"] for r in runs["cluster"]]  # type: ignore[index]
    result = {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "ray": package_version("ray"),
            "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
            "torch": package_version("torch"),
        },
        "files": FILES,
        "scale": options.scale,
        "actors": options.actors,
        "megapixels_out": megapixels,
        "outputs_identical": identical,
        "runs": runs,
        "median": {
            mode: {
                "job_seconds": median(mode, "job_seconds"),
                "wall_seconds": median(mode, "wall_seconds"),
                "job_megapixels_per_second": megapixels / median(mode, "job_seconds"),
            }
            for mode in runs
        },
        "ray_startup_seconds": startup,
        "ratio_job": median("plain", "job_seconds") / median("cluster", "job_seconds"),
        "ratio_end_to_end": median("plain", "wall_seconds") / median("cluster", "wall_seconds"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["median"]
    lines = [
        f"# cluster_scaling: `--cluster local --actors {options.actors}` vs plain `vdsr upscale`",
        "",
        f"{len(FILES)} files (Set5/Set14), x{options.scale}, {megapixels:.2f} Mpx out, default runtime and "
        f"tiling, {options.repeats} interleaved repeats (median); outputs identical: {identical}.",
        "",
        "| mode | job s | Mpx/s (job) | whole command s |",
        "|---|---|---|---|",
        *(
            f"| {mode} | {m[mode]['job_seconds']:.1f} | {m[mode]['job_megapixels_per_second']:.4f} | "
            f"{m[mode]['wall_seconds']:.1f} |"
            for mode in m
        ),
        "",
        f"Throughput ratio cluster / plain: **{result['ratio_job']:.2f}** (job), "
        f"{result['ratio_end_to_end']:.2f} (whole command, Ray start included).",
        f"Ray start-up per run (connect, workers ready) s: {startup}.",
        f"Machine: {result['machine']}.",
    ]
    (RESULTS / "cluster_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
