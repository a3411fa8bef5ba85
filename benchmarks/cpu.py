"""The README's CPU table: every CPU path as a ratio to ONNX Runtime FP32 measured in the
same run, with each lossy path's task-PSNR cost on Set5 and Set14 at x2, x3 and x4.

Rows: ONNX Runtime FP32 (the baseline), PyTorch FP32 (NCHW and channels-last), PyTorch
bf16 channels-last (native on CPUs with avx512_bf16/AMX, emulated and slow elsewhere), ONNX
Runtime static INT8 (the cached model ``--precision int8`` builds from the shipped
calibration tiles) and INT8 variants (``--variant``). Settings are interleaved repeat by
repeat so a busy machine slows them alike; read the ratio columns.

    nice -n 19 python benchmarks/cpu.py --hr ../shared/data/val/set5 \\
        --hr ../shared/data/val/set14 --repeats 7 --note "..."

Writes benchmarks/results/cpu-<date>.json, .md and .png. Everything is a library call
(vdsr_deploy.bench, vdsr_deploy.export.int8); this file only wires them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

from vdsr_deploy.bench import (
    CPU_BASELINE,
    BenchConfig,
    benchmark,
    cost_markdown,
    cpu_path_settings,
    quality_costs,
    render_markdown,
    write_plot,
)
from vdsr_deploy.export.int8 import DEFAULT_RECIPE, ensure_int8_onnx
from vdsr_deploy.model.weights import load_weights
from vdsr_deploy.runtime.artifacts import cached_onnx

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "ends": {"keep_float_ends": False},  # first/last conv and the residual Add in INT8 too
    "per-tensor": {"per_channel": False},  # one weight scale per conv instead of per channel
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="VDSR weights (default: the shipped ones)")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    parser.add_argument("--tile", type=int, default=0, help="tile side (default: the output size, one tile)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=90.0, help="per setting")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--no-eager", action="store_true", help="leave out PyTorch FP32 NCHW")
    parser.add_argument("--variant", action="append", default=[], choices=sorted(VARIANTS), help="INT8 variants")
    parser.add_argument("--hr", type=Path, action="append", default=[], help="HR folder(s) for the PSNR cost")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--work", type=Path, default=ROOT / "engines", help="where ONNX files go")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def int8_variants(args: argparse.Namespace) -> dict[str, Path]:
    """Build (or find) each requested INT8 variant in the work dir."""
    if not args.variant:
        return {}
    model, info = load_weights(args.weights)

    def fp32() -> Path:
        from vdsr_deploy.export.onnx import ensure_onnx

        return cached_onnx(args.weights, args.work, "fp32") or ensure_onnx(model, info, "fp32", args.work)

    models = {}
    for name in args.variant:
        recipe = replace(DEFAULT_RECIPE, **VARIANTS[name])
        models[f"onnxruntime-int8-{name}"] = ensure_int8_onnx(info.sha256, fp32, args.work, recipe=recipe).path
    return models


def main() -> None:
    args = arguments()
    tile = args.tile or args.size
    settings = cpu_path_settings(tile, batch=args.batch, int8_models=int8_variants(args), eager=not args.no_eager)
    config = BenchConfig(
        settings=tuple(settings),
        weights=args.weights,
        size=(args.size, args.size),
        warmup=args.warmup,
        repeats=args.repeats,
        min_repeats=min(3, args.repeats),
        max_seconds=args.max_seconds,
        threads=args.threads,
        baseline=CPU_BASELINE,
        engines_dir=args.work,
        note=args.note,
    )
    result = benchmark(config, on_event=lambda e: print(json.dumps(e), flush=True))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"cpu-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")  # the timings, before scoring
    if args.hr:
        print("scoring " + ", ".join(p.name for p in args.hr) + " (whole images)...", flush=True)
        lossy = [s for s in settings if s.precision != "fp32" or s.name == CPU_BASELINE]
        result["task_psnr"] = quality_costs(args.hr, args.scales, lossy, config)
        base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render_markdown(result, title=f"CPU benchmark {stamp}")
    if "task_psnr" in result:
        markdown += "\n## Every CPU path: speed vs ONNX Runtime fp32 and task-PSNR cost\n\n"
        markdown += cost_markdown(result, result["task_psnr"])
    base.with_suffix(".md").write_text(markdown)
    write_plot(result, base.with_suffix(".png"))
    print(markdown)
    print(f"wrote {base}.json/.md/.png")


if __name__ == "__main__":
    main()
