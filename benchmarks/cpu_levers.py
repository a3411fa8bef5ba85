"""Levers toward the 3x CPU bar, measured side by side with ONNX Runtime FP32 (the shipping
default: tile 256) in one interleaved run: tile size (halo overhead), threads, and whether
OpenVINO (``pip install openvino``; not a vdsr backend) runs the same FP32 / INT8 QDQ ONNX
faster, with bf16 inference on CPUs that have it. Each OpenVINO setting's Set5/Set14 cost
can be scored with ``--hr`` like benchmarks/cpu.py does.

    nice -n 19 python benchmarks/cpu_levers.py --size 512 --repeats 5 --hr ../shared/data/val/set5

The OpenVINO runner below lives here because OpenVINO is a measured lever, not (yet) a
supported backend; everything else is vdsr_deploy.bench.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.bench import (
    CPU_BASELINE,
    BenchConfig,
    BenchSetting,
    benchmark,
    cost_markdown,
    open_bench_runner,
    quality_costs,
    render_markdown,
)
from vdsr_deploy.runner import Runner, RunnerInfo
from vdsr_deploy.runtime.artifacts import cached_onnx, int8_artifact

ROOT = Path(__file__).resolve().parents[1]


class OpenVinoRunner(Runner):
    """An exported VDSR ONNX (FP32 or INT8 QDQ) on OpenVINO's CPU plugin; ``hint`` is its
    INFERENCE_PRECISION_HINT (f32, or bf16 on CPUs with avx512_bf16/AMX)."""

    def __init__(self, onnx_path: Path, hint: str, precision: str) -> None:
        super().__init__()
        self._path, self._hint, self._precision = onnx_path, hint, precision
        self._request: Any = None

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("openvino", "cpu", self._precision, {"onnx": str(self._path), "hint": self._hint})

    def activate(self) -> None:
        import openvino

        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(self._path)), "CPU", {"INFERENCE_PRECISION_HINT": self._hint})
        self._request = compiled.create_infer_request()

    def deactivate(self) -> None:
        self._request = None

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        result: NDArray[np.float32] = np.array(self._request.infer({0: batch})[0], dtype=np.float32)
        return result


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
    fp32 = cached_onnx(args.weights, args.work, "fp32") or ensure_onnx(model, info, "fp32", args.work)
    int8 = int8_artifact(RunnerSpec(weights=args.weights, precision="int8"), args.work).path
    ov_runners: dict[str, OpenVinoRunner] = {}
    settings = [BenchSetting("onnxruntime", "fp32", tile=256, label=CPU_BASELINE)]
    for tile in args.tiles:
        settings += [
            BenchSetting("onnxruntime", "int8", tile=tile, label=f"onnxruntime-int8-t{tile}"),
            BenchSetting("torch", "bf16", device="cpu", tile=tile, label=f"torch-bf16-t{tile}"),
        ]
        if importlib.util.find_spec("openvino") is None:
            continue
        for name, path, hint, precision in (("bf16", fp32, "bf16", "bf16"), ("int8", int8, "f32", "int8")):
            label = f"openvino-{name}-t{tile}"
            ov_runners[label] = OpenVinoRunner(path, hint, precision)
            settings.append(
                BenchSetting("onnxruntime", precision if precision == "int8" else "fp32", tile=tile, label=label)
            )
    settings.append(
        BenchSetting("onnxruntime", "fp32", tile=max(args.tiles), label=f"onnxruntime-fp32-t{max(args.tiles)}")
    )

    def opener(setting: BenchSetting, config: BenchConfig) -> Runner:
        return ov_runners.get(setting.name) or open_bench_runner(setting, config)

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
    result = benchmark(config, open_runner=opener, on_event=lambda e: print(json.dumps(e), flush=True))
    markdown = render_markdown(result, title="CPU levers")
    if args.hr:
        scored = [s for s in settings if s.name == CPU_BASELINE or (s.tile == min(args.tiles) and "fp32" not in s.name)]
        result["task_psnr"] = quality_costs(args.hr, [2, 3, 4], scored, config, opener=opener)
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
