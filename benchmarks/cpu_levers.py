"""Levers toward the 3x CPU bar, measured side by side with ONNX Runtime FP32 (the shipping
default: tile 256) in one interleaved run: tile size (halo overhead), threads, and the
OpenVINO backend (``pip install 'vdsr-deploy[openvino]'``) on the same INT8 QDQ ONNX, and
on the FP32 ONNX in bf16 on CPUs that have bf16 hardware. Each setting's Set5/Set14 cost
can be scored with ``--hr`` like benchmarks/cpu.py does.

    nice -n 19 python benchmarks/cpu_levers.py --size 512 --repeats 5 --hr ../shared/data/val/set5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from vdsr_deploy.backends import openvino
from vdsr_deploy.bench import (
    CPU_BASELINE,
    BenchConfig,
    BenchSetting,
    benchmark,
    cost_markdown,
    quality_costs,
    render_markdown,
)
from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.precision.decision import BF16_FLAGS
from vdsr_deploy.runtime.artifacts import cached_onnx, int8_artifact

ROOT = Path(__file__).resolve().parents[1]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--size", type=int, default=512, help="output side (default 512: several 256 tiles)")
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--hr", type=Path, action="append", default=[])
    parser.add_argument("--work", type=Path, default=ROOT / "engines")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    from vdsr_deploy.backends.registry import RunnerSpec
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(args.weights)
    # both artifacts made before timing starts
    if cached_onnx(args.weights, args.work, "fp32") is None:
        ensure_onnx(model, info, "fp32", args.work)
    int8_artifact(RunnerSpec(weights=args.weights, precision="int8"), args.work)
    settings = [BenchSetting("onnxruntime", "fp32", tile=256, label=CPU_BASELINE)]
    for tile in args.tiles:
        settings += [
            BenchSetting("onnxruntime", "int8", tile=tile, label=f"onnxruntime-int8-t{tile}"),
            BenchSetting("torch", "bf16", device="cpu", tile=tile, label=f"torch-bf16-t{tile}"),
        ]
        if not openvino.installed():
            continue
        settings += [
            BenchSetting("openvino", "fp32", device="cpu", tile=tile, label=f"openvino-fp32-t{tile}"),
            BenchSetting("openvino", "int8", device="cpu", tile=tile, label=f"openvino-int8-t{tile}"),
        ]
        if BF16_FLAGS.intersection(cpu_flags()):
            settings.append(BenchSetting("openvino", "bf16", device="cpu", tile=tile, label=f"openvino-bf16-t{tile}"))
    settings.append(
        BenchSetting("onnxruntime", "fp32", tile=max(args.tiles), label=f"onnxruntime-fp32-t{max(args.tiles)}")
    )

    config = BenchConfig(
        settings=tuple(settings),
        weights=args.weights,
        size=(args.size, args.size),
        warmup=args.warmup,
        repeats=args.repeats,
        min_repeats=min(3, args.repeats),
        max_seconds=args.max_seconds,
        baseline=CPU_BASELINE,
        engines_dir=args.work,
        note=args.note,
    )
    result = benchmark(config, on_event=lambda e: print(json.dumps(e), flush=True))
    markdown = render_markdown(result, title="CPU levers")
    if args.hr:
        scored = [s for s in settings if s.name == CPU_BASELINE or (s.tile == min(args.tiles) and "fp32" not in s.name)]
        result["task_psnr"] = quality_costs(args.hr, [2, 3, 4], scored, config)
        markdown += "\n" + cost_markdown(result, result["task_psnr"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"cpu-levers-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    base.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"wrote {base}.json/.md")


if __name__ == "__main__":
    main()
