"""``vdsr bench``: throughput and latency per runtime setting, as a table and reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.backends.registry import REGISTRY
from vdsr_deploy.cli.common import app, check_halo, escape, make_console, user_errors
from vdsr_deploy.cli.options import (
    DeviceOption,
    EnginesOption,
    HaloOption,
    InexactHaloOption,
    ProviderOption,
    ThreadsOption,
    WeightsOption,
)
from vdsr_deploy.planes.tiling import DEFAULT_HALO, DEFAULT_TILE
from vdsr_deploy.precision.names import PRECISIONS


@app.command()
def bench(
    backends: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help=" | ".join(REGISTRY) + " (repeatable)."),
    ] = None,
    precisions: Annotated[
        list[str] | None,
        typer.Option("--precision", "-p", help=" | ".join(PRECISIONS) + " (repeatable; default fp32)."),
    ] = None,
    tiles: Annotated[
        list[int] | None,
        typer.Option("--tile", "-t", help="Tile side (repeatable; 0 = whole image)."),
    ] = None,
    batches: Annotated[list[int] | None, typer.Option("--batch", help="Tiles per runner call (repeatable).")] = None,
    halo: HaloOption = DEFAULT_HALO,
    size: Annotated[
        str | None,
        typer.Option("--size", help="Output image size, HxW or N (default 256x256; on a GPU 2160x3840)."),
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option("--frames", help="Also time a batch job over N PNG frames (default 0; on a GPU 8)."),
    ] = None,
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor of the test image.")] = 2.0,
    weights: WeightsOption = None,
    device: DeviceOption = "auto",
    provider: ProviderOption = "cpu",
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="ONNX file for the onnxruntime settings (e.g. an INT8 QDQ model)."),
    ] = None,
    engines_dir: EnginesOption = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per setting first.")] = 1,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per setting (at most).")] = 10,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Stop repeating a setting after this.")] = 60.0,
    threads: ThreadsOption = 0,
    pipeline: Annotated[
        bool, typer.Option("--pipeline/--no-pipeline", help="Also time the whole upscale path.")
    ] = True,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Setting name to report ratios against.")] = None,
    note: Annotated[str, typer.Option("--note", help="Free text stored with the results.")] = "",
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="Time the x8 self-ensemble (8 transformed planes per image: 8x the compute; "
            "Mpx/s counts output pixels).",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write bench.json, bench.md and bench.png here."),
    ] = None,
    cpu_paths: Annotated[
        bool,
        typer.Option(
            "--cpu-paths",
            help="Time every CPU path (ONNX Runtime fp32 as the baseline, PyTorch fp32/bf16, "
            "ONNX Runtime int8) at the first --tile/--batch.",
        ),
    ] = False,
    hr: Annotated[
        list[Path] | None,
        typer.Option("--hr", help="HR folder (repeatable, e.g. Set5, Set14): task-PSNR cost of each lossy setting."),
    ] = None,
    inexact_halo: InexactHaloOption = False,
) -> None:
    """Throughput and latency per backend/precision/tile/batch, bare runtime and whole pipeline."""
    from vdsr_deploy.bench import BenchConfig, benchmark, render_markdown, write_plot

    console = make_console()
    with user_errors():
        if any(tiles or [DEFAULT_TILE]):
            check_halo(halo, max(tiles or [DEFAULT_TILE]), inexact_halo, weights, onnx, console)
        settings, notes, baseline = _settings(
            cpu_paths, backends, precisions, tiles, batches, device, provider, onnx, baseline
        )
        for line in notes:
            console.print(f"[yellow]{escape(line)}[/yellow]")
        from vdsr_deploy.bench import large_work_defaults

        default_size, default_frames = large_work_defaults(settings)
        config = BenchConfig(
            settings=tuple(settings),
            weights=weights,
            size=_parse_size(size) if size is not None else default_size,
            frames=frames if frames is not None else default_frames,
            halo=halo,
            scale=scale,
            warmup=warmup,
            repeats=repeats,
            min_repeats=min(3, repeats),
            max_seconds=max_seconds,
            threads=threads,
            pipeline=pipeline,
            baseline=baseline,
            engines_dir=engines_dir,
            note=note,
            ensemble=ensemble,
        )

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] in ("skipped", "error"):
                setting, reason = escape(str(event["setting"])), escape(str(event["reason"]))
                console.print(f"[yellow]{setting}: {event['event']} ({reason})[/yellow]")
            elif event["event"] == "warmup":
                console.print(f"[dim]warming up {escape(str(event['setting']))}[/dim]")

        result = benchmark(config, on_event=on_event)
        costs = _task_psnr_costs(console, result, hr, settings, config) if hr else ""
    _render_bench(console, result)
    if costs:
        console.print(costs)
    if out is not None:
        with user_errors():
            out.mkdir(parents=True, exist_ok=True)
            (out / "bench.json").write_text(json.dumps(result, indent=2))
            (out / "bench.md").write_text(render_markdown(result) + ("\n" + costs if costs else ""))
            write_plot(result, out / "bench.png")
        console.print(f"results written to {escape(str(out))}")
    if any(r["status"] == "error" for r in result["results"]):
        raise typer.Exit(1)


def _settings(
    cpu_paths: bool,
    backends: list[str] | None,
    precisions: list[str] | None,
    tiles: list[int] | None,
    batches: list[int] | None,
    device: str,
    provider: str,
    onnx: Path | None,
    baseline: str | None,
) -> tuple[list[Any], list[str], str | None]:
    """The settings to time, notes on those left out, and the baseline: every CPU path
    (``--cpu-paths``) or the sweep of the options (an ``--onnx`` file at its own precision)."""
    if cpu_paths:
        from vdsr_deploy.bench import CPU_BASELINE, cpu_path_settings

        return cpu_path_settings((tiles or [DEFAULT_TILE])[0], batch=(batches or [1])[0]), [], baseline or CPU_BASELINE
    from vdsr_deploy.bench import sweep

    onnx_precision = None
    if onnx is not None:
        from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata

        onnx_precision = onnx_metadata(onnx).get(MetadataKey.PRECISION, "fp32")
    settings, notes = sweep(
        backends or ["torch", "onnxruntime"],
        precisions or ["fp32"],
        tiles or [DEFAULT_TILE],
        batches or [1],
        device=device,
        provider=provider,
        onnx=onnx,
        onnx_precision=onnx_precision,
    )
    return settings, notes, baseline


def _task_psnr_costs(console: Any, result: dict[str, Any], hr: list[Path], settings: list[Any], config: Any) -> str:
    """``--hr``: the task-PSNR cost of each lossy setting on the HR folders, stored in
    ``result`` and returned as Markdown."""
    from vdsr_deploy.bench import cost_markdown, quality_costs

    reference = config.baseline or settings[0].name
    scored = [s for s in settings if s.precision != "fp32" or s.name == reference]
    console.print(f"[dim]scoring {escape(', '.join(p.name for p in hr))} (whole images, x2/x3/x4)...[/dim]")
    result["task_psnr"] = quality_costs(hr, [2, 3, 4], scored, config, reference)
    return cost_markdown(result, result["task_psnr"], reference)


def _parse_size(text: str) -> tuple[int, int]:
    from vdsr_deploy.errors import ConfigError

    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError as error:
        raise ConfigError(f"--size: expected HxW or N like 256x256, got {text!r}") from error
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise ConfigError(f"--size: expected HxW or N with positive sides, got {text!r}")
    return values[0], values[1]


def _render_bench(console: Any, result: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    from vdsr_deploy.bench import OVERHEAD_NOTE, TERMINAL_COLUMNS, terminal_rows

    size = "x".join(str(v) for v in result["config"]["size"])
    table = Table(
        title=f"vdsr bench — {size} output, {result['machine']['cpu']}", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="left" if column == "setting" else "right", overflow="fold")
    for row in terminal_rows(result):
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)
    notes = [OVERHEAD_NOTE]
    if result["config"].get("baseline"):
        notes.append(f"vs base: runtime throughput relative to {result['config']['baseline']}")
    notes.append("runner, tiles, latency percentiles and GFLOP/s: --out DIR writes them to bench.md")
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    for item in result["results"]:
        if item.get("runtime") is None:
            name, reason = escape(str(item["name"])), escape(str(item["reason"]))
            console.print(f"[yellow]{item['status']}[/yellow] {name}: {reason}")
