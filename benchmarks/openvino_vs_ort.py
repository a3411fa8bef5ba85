"""OpenVINO against ONNX Runtime on the same ONNX files (FP32 export, INT8 QDQ model): the
bare runtime time of one call on a 1024x768 network input and on a 256x256 tile, and the
start-up time (open + first small call) of a first and a second start, where the second
one finds OpenVINO's model cache (and ONNX Runtime's optimised graph). Writes a JSON with
the 1-minute load average beside each figure.

    nice -n 10 python benchmarks/openvino_vs_ort.py --work /tmp/ov-bench

Results: docs/cpu.md#openvino. Needs onnxruntime and openvino.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

from vdsr_deploy.backends.descriptor import OpenRequest
from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec
from vdsr_deploy.runner import Runner
from vdsr_deploy.runtime.artifacts import cached_onnx, exported_onnx, int8_artifact

BACKENDS = ("onnxruntime", "openvino")
SHAPES = {"1024x768": ((1, 1, 768, 1024), 1, 2), "256x256": ((1, 1, 256, 256), 2, 6)}
"""Network input shape, warm-up calls, timed calls."""


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def opener(backend: str, precision: str, path: Path, cache: Path) -> Runner:
    return REGISTRY[backend].open(OpenRequest(precision=precision, artifact=path, device="cpu", cache_dir=cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="artifacts and caches (emptied caches go here)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: WORK/openvino_vs_ort.json)")
    args = parser.parse_args()
    fp32 = cached_onnx(None, args.work, "fp32") or exported_onnx(RunnerSpec(precision="fp32"), args.work, "fp32")
    models = {"fp32": fp32, "int8": int8_artifact(RunnerSpec(precision="int8"), args.work).path}
    results: dict[str, dict[str, object]] = {}
    small = np.zeros((1, 1, 64, 64), np.float32)
    for backend in BACKENDS:
        for precision, path in models.items():
            cache = args.work / f"cache-{backend}-{precision}"
            shutil.rmtree(cache, ignore_errors=True)
            starts = []
            for _ in range(3):  # the first start compiles; the others find the cache
                started = time.perf_counter()
                with opener(backend, precision, path, cache) as runner:
                    opened = time.perf_counter() - started
                    runner.infer(small)
                total = time.perf_counter() - started
                starts.append({"open_s": round(opened, 3), "open_and_first_call_s": round(total, 3)})
            results[f"start {backend}-{precision}"] = {"starts": starts, "load1": load1()}
            print(json.dumps(results[f"start {backend}-{precision}"]), flush=True)
    rng = np.random.default_rng(0)
    for label, (shape, warmup, repeats) in SHAPES.items():
        batch = rng.random(shape, dtype=np.float32)
        for backend in BACKENDS:
            for precision, path in models.items():
                with opener(backend, precision, path, args.work / f"cache-{backend}-{precision}") as runner:
                    for _ in range(warmup):
                        runner.infer(batch)
                    times = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        runner.infer(batch)
                        times.append(time.perf_counter() - started)
                key = f"{label} {backend}-{precision}"
                results[key] = {"median_s": round(statistics.median(times), 3), "all_s": [round(t, 3) for t in times],
                                "load1": load1()}
                print(key, json.dumps(results[key]), flush=True)
    out = args.out or args.work / "openvino_vs_ort.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
