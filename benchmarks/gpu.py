"""The prepared GPU check's stages (run by benchmarks/gpu_check.sh, one process per stage).

    python benchmarks/gpu.py parity --out DIR     device path fp32/fp16 vs the CPU reference
    python benchmarks/gpu.py bench --out DIR      bare runner, pipeline and batch job Mpx/s
    python benchmarks/gpu.py huge --out DIR       one huge image: peak GPU and host memory
    python benchmarks/gpu.py report --out DIR     merge DIR/*.json into one JSON + Markdown

Each stage writes DIR/<stage>.json (the report stage: benchmarks/results/gpu-check-<date>
.json and .md, or --results). ``--cpu-smoke`` runs every stage on the CPU with tiny sizes,
so the script can be tried on any machine before GPU time is spent on it. Model: the
shipped default weights (speed does not depend on the values; parity uses real weights).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from vdsr_deploy.bench import (  # noqa: E402
    BenchConfig,
    BenchSetting,
    bench_image,
    benchmark,
    render_markdown,
)
from vdsr_deploy.environment import cpu_model, machine_info  # noqa: E402
from vdsr_deploy.runtime.info import versions  # noqa: E402

STAGES = ("parity", "bench", "huge", "tensorrt")


def _device(smoke: bool) -> str:
    return "cpu" if smoke else "cuda"


def _write(out: Path, stage: str, payload: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stage}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(json.dumps({"stage": stage, "written": str(out / f"{stage}.json")}), flush=True)


# ---------------------------------------------------------------------------------------------
# parity: the device path on the GPU against the CPU float64 reference path


def _compare(got: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "max_error_levels": int(diff.max()),
        "identical_pixels": float(np.all(diff == 0, axis=2).mean()),
        "identical_samples": float((diff == 0).mean()),
        "psnr_db": None if mse == 0 else 10 * np.log10(255.0**2 / mse),
    }


def stage_parity(out: Path, smoke: bool) -> None:
    import torch

    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.imageio import quantize
    from vdsr_deploy.model.weights import load_weights
    from vdsr_deploy.planes.device_pipeline import DeviceUpscaler
    from vdsr_deploy.planes.image import upscale_pixels
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig

    size = (96, 80) if smoke else (540, 960)
    lr = bench_image((2 * size[0], 2 * size[1]), 2.0)
    samples = quantize(lr, 8)
    _, info = load_weights(None)
    rows: list[dict[str, Any]] = []
    for tile in (0, 512):
        config = PipelineConfig(scale=2.0, tiling=TileConfig(tile=tile, halo=20), batch=4)
        started = time.perf_counter()
        with TorchRunner(load_weights(None)[0], device="cpu", precision="fp32") as cpu:
            reference = quantize(upscale_pixels(samples.astype(np.float32) / 255, cpu, config), 8)
        reference_s = time.perf_counter() - started
        for precision in ("fp32", "fp16"):
            if precision == "fp16" and smoke:
                rows.append({"tile": tile or "whole", "precision": precision, "status": "skipped",
                             "reason": "CPU smoke"})  # fmt: skip
                continue
            with TorchRunner(load_weights(None)[0], device=_device(smoke), precision=precision) as runner:
                for compute in ("float64", "float32"):
                    upscaler = DeviceUpscaler(runner, config, compute_dtype=compute)
                    upscaler.upscale(samples)  # warm-up
                    began = time.perf_counter()
                    got = upscaler.upscale(samples)
                    seconds = time.perf_counter() - began
                    rows.append(
                        {
                            "tile": tile,
                            "precision": precision,
                            "colour_dtype": compute,
                            "status": "ok",
                            "seconds": seconds,
                            "reference_seconds": reference_s,
                            **_compare(got, reference),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    _write(
        out,
        "parity",
        {
            "input": list(size),
            "output": [2 * size[0], 2 * size[1]],
            "scale": 2.0,
            "weights": info.sha256,
            "reference": "CPU path: colour.prepare float64 + torch fp32 on the CPU + colour.finish",
            "device": torch.cuda.get_device_name(0) if not smoke else "cpu (smoke)",
            "rows": rows,
        },
    )


# ---------------------------------------------------------------------------------------------
# bench: bare runner, pipeline (device path) and batch job


def stage_bench(out: Path, smoke: bool) -> None:
    """fp16: tiles 512/1024/whole x batch 1/4/8; fp32 (TF32 off, and one TF32 case): batch 4
    and whole; ONNX Runtime CUDA and TensorRT where usable. Then the batch job over 8 frames
    for fp16 at tile 1024 and whole images."""
    device = _device(smoke)
    size = (48, 64) if smoke else (2160, 3840)
    small, large = (40, 56) if smoke else (512, 1024)
    fast = "fp32" if smoke else "fp16"
    halo = 8 if smoke else 20
    sweep = [
        BenchSetting("torch", fast, device=device, tile=t, batch=b)
        for t in (small, large, 0)
        for b in ((1,) if t == 0 else (1, 4, 8))
    ]
    if not smoke:
        fp32 = ((512, 4), (1024, 4), (0, 1))
        sweep += [BenchSetting("torch", "fp32", device=device, tile=t, batch=b) for t, b in fp32]
        sweep += [
            BenchSetting("torch", "fp32", device=device, tile=1024, batch=4, allow_tf32=True,
                         label="torch-tf32-t1024-b4"),
            BenchSetting("onnxruntime", "fp32", provider="cuda", tile=1024, batch=4),
            BenchSetting("tensorrt", "fp16", device="cuda", tile=1024, batch=4),
        ]  # fmt: skip
    common: dict[str, Any] = {"size": size, "halo": halo, "warmup": 1, "repeats": 2, "min_repeats": 2,
                              "max_seconds": 6.0}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vdsr-gpu-engines-") as engines:
        sweep_result = benchmark(
            BenchConfig(settings=tuple(sweep), engines_dir=Path(engines), baseline=sweep[0].name, **common),
            on_event=lambda e: print(json.dumps(e), flush=True),
        )
        job_config = BenchConfig(
            settings=(
                BenchSetting("torch", fast, device=device, tile=large, batch=4),
                BenchSetting("torch", fast, device=device, tile=0, batch=1),
            ),
            frames=2 if smoke else 8,
            pipeline=False,
            engines_dir=Path(engines),
            **common,
        )
        job_result = benchmark(job_config, on_event=lambda e: print(json.dumps(e), flush=True))
    _write(out, "bench", {"sweep": sweep_result, "job": job_result})


# ---------------------------------------------------------------------------------------------
# tensorrt: the TensorRT path end to end when TensorRT imports ("not available" otherwise)


def stage_tensorrt(out: Path, smoke: bool) -> None:
    import subprocess
    import time

    from vdsr_deploy.backends.tensorrt.library import tensorrt_available, tensorrt_status

    if not tensorrt_available():
        _write(out, "tensorrt", {"status": "not available", "reason": tensorrt_status()})
        return
    from vdsr_deploy.imageio import write_image

    size = (64, 96) if smoke else (1080, 1920)
    with tempfile.TemporaryDirectory(prefix="vdsr-trt-") as scratch:
        folder = Path(scratch)
        (folder / "in").mkdir()
        for index in range(2):
            write_image(folder / "in" / f"frame{index}.png",
                        bench_image((2 * size[0], 2 * size[1]), 2.0, seed=index), bit_depth=8)  # fmt: skip
        command = [
            sys.executable, "-c", "from vdsr_deploy.cli import app; app()", "upscale", str(folder / "in"),
            "-o", str(folder / "out"), "-b", "tensorrt", "--precision", "fp16", "--tile", "auto", "--batch", "8",
            "--engines-dir", str(folder / "engines"), "--quiet", "--report", str(folder / "report.json"),
        ]  # fmt: skip
        runs = []
        for label in ("build and run", "cached engine"):
            began = time.perf_counter()
            done = subprocess.run(command + (["--overwrite"] if runs else []), capture_output=True, text=True)
            runs.append({"run": label, "exit_code": done.returncode, "seconds": round(time.perf_counter() - began, 2),
                         "tail": done.stdout[-1500:] + done.stderr[-1500:]})  # fmt: skip
        report = json.loads((folder / "report.json").read_text()) if (folder / "report.json").is_file() else None
    _write(out, "tensorrt", {"status": "ran", "tensorrt": tensorrt_status(), "input": size, "runs": runs,
                             "report": report})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# huge: one large image through the batch job, peak GPU and host memory


def stage_huge(out: Path, smoke: bool) -> None:
    import torch

    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.imageio import probe_image
    from vdsr_deploy.job import JobConfig, run_job
    from vdsr_deploy.job.autotile import choose_tile
    from vdsr_deploy.model.weights import load_weights
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig

    side = 300 if smoke else 6000  # x2: a 600x600 (smoke) or 12000x12000 output
    device = _device(smoke)
    precision = "fp32" if smoke else "fp16"
    model, info = load_weights(None)
    with tempfile.TemporaryDirectory(prefix="vdsr-huge-") as folder:
        from PIL import Image

        source = Path(folder) / "huge.png"
        ramp = np.linspace(0, 255, side, dtype=np.float32)
        noise = np.random.default_rng(0).integers(0, 24, (side, side, 3), dtype=np.uint8)
        pixels = np.empty((side, side, 3), dtype=np.uint8)
        pixels[..., 0] = ramp[None, :] * 0.9
        pixels[..., 1] = ramp[:, None] * 0.9
        pixels[..., 2] = 128
        pixels += noise
        Image.fromarray(pixels).save(source, compress_level=1)
        del pixels, noise
        header = probe_image(source)
        chosen = choose_tile([(header.height, header.width)], scale=2.0, batch=4, halo=20, device=device,
                             precision=precision, channels=info.channels)  # fmt: skip
        config = JobConfig(
            inputs=(str(source),),
            output=Path(folder) / "out",
            pipeline=PipelineConfig(scale=2.0, tiling=TileConfig(tile=chosen.tile, halo=20), batch=4),
        )
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with TorchRunner(model, device=device, precision=precision) as runner:
            started = time.perf_counter()
            summary = run_job(config, runner)
            seconds = time.perf_counter() - started
        payload = {
            "input": [side, side],
            "output": [2 * side, 2 * side],
            "precision": precision,
            "tile": chosen.tile,
            "tile_reason": chosen.reason,
            "ok": summary.ok,
            "summary": summary.to_dict(),
            "seconds": seconds,
            "output_megapixels_per_second": 4 * side * side / 1e6 / seconds,
            "host_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "host_peak_rss_before_job_mib": rss_before,
            "gpu_peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
            "gpu_peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if device == "cuda" else None,
        }
    _write(out, "huge", payload)


# ---------------------------------------------------------------------------------------------
# report


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _machine() -> dict[str, Any]:
    """machine_info(), or what can be said without torch (the report must not fail)."""
    try:
        return machine_info()
    except ImportError as error:
        return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                "memory_gib": None, "gpu": f"unknown ({error})"}  # fmt: skip


def stage_report(out: Path, results: Path, smoke: bool) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    stages: dict[str, Any] = {}
    for name in ("tests", *STAGES):
        path = out / f"{name}.json"
        stages[name] = json.loads(path.read_text()) if path.is_file() else None
    status_file = out / "status.txt"
    status_text = status_file.read_text() if status_file.is_file() else ""
    statuses = dict(line.split("=", 1) for line in status_text.split() if "=" in line)
    report = {
        "schema": "vdsr-gpu-check/1",
        "created": stamp,
        "smoke": smoke,
        "machine": _machine(),
        "versions": versions(),
        "stage_status": statuses,
        "stages": stages,
    }
    lines = [f"# GPU check {stamp}{' (CPU smoke run)' if smoke else ''}", ""]
    machine = report["machine"]
    lines += [
        f"- machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, {machine['memory_gib']} GiB; "
        f"GPU {machine['gpu'] or 'none'}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in report['versions'].items() if v)}",
        f"- stages: {', '.join(f'{k} {v}' for k, v in statuses.items()) or 'no status recorded'}",
        "",
    ]
    trt = stages.get("tensorrt")
    if trt:
        if trt["status"] == "not available":
            lines += ["## TensorRT", "", f"not available: {trt['reason']}", ""]
        else:
            lines += ["## TensorRT", "", f"TensorRT {trt['tensorrt']}, 2 frames {trt['input'][1]}x{trt['input'][0]} "
                      "-> x2, fp16, --tile auto, batch 8:", ""]  # fmt: skip
            lines += [f"- {r['run']}: exit {r['exit_code']} in {r['seconds']} s" for r in trt["runs"]] + [""]
    tests = stages.get("tests")
    if tests:
        lines += ["## Tests", "", f"`{tests['command']}`: exit {tests['exit_code']}; {tests['summary']}", ""]
    parity = stages.get("parity")
    if parity:
        lines += [
            "## Device-path parity (8-bit outputs vs the CPU reference path)",
            "",
            f"{parity['input'][1]}x{parity['input'][0]} -> {parity['output'][1]}x{parity['output'][0]} at x2, "
            f"device {parity['device']}; reference: {parity['reference']}.",
            "",
            "| tile | precision | colour dtype | max error (levels) | identical pixels | PSNR dB | s |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in parity["rows"]:
            if row["status"] != "ok":
                lines.append(f"| {row['tile']} | {row['precision']} | - | {row['status']}: {row['reason']} |||")
                continue
            lines.append(
                f"| {row['tile'] or 'whole'} | {row['precision']} | {row['colour_dtype']} | "
                f"{row['max_error_levels']} | {row['identical_pixels']:.4%} | "
                f"{_fmt(row['psnr_db'], '.2f')} | {row['seconds']:.3f} |"
            )
        lines.append("")
    bench = stages.get("bench")
    if bench:
        for key, title in (("sweep", "Bench: bare runner and pipeline"), ("job", "Bench: batch job over frames")):
            lines += [f"## {title}", "", render_markdown(bench[key], title=title).split("\n", 2)[2], ""]
    huge = stages.get("huge")
    if huge:
        lines += [
            "## One huge image",
            "",
            f"{huge['input'][1]}x{huge['input'][0]} -> {huge['output'][1]}x{huge['output'][0]} ({huge['precision']}, "
            f"{huge['tile_reason']}): ok {huge['ok']}, {huge['seconds']:.1f} s, "
            f"{huge['output_megapixels_per_second']:.3g} Mpx/s; peak host RSS {huge['host_peak_rss_mib']:.0f} MiB "
            f"(before the job {huge['host_peak_rss_before_job_mib']:.0f}); peak GPU allocated "
            f"{_fmt(huge['gpu_peak_allocated_mib'], '.0f')} MiB, "
            f"reserved {_fmt(huge['gpu_peak_reserved_mib'], '.0f')} MiB.",
            "",
        ]
    cli_report = out / "cli" / "report.json"
    if cli_report.is_file():
        cli = json.loads(cli_report.read_text())
        report["stages"]["cli"] = cli
        lines += [
            "## vdsr upscale (CLI, --tile auto)",
            "",
            f"{len(cli.get('done', []))} done, {len(cli.get('failed', []))} failed, "
            f"{cli.get('megapixels_per_second')} Mpx/s end to end (2 frames, first-call costs included).",
            "",
        ]
    failed = {name: state for name, state in statuses.items() if not state.startswith("ok")}
    for name in failed:
        log = out / f"{name}.log"
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.is_file() else ["(no log)"]
        report.setdefault("failed_stage_logs", {})[name] = tail
        lines += [f"## Stage {name}: {failed[name]}", "", "```", *tail, "```", ""]
    results.mkdir(parents=True, exist_ok=True)
    base = results / f"gpu-check-{stamp}{'-cpu-smoke' if smoke else ''}"
    base.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {base}.json and {base}.md", flush=True)
    return base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=(*STAGES, "report"))
    parser.add_argument("--out", type=Path, required=True, help="folder for the stages' JSON files")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU (a dry run)")
    args = parser.parse_args()
    if not args.cpu_smoke and args.stage != "report":
        import torch

        if not torch.cuda.is_available():
            print("error: PyTorch sees no CUDA GPU on this machine (use --cpu-smoke for a dry run)", file=sys.stderr)
            return 1
    print(json.dumps({"stage": args.stage, "pid": os.getpid(), "python": platform.python_version()}), flush=True)
    if args.stage == "parity":
        stage_parity(args.out, args.cpu_smoke)
    elif args.stage == "bench":
        stage_bench(args.out, args.cpu_smoke)
    elif args.stage == "huge":
        stage_huge(args.out, args.cpu_smoke)
    elif args.stage == "tensorrt":
        stage_tensorrt(args.out, args.cpu_smoke)
    else:
        stage_report(args.out, args.results, args.cpu_smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())
