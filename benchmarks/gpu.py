"""GPU benchmark: PyTorch CUDA fp32 (TF32 off: the parity baseline), fp32 with TF32, fp16,
ONNX Runtime CUDA, and TensorRT fp16/fp32 when installed — timed with CUDA events as well
as wall clock, at one tile size and several batch sizes, each as a ratio to PyTorch fp32.

    python benchmarks/gpu.py --weights runs/x/best.safetensors --tile 512 --batch 1 --batch 8

Writes benchmarks/results/gpu-<date>.json, .md and .png. Settings that cannot run here
(no TensorRT, no onnxruntime-gpu) are recorded as skipped with the reason. Exits with
status 1 and one sentence when PyTorch sees no CUDA GPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

from vdsr_deploy.bench import BenchConfig, BenchSetting, benchmark, render_markdown, write_plot

ROOT = Path(__file__).resolve().parents[1]
BASELINE_PREFIX = "torch-fp32-notf32"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="VDSR weights (default: the shipped ones)"
    )
    parser.add_argument(
        "--size", type=int, default=1024, help="output side in pixels (default 1024)"
    )
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument(
        "--batch", type=int, action="append", default=[], help="repeatable (default 1 and 4)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="per setting")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "engines", help="where ONNX files and engines go"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def settings_for(tile: int, batch: int) -> list[BenchSetting]:
    suffix = f"t{tile}-b{batch}"
    return [
        BenchSetting(
            "torch",
            "fp32",
            device="cuda",
            tile=tile,
            batch=batch,
            label=f"{BASELINE_PREFIX}-{suffix}",
        ),
        BenchSetting(
            "torch",
            "fp32",
            device="cuda",
            tile=tile,
            batch=batch,
            allow_tf32=True,
            label=f"torch-tf32-{suffix}",
        ),
        BenchSetting(
            "torch", "fp16", device="cuda", tile=tile, batch=batch, label=f"torch-fp16-{suffix}"
        ),
        BenchSetting(
            "onnxruntime",
            "fp32",
            provider="cuda",
            tile=tile,
            batch=batch,
            label=f"ort-cuda-fp32-{suffix}",
        ),
        BenchSetting(
            "tensorrt",
            "fp16",
            device="cuda",
            tile=tile,
            batch=batch,
            label=f"tensorrt-fp16-{suffix}",
        ),
        BenchSetting(
            "tensorrt",
            "fp32",
            device="cuda",
            tile=tile,
            batch=batch,
            label=f"tensorrt-fp32-{suffix}",
        ),
    ]


def main() -> int:
    args = arguments()
    if not torch.cuda.is_available():
        print(
            "error: PyTorch sees no CUDA GPU on this machine; run benchmarks/cpu.py instead",
            file=sys.stderr,
        )
        return 1
    batches = args.batch or [1, 4]
    settings = [s for batch in batches for s in settings_for(args.tile, batch)]
    config = BenchConfig(
        settings=tuple(settings),
        weights=args.weights,
        size=(args.size, args.size),
        warmup=args.warmup,
        repeats=args.repeats,
        min_repeats=min(5, args.repeats),
        max_seconds=args.max_seconds,
        baseline=f"{BASELINE_PREFIX}-t{args.tile}-b{batches[0]}",
        engines_dir=args.work,
        note=args.note,
    )
    result = benchmark(config, on_event=lambda e: print(json.dumps(e), flush=True))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"gpu-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render_markdown(result, title=f"GPU benchmark {stamp}")
    base.with_suffix(".md").write_text(markdown)
    write_plot(result, base.with_suffix(".png"))
    print(markdown)
    print(f"wrote {base}.json/.md/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
