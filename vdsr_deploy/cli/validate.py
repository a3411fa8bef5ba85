"""``vdsr validate``: runtime parity against the PyTorch FP32 reference, as a table and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, check_halo, escape, make_console, user_errors
from vdsr_deploy.cli.options import (
    BatchOption,
    DeviceOption,
    EnginesOption,
    HaloOption,
    InexactHaloOption,
    ProviderOption,
    ThreadsOption,
    TileOption,
    WeightsOption,
)
from vdsr_deploy.planes.tiling import DEFAULT_HALO, DEFAULT_TILE


@app.command()
def validate(
    folder: Annotated[Path | None, typer.Argument(help="Folder of images (default: the bundled sample image).")] = None,
    hr: Annotated[
        Path | None,
        typer.Option(
            "--hr",
            help="Folder of HR images: degraded by --scale (paper protocol), outputs scored vs HR.",
        ),
    ] = None,
    weights: WeightsOption = None,
    runtimes: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime",
            "-r",
            help="Pair to check (repeatable): onnxruntime-fp32, onnxruntime-fp16, "
            "onnxruntime-int8, openvino-fp32, openvino-bf16, openvino-int8, "
            "torch-bf16, torch-fp16, tensorrt-fp32, tensorrt-fp16, untiled. "
            "Default: all (unavailable ones are skipped).",
        ),
    ] = None,
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor (integer with --hr).")] = 2.0,
    device: DeviceOption = "auto",
    provider: ProviderOption = "cpu",
    onnx: Annotated[
        list[Path] | None,
        typer.Option(
            "--onnx",
            help="ONNX file to check instead of exporting one (repeatable; matched by its precision).",
        ),
    ] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="TensorRT engine to check (its sidecar too).")] = None,
    engines_dir: EnginesOption = None,
    tile: TileOption = DEFAULT_TILE,
    halo: HaloOption = DEFAULT_HALO,
    batch: BatchOption = 4,
    sixteen_bit: Annotated[
        bool, typer.Option("--sixteen-bit", help="Also compare after conversion to 16-bit.")
    ] = False,
    edge_cases: Annotated[
        bool,
        typer.Option(
            "--edge-cases/--no-edge-cases",
            help="Add generated edge cases (odd sizes, flat, edges, 1 px).",
        ),
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write validate.json, validate.md and validate-heatmap.png here."),
    ] = None,
    threads: ThreadsOption = 0,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble",
            help="Compare x8 self-ensemble outputs (reference and every runtime run the 4 rotations "
            "and their mirror images: 8x the compute).",
        ),
    ] = False,
    inexact_halo: InexactHaloOption = False,
) -> None:
    """Prove runtime parity: every runtime/precision vs the PyTorch FP32 reference (exit 1 on
    any failure)."""
    from vdsr_deploy.parity import DEFAULT_CANDIDATES, ValidateConfig
    from vdsr_deploy.parity import validate as run
    from vdsr_deploy.parity.images import validation_images
    from vdsr_deploy.planes.tiling import TileConfig

    console = make_console()
    with user_errors():
        check_halo(halo, tile, inexact_halo, weights, None, console)
        config = ValidateConfig(
            weights=weights,
            scale=scale,
            tiling=TileConfig(tile=tile, halo=halo),
            batch=batch,
            device=device,
            provider=provider,
            candidates=tuple(runtimes) if runtimes else DEFAULT_CANDIDATES,
            bit_depths=(8, 16) if sixteen_bit else (8,),
            onnx=tuple(onnx or ()),
            engine=engine,
            engines_dir=engines_dir,
            threads=threads,
            ensemble=ensemble,
        )
        images = validation_images(folder, hr, scale, edge_cases=edge_cases)

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "reference":
                console.print(f"[dim]reference PyTorch FP32 on {event['images']} image(s)...[/dim]")
            elif event["event"] == "pair-done":
                console.print(f"[dim]  {escape(str(event['name']))}: {event['status']}[/dim]")

        report = run(config, images, on_event=on_event)
    _render_validation(console, report)
    if out is not None:
        from vdsr_deploy.parity.report import write_reports

        with user_errors():
            heatmap = write_reports(report, out)
        console.print(f"reports written to {escape(str(out))}" + ("" if heatmap else " (no heatmap: no pair ran)"))
    if not report.passed:
        raise typer.Exit(1)


def _render_validation(console: Any, report: Any) -> None:
    from rich import box
    from rich.table import Table

    from vdsr_deploy.environment import describe_weights
    from vdsr_deploy.parity.report import TERMINAL_COLUMNS, TERMINAL_LEGEND, terminal_row

    colours = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    ensemble = ", x8 ensemble" if report.ensemble else ""
    table = Table(
        title=f"parity vs {report.reference} (x{report.scale:g}, tile {report.tiling.tile or 'whole'}{ensemble})",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in TERMINAL_COLUMNS:
        table.add_column(
            column,
            justify="left" if column in ("pair", "status") else "right",
            overflow="fold",
            no_wrap=column == "pair",  # a runtime's name stays on one line
        )
    for pair in report.pairs:
        cells = [escape(cell) for cell in terminal_row(pair)]
        cells[1] = f"[{colours.get(pair.status, 'white')}]{cells[1]}[/]"
        table.add_row(*cells)
    console.print(f"weights {escape(describe_weights(report.weights))}")
    console.print(table)
    console.print(f"[dim]{escape(TERMINAL_LEGEND)}[/dim]")
    for pair in report.pairs:
        if pair.figures is None and pair.reasons:
            console.print(f"[yellow]{pair.status}[/yellow] {escape(pair.name)}: {escape('; '.join(pair.reasons))}")
    for pair in report.pairs:
        for note in pair.notes:
            console.print(f"[dim]note ({escape(pair.name)}): {escape(note)}[/dim]")
    for check in report.artifacts:
        mark = "[green]ok[/green]" if check.passed else "[red]MISMATCH[/red]"
        console.print(f"artifact {escape(str(check.artifact))}: {mark} — {escape(check.detail)}")
    if report.passed:
        console.print("[bold green]PASSED[/bold green]")
    else:
        console.print("[bold red]FAILED[/bold red]")
        for line in report.failures:
            console.print(f"  [red]✗[/red] {escape(line)}")
