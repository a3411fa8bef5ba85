"""``--tile auto`` against ``--tile 256`` on the CPU: whole jobs (decode, colour, tiling,
network, encode) through ONNX Runtime fp32 on photos of 0.5, 2 and 8 Mpx output at x2, the
settings taking turns repeat by repeat (read the ratios on a shared machine). Also the tile
``--tile auto`` gives a small machine (2 GiB available: 512 MiB for activations).

    nice -n 5 python benchmarks/cpu_tile.py --repeats 2 --note "..."

The test photos are a Set14 picture resized to 4:3 inputs of each size in a temporary
folder (nothing big committed). Writes benchmarks/results/cpu-tile-<stamp>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from vdsr_deploy.bench.jobs import JobPath, photo_inputs, time_jobs
from vdsr_deploy.environment import load_average, machine_info
from vdsr_deploy.job.autotile import choose_tile, cpu_budget

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"0.5 Mpx": (306, 408), "2 Mpx": (612, 816), "8 Mpx": (1224, 1632)}  # inputs; x2: 816x612 ...
SMALL_MACHINE = 2 << 30


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=ROOT.parent / "shared/data/val/set14/baboon.png")
    parser.add_argument("--size", action="append", choices=sorted(SIZES), help="default: all")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="whole warm-up jobs (a 64x48 one always)")
    parser.add_argument("--no-small-machine", action="store_true", help="leave out the 2 GiB machine's tile")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--note", default="")
    return parser.parse_args()


def paths_for(size: tuple[int, int], *, small_machine: bool) -> list[JobPath]:
    """ORT fp32 at tile 256, at ``--tile auto`` here, and (``small_machine``) at the tile
    auto gives a 2 GiB machine."""
    small = choose_tile([size], scale=2.0, batch=4, halo=20, device="cpu", precision="fp32", channels=64,
                        budget=cpu_budget(SMALL_MACHINE)).tile  # fmt: skip
    paths = [
        JobPath("onnxruntime-fp32-t256", "onnxruntime", "fp32", tile=256),
        JobPath("onnxruntime-fp32-tauto", "onnxruntime", "fp32"),
    ]
    if small_machine:
        paths.append(JobPath(f"onnxruntime-fp32-tauto-2GiB-machine (t{small or 'whole'})", "onnxruntime", "fp32",
                             tile=small))  # fmt: skip
    return paths


def markdown(results: dict[str, Any], title: str) -> str:
    lines = [f"# {title}", "", f"Machine: {results['machine']['cpu']}, {results['machine']['logical_cpus']} CPUs, "
             f"flags {' '.join(results['machine']['cpu_flags'])}; load average before "
             f"{results['machine']['load_average_before']}, after {results['machine']['load_average_after']}.",
             "", results["note"], "",
             "| output | path | tile (halo overhead) | Mpx/s | vs tile 256 |", "|---|---|---|---|---|"]  # fmt: skip
    for size, result in results["sizes"].items():
        paths = result["paths"]
        base = paths["onnxruntime-fp32-t256"]["megapixels_per_second"]
        for name, p in paths.items():
            tile = "whole" if p["tile"] == 0 else f"{p['tile']} (+{p['halo_overhead']:.1%})"
            rate = p["megapixels_per_second"]
            lines.append(f"| {size} ({result['output_megapixels']:.2f} Mpx) | {name} | {tile} | {rate:.4f} | "
                         f"{rate / base:.2f}x |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    args = arguments()
    load_before = load_average()
    results: dict[str, Any] = {"note": args.note, "repeats": args.repeats, "warmup": args.warmup, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="vdsr-cpu-tile-") as folder:
        for name in args.size or list(SIZES):
            height, width = SIZES[name]
            photo, small = photo_inputs(args.photo, (height, width), Path(folder))
            print(f"{name}: {photo.name}, load {load_average()}", flush=True)
            results["sizes"][name] = time_jobs(
                paths_for((height, width), small_machine=not args.no_small_machine), [photo], repeats=args.repeats,
                warmup=args.warmup, threads=args.threads, warm_on=[small],
                on_event=lambda e: print(json.dumps(e), flush=True),
            )  # fmt: skip
    results["machine"] = machine_info(load_before)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M")
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"cpu-tile-{stamp}"
    base.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results, f"--tile auto vs 256 on the CPU, {stamp}")
    base.with_suffix(".md").write_text(text)
    print(text)
    print(f"wrote {base}.json/.md")


if __name__ == "__main__":
    main()
