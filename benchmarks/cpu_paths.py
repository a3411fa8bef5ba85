"""Every CPU path side by side in one run, as whole jobs (decode, colour, tiling, network,
encode: :func:`~vdsr_deploy.job.run_job`, what ``vdsr upscale`` calls) on real photo sizes
at x2 (512x384 -> 1024x768 and 960x540 -> 1920x1080): Mpx/s, the ratio to ONNX Runtime
fp32 at tile 256 and to a plain PyTorch eager fp32 whole-image pass (NCHW, what a user of
pytorch-vdsr runs), and each lossy path's worst task-PSNR loss vs fp32 on Set5/Set14 at
x2/x3/x4 (``--no-quality`` skips it).

Paths: the two baselines, the defaults (``--backend auto --precision auto --tile auto``),
then every backend x precision of the registry that computes on this CPU at ``--tile
auto`` (a backend added to the registry, e.g. OpenVINO, shows up by itself); what a
backend's ``unavailable()`` refuses, and bf16 on a CPU without avx512_bf16/amx_bf16
(emulated), is listed as skipped with the reason. Paths take turns repeat by repeat.

    nice -n 5 python benchmarks/cpu_paths.py --repeats 2 --note "..."

Writes benchmarks/results/cpu-paths-<stamp>.json and .md (machine, CPU flags, versions,
load average). The test photos are a Set14 picture resized, in a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.registry import REGISTRY, backend_versions
from vdsr_deploy.bench import CPU_BASELINE, BenchConfig, BenchSetting, quality_costs, worst_costs
from vdsr_deploy.bench.jobs import cpu_job_paths, job_markdown, photo_inputs, time_jobs
from vdsr_deploy.environment import cpu_flags, load_average, machine_info
from vdsr_deploy.precision.decision import BF16_FLAGS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "val"
SIZES = {"1024x768": (384, 512), "1920x1080": (540, 960)}  # output label: input (height, width) at x2


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=DATA / "set14" / "baboon.png")
    parser.add_argument("--size", action="append", choices=sorted(SIZES), help="default: both")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="whole warm-up jobs (a 64x48 one always)")
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--slow-after", type=float, default=4.0,
                        help="leave out a path whose warm-up job is this many times slower than ORT fp32 t256")
    parser.add_argument("--no-quality", action="store_true", help="skip the Set5/Set14 task-PSNR cost")
    parser.add_argument("--hr", type=Path, action="append", default=[], help="HR folders (default Set5, Set14)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def quality(results: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, float]]:
    """Task PSNR (whole images) of every distinct lossy runtime/precision the timed paths
    ran, vs ONNX Runtime fp32; each path's worst loss (fp32 paths: 0 by definition here)."""
    ran: dict[str, tuple[str, str]] = {}
    for size in results.values():
        for label, path in size["paths"].items():
            ran[label] = (path["backend"], path["precision"])
    lossy = sorted({key for key in ran.values() if key[1] != "fp32"})
    settings = [BenchSetting("onnxruntime", "fp32", device="cpu", tile=0, label=CPU_BASELINE)]
    settings += [BenchSetting(b, p, device="cpu", tile=0, label=f"{b}-{p}") for b, p in lossy]
    config = BenchConfig(settings=tuple(settings), threads=args.threads, baseline=CPU_BASELINE)
    folders = args.hr or [DATA / "set5", DATA / "set14"]
    tables = quality_costs(folders, args.scales, settings, config)
    worst = worst_costs(tables)
    costs = {label: (0.0 if p == "fp32" else worst[f"{b}-{p}"]) for label, (b, p) in ran.items()}
    return tables, costs


def render(record: dict[str, Any], stamp: str, costs: dict[str, float] | None) -> str:
    machine = record["machine"]
    return "\n".join([
        f"# Every CPU path, whole jobs at x2, {stamp}", "",
        f"Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, {machine['memory_gib']} GiB; "
        f"flags: {' '.join(machine['cpu_flags']) or 'none of note'}. Load average before "
        f"{machine['load_average_before']}, after timing {machine['load_average_after']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in record["versions"].items() if v) + ".",
        "", f"{record['warmup']} warm-up and {record['repeats']} timed job(s) per path, interleaved; Mpx/s from "
        "the median. " + record["note"], "",
        job_markdown(record["sizes"], costs=costs),
    ])  # fmt: skip


def main() -> None:
    args = arguments()
    load_before = load_average()
    paths, skips = cpu_job_paths(REGISTRY, cpu_flags(), bf16_flags=BF16_FLAGS)
    print("paths: " + ", ".join(p.label for p in paths), flush=True)
    for skip in skips:
        print(f"skipped {skip.label}: {skip.reason}", flush=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"cpu-paths-{stamp}"
    record: dict[str, Any] = {
        "note": args.note,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "photo": args.photo.name,
        "paths": [p.__dict__ for p in paths],
        "sizes": {},
        "versions": backend_versions(),
    }

    def write(costs: dict[str, float] | None) -> str:
        record["machine"] = machine_info(load_before)
        base.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        text = render(record, stamp, costs)
        base.with_suffix(".md").write_text(text)
        return text

    with tempfile.TemporaryDirectory(prefix="vdsr-cpu-paths-") as folder:
        for name in args.size or list(SIZES):
            height, width = SIZES[name]
            photo, small = photo_inputs(args.photo, (height, width), Path(folder))
            print(f"{name} output: load {load_average()}", flush=True)
            result = time_jobs(
                paths, [photo], repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                slow_after=args.slow_after, warm_on=[small], on_event=lambda e: print(json.dumps(e), flush=True),
            )  # fmt: skip
            result["skipped"] = {**{s.label: s.reason for s in skips}, **result["skipped"]}
            record["sizes"][name] = result
            write(None)  # each size's timings as soon as they exist
    costs: dict[str, float] | None = None
    if not args.no_quality:
        print(f"scoring task PSNR (load {load_average()})...", flush=True)
        record["task_psnr"], costs = quality(record["sizes"], args)
        record["worst_psnr_loss_db"] = costs
    print(write(costs))
    print(f"wrote {base}.json/.md")


if __name__ == "__main__":
    main()
