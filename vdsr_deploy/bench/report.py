"""Rendering a benchmark's result dict for people: the 80-column terminal table
(:func:`terminal_rows`), the full Markdown report (:func:`render_markdown`, every column of
:data:`BENCH_COLUMNS`, the machine, versions and settings, GPU jobs and peak shares), the
throughput plot (:func:`write_plot`) and the CPU paths' speed-and-quality table
(:func:`cost_markdown`). Nothing here measures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vdsr_deploy.bench.config import CPU_BASELINE
from vdsr_deploy.bench.quality import worst_costs
from vdsr_deploy.environment import describe_weights
from vdsr_deploy.precision.names import MAX_AUTO_COST_DB

BENCH_COLUMNS = (
    "setting", "runner", "tiles x batch", "runtime Mpx/s", "img/s", "p50 / p90 / p99 ms",
    "GFLOP/s", "pipeline Mpx/s", "pipeline overhead", "vs baseline",
)  # fmt: skip
# The terminal table: fits 80 columns (bench.md has every column above).
TERMINAL_COLUMNS = ("setting", "Mpx/s", "p50 ms", "pipe Mpx/s", "overhead", "vs base")
OVERHEAD_NOTE = (
    "overhead: the whole upscale path's (pipe) time per image vs the bare runtime's "
    "(+5% = 5% slower; negative = the pipeline was faster)"
)


def fmt_overhead(ratio: float) -> str:
    """The pipeline's latency over the bare runtime's as a signed percentage: ``+5%`` is
    5% slower, ``-17%`` faster (a ratio of 0.83 read as "0.83x overhead" misleads)."""
    return f"{(ratio - 1) * 100:+.0f}%"


def fmt_ratio(ratio: float | None) -> str:
    """A throughput ratio to the baseline: ``1.25x``, or ``-`` when there is none."""
    return f"{ratio:.2f}x" if ratio is not None else "-"


def _versus_cells(item: dict[str, Any], digits: int) -> tuple[str, str, str]:
    """The pipeline's Mpx/s (to ``digits`` significant digits), its overhead over the bare
    runtime and the runtime's ratio to the baseline: the last three columns of both tables."""
    pipeline = item.get("pipeline")
    ratio = item.get("ratio_vs_baseline", {}).get("runtime")
    return (
        f"{pipeline['megapixels_per_second']:.{digits}g}" if pipeline else "-",
        fmt_overhead(item["pipeline_overhead"]) if pipeline else "-",
        fmt_ratio(ratio),
    )


def terminal_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table cells per setting in :data:`TERMINAL_COLUMNS` order; settings that did not
    run show their status (the reason is printed by the caller)."""
    rows: list[tuple[str, ...]] = []
    for item in result["results"]:
        if item.get("runtime") is None:
            rows.append((item["name"], item["status"], "", "", "", ""))
            continue
        rt = item["runtime"]
        rows.append(
            (
                item["name"],
                f"{rt['megapixels_per_second']:.3g}",
                f"{rt['latency_ms']['p50']:.1f}",
                *_versus_cells(item, digits=3),
            )
        )
    return rows


def bench_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table cells per setting, in :data:`BENCH_COLUMNS` order (shared by CLI and Markdown)."""
    rows: list[tuple[str, ...]] = []
    for item in result["results"]:
        runner = item["runner"]["label"] if item.get("runner") else "-"
        if item.get("runtime") is None:
            rows.append((item["name"], runner, f"{item['status']}: {item['reason']}", *[""] * 7))
            continue
        rt = item["runtime"]
        lat = rt["latency_ms"]
        rows.append(
            (
                item["name"],
                runner,
                f"{item['tiles_per_image']} in {item['calls_per_image']} call(s), "
                f"halo {rt['halo_overhead']:.2f}x",
                f"{rt['megapixels_per_second']:.4g}",
                f"{rt['images_per_second']:.3g}",
                f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f}",
                f"{rt['equivalent_gflops_per_second']:.0f}",
                *_versus_cells(item, digits=4),
            )
        )
    return rows


