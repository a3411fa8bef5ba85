"""End-to-end batch throughput vs the bare runner on the same tiles.

For each runtime: the images' tiles are cut exactly as the job cuts them (same tile, halo
and batch), captured as the runner's input batches, and timed through the bare runner
(``runner.infer`` only). Then :func:`vdsr_deploy.job.run_job` processes the same files
end to end (decode, bicubic prepare, inference, colour, PNG encode, atomic write, manifest).
The ratio job throughput / bare throughput (same output pixels) is the share of the
runner's speed the pipeline keeps; the goal is >= 0.90. Bare and job runs are interleaved
repeat by repeat so a busy machine slows both alike.

    nice -n 19 python benchmarks/pipeline_overhead.py --note "idle machine"

Model: the shipped default weights when present, else the paper's shape (depth 20, 64
channels) with seeded random weights (speed does not depend on the values). Images are read
from ../shared/data/val (three Set5 images and one Set14 image; never copied). Writes
benchmarks/results/pipeline_overhead.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.environment import cpu_model, package_version, portable_path
from vdsr_deploy.imageio import read_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.pipeline import PipelineConfig, upscale_planes
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo

RESULTS = Path(__file__).resolve().parent / "results"
SHARED_VAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "val"
DEFAULT_IMAGES = [
    *(SHARED_VAL / "set5" / f"{n}.png" for n in ("bird", "butterfly", "woman")),
    SHARED_VAL / "set14" / "comic.png",
]


class Capture(Runner):
    """Records the batches it is given (and returns them unchanged)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[NDArray[np.float32]] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("capture", "cpu", "fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.batches.append(batch.copy())
        return batch


class Counting(Runner):
    """Passes through to ``inner`` and counts calls and tiles."""

    def __init__(self, inner: Runner) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.tiles = 0

    @property
    def info(self) -> RunnerInfo:
        return self.inner.info

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.calls += 1
        self.tiles += int(batch.shape[0])
        return self.inner.infer(batch)


def load_model() -> tuple[VDSR, str]:
    import torch

    from vdsr_deploy.model.weights import default_weights_path, load_weights

    if default_weights_path().is_file():
        model, _ = load_weights(None)
        return model, "shipped default weights"
    torch.manual_seed(0)
    return VDSR(depth=20, channels=64).eval(), "VDSR depth 20, 64 ch, seeded random weights"


@contextmanager
def open_runtime(name: str, model: VDSR, work: Path) -> Iterator[Runner]:
    if name == "torch":
        from vdsr_deploy.backends.torch.runner import TorchRunner

        with TorchRunner(model) as runner:
            yield runner
        return
    from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner
    from vdsr_deploy.export.onnx import export_onnx

    onnx_path = work / "model-fp32.onnx"
    if not onnx_path.exists():
        export_onnx(model, onnx_path, precision="fp32")
    with OnnxRuntimeRunner(onnx_path) as runner:
        yield runner


def tile_batches(images: list[Path], pipeline: PipelineConfig) -> list[NDArray[np.float32]]:
    planes = []
    for index, path in enumerate(images):
        decoded = read_image(path)
        planes.append((index, colour.prepare(decoded.pixels, pipeline.scale).y))
    capture = Capture()
    with capture:
        for _ in upscale_planes(planes, capture, pipeline.tiling, batch=pipeline.batch):
            pass
    return capture.batches


def measure(
    name: str, model: VDSR, images: list[Path], pipeline: PipelineConfig, repeats: int, work: Path
) -> dict[str, Any]:
    batches = tile_batches(images, pipeline)
    megapixels = 0.0
    for path in images:
        decoded = read_image(path)
        h, w = colour.output_shape(decoded.height, decoded.width, pipeline.scale)
        megapixels += h * w / 1e6
    bare_times: list[float] = []
    job_times: list[float] = []
    counts: dict[str, int] = {}
    with open_runtime(name, model, work) as runner:
        runner.infer(batches[0])  # warm-up (allocations, kernel selection)
        for repeat in range(repeats):
            started = time.perf_counter()
            for batch in batches:
                runner.infer(batch)
            bare_times.append(time.perf_counter() - started)
            counting = Counting(runner)
            config = JobConfig(
                inputs=tuple(str(p) for p in images),
                output=work / f"{name}-{repeat}",
                pipeline=pipeline,
                overwrite=True,
            )
            with counting:
                started = time.perf_counter()
                summary = run_job(config, counting)
                job_times.append(time.perf_counter() - started)
            if summary.failed or len(summary.done) != len(images):
                raise SystemExit(f"job failed: {summary.failed}")
            counts = {"job_calls": counting.calls, "job_tiles": counting.tiles}
            print(
                f"{name} repeat {repeat}: bare {bare_times[-1]:.2f} s, job {job_times[-1]:.2f} s",
                flush=True,
            )
        info = runner.info
    bare, job = statistics.median(bare_times), statistics.median(job_times)
    return {
        "runtime": info.label,
        "details": {
            k: portable_path(v) if k == "onnx" and v else str(v) for k, v in info.details.items()
        },
        "images": len(images),
        "output_megapixels": round(megapixels, 3),
        "bare_calls": len(batches),
        "bare_tiles": sum(int(b.shape[0]) for b in batches),
        **counts,
        "bare_seconds": [round(t, 3) for t in bare_times],
        "job_seconds": [round(t, 3) for t in job_times],
        "bare_megapixels_per_second": round(megapixels / bare, 4),
        "job_megapixels_per_second": round(megapixels / job, 4),
        "ratio": round(bare / job, 3),
    }


def colour_costs(images: list[Path], scale: float, repeats: int) -> list[dict[str, Any]]:
    """Preparation (samples -> bicubic Y/CbCr/alpha planes) and finishing (planes -> quantized
    samples) per output megapixel: the host numpy float64 path against the device path
    (:mod:`vdsr_deploy.planes.device_colour`) on torch's CPU device, interleaved, median of
    ``repeats``. The network is left out (Y passes through), so only colour work is timed."""
    import torch

    from vdsr_deploy.imageio import quantize
    from vdsr_deploy.planes.device_colour import DeviceColour

    decoded = [read_image(p) for p in images]
    megapixels = sum(np.prod(colour.output_shape(d.height, d.width, scale)) for d in decoded) / 1e6
    paths: dict[str, Any] = {
        "host numpy float64 (colour.prepare/finish + imageio.quantize)": None,
        "device path on torch cpu, float64": DeviceColour("cpu", compute_dtype="float64"),
        "device path on torch cpu, float32": DeviceColour("cpu", compute_dtype="float32"),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in paths}
    for _ in range(repeats):
        for name, device in paths.items():
            prepare_s = finish_s = 0.0
            for image in decoded:
                height = colour.output_shape(image.height, image.width, scale)[0]
                began = time.perf_counter()
                if device is None:
                    prepared = colour.prepare(image.pixels, scale)
                    middle = time.perf_counter()
                    quantize(colour.finish(prepared, prepared.y), image.bit_depth)
                else:
                    planes = device.prepare_rows(torch.from_numpy(image.samples), scale, 0, height)
                    middle = time.perf_counter()
                    device.quantize(device.finish(planes, planes.y), image.bit_depth).numpy()
                finish_s += time.perf_counter() - middle
                prepare_s += middle - began
            times[name][0].append(prepare_s)
            times[name][1].append(finish_s)
    return [
        {
            "path": name,
            "threads": torch.get_num_threads(),
            "prepare_ms_per_megapixel": round(statistics.median(prep) * 1e3 / megapixels, 1),
            "finish_ms_per_megapixel": round(statistics.median(fin) * 1e3 / megapixels, 1),
        }
        for name, (prep, fin) in times.items()
    ]


def _version(name: str) -> str:
    return package_version(name) or "not installed"


def _machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Batch pipeline overhead: run_job vs the bare runner on the same tiles",
        "",
        f"{report['date']} · {report['machine']} · {report['versions']}",
        "",
        f"Model: {report['model']}. Images: {', '.join(report['images'])} (x{report['scale']:g}, "
        f"tile {report['tile']}, halo {report['halo']}, batch {report['batch']}, PNG output). "
        f"Median of {report['repeats']} interleaved repeats.",
        "",
        f"Conditions: {report['conditions']} Load average before/after: {report['load_before']} / "
        f"{report['load_after']}.",
        "",
        "| runtime | output Mpx | bare Mpx/s | job Mpx/s | ratio (goal >= 0.90) | bare s | job s "
        "| tiles bare/job | calls bare/job |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['runtime']} | {row['output_megapixels']} | "
            f"{row['bare_megapixels_per_second']} | "
            f"{row['job_megapixels_per_second']} | **{row['ratio']}** | {row['bare_seconds']} | "
            f"{row['job_seconds']} | {row['bare_tiles']}/{row['job_tiles']} | "
            f"{row['bare_calls']}/{row['job_calls']} |"
        )
    return "\n".join(lines) + "\n"


