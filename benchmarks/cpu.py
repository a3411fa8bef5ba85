"""The README's CPU performance table, reproduced: VDSR on a 256x256 output, one tile.

Rows: PyTorch eager fp32 (NCHW), PyTorch fp32 channels-last, PyTorch bf16 autocast
(channels-last), ONNX Runtime fp32, and ONNX Runtime static INT8 (QDQ, calibrated on HR
training images, first/last conv and the residual Add kept FP32) — each as a ratio to ONNX
Runtime fp32 measured in the same run, settings interleaved repeat by repeat so a busy
machine slows them alike. Also measured: the INT8 model's task-PSNR cost on Set5 (x2, x3,
x4, paper protocol) against ONNX Runtime fp32.

    python benchmarks/cpu.py --weights runs/x/best.safetensors \\
        --calibration ../shared/data/train/t91 --calibration ../shared/data/train/bsd200 \\
        --set5 ../shared/data/val/set5 --note "idle machine"

Writes benchmarks/results/cpu-<date>.json, .md and .png. Everything is a library call
(vdsr_deploy.bench, vdsr_deploy.quantize, vdsr_deploy.export); this file only wires them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from vdsr_deploy.bench import (
    BenchConfig,
    BenchSetting,
    benchmark,
    open_bench_runner,
    render_markdown,
    task_psnr,
    write_plot,
)
from vdsr_deploy.evaluate import list_images
from vdsr_deploy.export import ensure_onnx
from vdsr_deploy.quantize import QuantizeConfig, calibration_planes, quantize_int8
from vdsr_deploy.weights import load_weights

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "onnxruntime-fp32"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="VDSR weights (default: the shipped ones)"
    )
    parser.add_argument("--size", type=int, default=256, help="output side in pixels (default 256)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=90.0, help="per setting")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument(
        "--calibration", type=Path, action="append", default=[], help="HR image folder(s)"
    )
    parser.add_argument("--calibration-images", type=int, default=12)
    parser.add_argument("--calibration-tiles", type=int, default=24)
    parser.add_argument("--method", default="minmax", choices=("minmax", "percentile", "entropy"))
    parser.add_argument(
        "--set5", type=Path, default=None, help="Set5 HR folder for the INT8 PSNR cost"
    )
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--work", type=Path, default=ROOT / "engines", help="where ONNX files go")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def int8_model(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any] | None]:
    """Export the FP32 ONNX and quantize it (None when no calibration folder is given)."""
    if not args.calibration:
        return None, None
    model, info = load_weights(args.weights)
    fp32 = ensure_onnx(model, info, "fp32", args.work)
    paths = [p for folder in args.calibration for p in list_images(folder)]
    step = max(1, len(paths) // args.calibration_images)
    chosen = paths[::step][: args.calibration_images]
    config = QuantizeConfig(tiles=args.calibration_tiles, method=args.method)
    planes = calibration_planes(chosen, config)
    target = args.work / f"vdsr-{info.sha256[:12]}-int8-{args.method}.onnx"
    result = quantize_int8(fp32, target, planes, config, overwrite=True)
    described = result.to_dict()
    described["calibration_images"] = [str(p.relative_to(p.parents[2])) for p in chosen]
    return target, described


def main() -> None:
    args = arguments()
    int8_path, quantization = int8_model(args)
    settings = [
        BenchSetting(
            "torch",
            "fp32",
            device="cpu",
            tile=args.size,
            channels_last=False,
            label="torch-eager-fp32",
        ),
        BenchSetting(
            "torch", "fp32", device="cpu", tile=args.size, label="torch-channels-last-fp32"
        ),
        BenchSetting("torch", "bf16", device="cpu", tile=args.size, label="torch-bf16-autocast"),
        BenchSetting("onnxruntime", "fp32", tile=args.size, label=BASELINE),
    ]
    if int8_path is not None:
        settings.append(
            BenchSetting(
                "onnxruntime", "int8", tile=args.size, onnx=int8_path, label="onnxruntime-int8-qdq"
            )
        )
    config = BenchConfig(
        settings=tuple(settings),
        weights=args.weights,
        size=(args.size, args.size),
        warmup=args.warmup,
        repeats=args.repeats,
        min_repeats=min(3, args.repeats),
        max_seconds=args.max_seconds,
        threads=args.threads,
        baseline=BASELINE,
        engines_dir=args.work,
        note=args.note,
    )
    result = benchmark(config, on_event=lambda e: print(json.dumps(e), flush=True))
    result["quantization"] = quantization
    if int8_path is not None and args.set5 is not None:
        print("scoring Set5 (ONNX Runtime fp32 vs int8)...", flush=True)
        by_name = {s.name: s for s in settings}
        with ExitStack() as stack:
            runners = {
                name: stack.enter_context(open_bench_runner(by_name[name], config))
                for name in (BASELINE, "onnxruntime-int8-qdq")
            }
            result["task_psnr"] = task_psnr(args.set5, args.scales, runners)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"cpu-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    markdown = render_markdown(result, title=f"CPU benchmark {stamp}")
    if "task_psnr" in result:
        markdown += psnr_markdown(result["task_psnr"])
    base.with_suffix(".md").write_text(markdown)
    write_plot(result, base.with_suffix(".png"))
    print(markdown)
    print(f"wrote {base}.json/.md/.png")


def psnr_markdown(table: dict[str, Any]) -> str:
    lines = ["", f"## Task PSNR on {table['dataset']} (Y, shave = scale, whole images)", "",
             "| runtime | " + " | ".join(f"x{s}" for s in table["scales"]) + " |",
             "|---|" + "---|" * len(table["scales"])]  # fmt: skip
    for name, per_scale in table["runners"].items():
        cells = []
        for s in table["scales"]:
            values = per_scale[f"x{s}"]
            delta = values[f"psnr_delta_vs_{BASELINE}"]
            cells.append(f"{values['psnr']:.3f}" + ("" if name == BASELINE else f" ({delta:+.3f})"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next(iter(table["runners"].values()))
    lines.append(
        "| bicubic | "
        + " | ".join(f"{first[f'x{s}']['bicubic_psnr']:.3f}" for s in table["scales"])
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