def render_markdown(result: dict[str, Any], title: str = "vdsr bench") -> str:
    """A Markdown table of the results with the machine, versions and settings."""
    machine, config = result["machine"], result["config"]
    size = "x".join(str(v) for v in config["size"])
    lines = [
        f"# {title}",
        "",
        f"- date: {result['created']}",
        f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
        f"flags {', '.join(machine['cpu_flags']) or '-'}, {machine['memory_gib']} GiB; "
        f"GPU {machine['gpu'] or 'none'}",
        f"- load average before/after: {machine['load_average_before']} / "
        f"{machine['load_average_after']}; "
        f"nice {machine['nice']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items() if v)}",
        f"- threads: {result['threads']}",
        f"- workload: {size} output (x{config['scale']:g} from "
        f"{config['input_shape'][1]}x{config['input_shape'][0]}), "
        f"{config['flops_per_pixel'] / 1e6:.2f} MFLOP/pixel, warm-up {config['warmup']}, "
        f"up to {config['repeats']} timed repeats{' interleaved' if config['interleave'] else ''}"
        + (
            "; x8 self-ensemble (8 transformed planes per image, 8x the compute)"
            if config.get("ensemble")
            else ""
        ),
    ]
    if result.get("note"):
        lines.append(f"- note: {result['note']}")
    if config.get("baseline"):
        lines.append(f"- vs baseline: throughput relative to `{config['baseline']}`")
    if config.get("weights"):
        lines.append(f"- weights: {describe_weights(config['weights'], markdown=True)}")
    lines += ["", "| " + " | ".join(BENCH_COLUMNS) + " |", "|" + "---|" * len(BENCH_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in bench_rows(result)]
    lines += [
        "",
        "runtime = bare runner on pre-cut tiles; pipeline = colour + MATLAB bicubic + tiling + "
        "stitching on the in-memory image (on the device for CUDA runners); GFLOP/s counts "
        "output pixels only (halo = pixels the network computes / output pixels); latency is "
        "per image; pipeline " + OVERHEAD_NOTE + ".",
    ]
    lines += _device_lines(result)
    return "\n".join(lines) + "\n"


def _no_peak(item: dict[str, Any]) -> str:
    on_cuda = str((item.get("runner") or {}).get("device", "")).startswith("cuda")
    return "unknown GPU" if on_cuda else "not a GPU"


def _device_lines(result: dict[str, Any]) -> list[str]:
    """End-to-end jobs and the share of the GPU's dense limit, when measured."""
    rows = [r for r in result["results"] if r.get("job") or r.get("device_peak")]
    if not rows:
        return []
    lines = [
        "",
        "| setting | runtime Mpx/s | pipeline Mpx/s (path) | job Mpx/s (frames) | job / runtime "
        "| runtime TFLOP/s | share of dense peak (runtime / pipeline / job) | peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in rows:
        rt, pl, job, peak = item["runtime"], item.get("pipeline"), item.get("job"), item.get("device_peak")
        shares = " / ".join(
            f"{peak[k]:.1%}" if peak and peak.get(k) is not None else "-" for k in ("runtime", "pipeline", "job")
        )
        cells = [
            item["name"],
            f"{rt['megapixels_per_second']:.4g}",
            f"{pl['megapixels_per_second']:.4g} ({item.get('pipeline_path', 'host')})" if pl else "-",
            f"{job['megapixels_per_second']:.4g} ({job['frames']})" if job else "-",
            f"{item['job_vs_runtime']:.2f}" if job else "-",
            f"{rt['equivalent_gflops_per_second'] / 1e3:.1f}",
            shares,
            f"{peak['peak_tflops']:.0f} TFLOP/s {peak['precision']} ({peak['source']})" if peak else _no_peak(item),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "job = vdsr_deploy.job.run_job over the frames (PNG decode, upscale, PNG encode at the "
        "writer's default level 6, atomic write); TFLOP/s and shares count output pixels only.",
    ]
    return lines


def write_plot(result: dict[str, Any], path: Path) -> Path | None:
    """Throughput (Mpx/s) per setting, runtime and pipeline, as a PNG (None if nothing ran)."""
    from vdsr_deploy.parity.plots import throughput_bars

    done = [r for r in result["results"] if r.get("runtime")]
    if not done:
        return None
    series: dict[str, list[float]] = {
        "runtime": [r["runtime"]["megapixels_per_second"] for r in done]
    }
    if all(r.get("pipeline") for r in done):
        series["pipeline"] = [r["pipeline"]["megapixels_per_second"] for r in done]
    size = "x".join(str(v) for v in result["config"]["size"])
    return throughput_bars(
        [r["name"] for r in done], series, path, title=f"VDSR throughput, {size} output"
    )


def cost_markdown(result: dict[str, Any], tables: dict[str, Any], baseline: str = CPU_BASELINE) -> str:
    """One row per path: speed vs the baseline (runtime and whole pipeline) and the task-PSNR
    change on every set and scale, with whether it is within ``auto``'s limit."""
    if not tables:
        return ""
    sets = list(tables)
    scales = next(iter(tables.values()))["scales"]
    header = ["path", "runtime vs ORT fp32", "pipeline vs ORT fp32"]
    header += [f"{name} x{s} (dB)" for name in sets for s in scales]
    header.append(f"within {MAX_AUTO_COST_DB:g} dB")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    worst = worst_costs(tables, baseline)
    for item in result["results"]:
        name = item["name"]
        ratios = item.get("ratio_vs_baseline", {})
        cells = [name, fmt_ratio(ratios.get("runtime")), fmt_ratio(ratios.get("pipeline"))]
        for table in tables.values():
            per_scale = table["runners"].get(name)
            for s in scales:
                if per_scale is None:
                    cells.append("-")
                    continue
                values = per_scale[f"x{s}"]
                delta = values[f"psnr_delta_vs_{baseline}"]
                cells.append(f"{values['psnr']:.3f}" if name == baseline else f"{delta:+.3f}")
        if name == baseline:
            cells.append("reference")
        elif name not in worst:
            cells.append("not scored")
        else:
            cells.append("yes" if worst[name] <= MAX_AUTO_COST_DB else "no")
        lines.append("| " + " | ".join(cells) + " |")
    bicubic = []
    for table in tables.values():
        first = next(iter(table["runners"].values()))
        bicubic += [f"{first[f'x{s}']['bicubic_psnr']:.3f}" for s in scales]
    lines.append("| bicubic (PSNR) | | | " + " | ".join(bicubic) + " | |")
    return "\n".join(lines) + "\n"