def write_colour_report(images: list[Path], scale: float, repeats: int, note: str) -> None:
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = colour_costs(images, scale, repeats)
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "versions": f"Python {platform.python_version()}, torch {_version('torch')}, numpy {_version('numpy')}",
        "images": [f"{p.parent.name}/{p.name}" for p in images],
        "scale": scale,
        "repeats": repeats,
        "conditions": f"nice {os.nice(0)}. {note}".strip(),
        "load_before": load_before,
        "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "rows": rows,
    }
    lines = [
        "# Colour preparation and finishing: host numpy vs the device path on the CPU",
        "",
        f"{report['date']} · {report['machine']} · {report['versions']}",
        "",
        f"Images: {', '.join(report['images'])} (x{scale:g}); median of {repeats} interleaved repeats; "
        f"conditions: {report['conditions']} Load average before/after: {load_before} / {report['load_after']}.",
        "",
        "| path | threads | prepare ms / output Mpx | finish + quantize ms / output Mpx |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['path']} | {r['threads']} | {r['prepare_ms_per_megapixel']} | {r['finish_ms_per_megapixel']} |"
        for r in rows
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_colour.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "pipeline_colour.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--image", type=Path, action="append", help="image files (default: 3 Set5 + 1 Set14)"
    )
    parser.add_argument("--runtime", action="append", choices=["onnxruntime", "torch"])
    parser.add_argument("--scale", type=float, default=2.0)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--halo", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="", help="machine conditions, recorded in the report")
    parser.add_argument(
        "--colour-only",
        action="store_true",
        help="only time colour preparation/finishing, host numpy vs the device path on the CPU "
        "(writes pipeline_colour.json/.md)",
    )
    args = parser.parse_args()
    images = args.image or DEFAULT_IMAGES
    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise SystemExit(f"missing images: {', '.join(missing)}")
    pipeline = PipelineConfig(
        scale=args.scale, tiling=TileConfig(tile=args.tile, halo=args.halo), batch=args.batch
    )
    if args.colour_only:
        write_colour_report(images, args.scale, args.repeats, args.note)
        return
    model, model_name = load_model()
    load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory(prefix="vdsr-overhead-") as folder:
        for name in args.runtime or ["onnxruntime", "torch"]:
            rows.append(measure(name, model, images, pipeline, args.repeats, Path(folder)))
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": _machine(),
        "versions": (
            f"Python {platform.python_version()}, torch {_version('torch')}, onnxruntime "
            f"{_version('onnxruntime')}, numpy {_version('numpy')}, pillow {_version('pillow')}"
        ),
        "model": model_name,
        "images": [f"{p.parent.name}/{p.name}" for p in images],
        "scale": args.scale,
        "tile": args.tile,
        "halo": args.halo,
        "batch": args.batch,
        "repeats": args.repeats,
        "conditions": f"nice {os.nice(0)}. {args.note}".strip(),
        "load_before": load_before,
        "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pipeline_overhead.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "pipeline_overhead.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
