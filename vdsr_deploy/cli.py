"""The ``vdsr`` command line: parse, build a config, call one library function, render.

Every :class:`~vdsr_deploy.errors.VdsrError` becomes one sentence on stderr and exit code
1; heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(
    name="vdsr",
    help="VDSR super-resolution: train, export, build engines, upscale, evaluate, validate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WeightsOption = Annotated[
    Path | None, typer.Option("--weights", "-w", help="VDSR weights (.safetensors); default: the shipped weights.")
]
BackendOption = Annotated[str, typer.Option("--backend", "-b", help="auto | torch | onnxruntime | tensorrt")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
PrecisionOption = Annotated[str, typer.Option("--precision", "-p", help="fp32 | fp16 | bf16")]
ProviderOption = Annotated[
    str, typer.Option("--provider", help="ONNX Runtime execution provider: cpu | cuda | tensorrt")
]
TileOption = Annotated[int, typer.Option("--tile", "-t", help="Tile side in pixels; 0 runs each image whole.")]
HaloOption = Annotated[int, typer.Option("--halo", help="Context around each tile (>= 20 for exact results).")]
BatchOption = Annotated[int, typer.Option("--batch", help="Tiles per runner call.")]
ThreadsOption = Annotated[int, typer.Option("--threads", help="CPU threads for the runtime (0 = all cores).")]
EnginesOption = Annotated[
    Path | None, typer.Option("--engines-dir", help="Where ONNX exports and engines are cached (default ./engines).")
]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    from vdsr_deploy.errors import VdsrError

    try:
        yield
    except VdsrError as error:
        _fail(str(error))


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _runner_spec(
    backend: str, device: str, precision: str, provider: str, weights: Path | None,
    onnx: Path | None, engine: Path | None, engines_dir: Path | None, threads: int,
) -> Any:
    from vdsr_deploy.runtime import RunnerSpec

    return RunnerSpec(
        backend=backend, device=device, precision=precision, provider=provider, weights=weights,
        onnx=onnx, engine=engine, engines_dir=engines_dir, threads=threads,
    )


@app.command()
def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (one input) or folder.")],
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor > 1 (2, 3, 4 or any).")] = 2.0,
    weights: WeightsOption = None,
    backend: BackendOption = "auto",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    provider: ProviderOption = "cpu",
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Use this ONNX file (onnxruntime/tensorrt).")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="Use this TensorRT engine.")] = None,
    engines_dir: EnginesOption = None,
    tile: TileOption = 256,
    halo: HaloOption = 20,
    batch: BatchOption = 4,
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="png | jpg | webp | tiff | bmp (default: as input).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    threads: ThreadsOption = 0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", help="Refuse inputs larger than this many pixels.")] = 400_000_000,
    jobs: Annotated[str, typer.Option("--jobs", "-j", help="load:save worker threads.")] = "2:2",
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON summary here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Upscale images (RGB via YCbCr, gray, alpha, 16-bit) with exact tiling on any runtime."""
    from vdsr_deploy.batch import JobConfig, run_job
    from vdsr_deploy.pipeline import PipelineConfig
    from vdsr_deploy.runtime import open_runner
    from vdsr_deploy.tiling import TileConfig

    with _user_errors():
        load_threads, save_threads = _parse_jobs(jobs)
        tiling = TileConfig(tile=tile, halo=halo)
        config = JobConfig(
            inputs=tuple(inputs), output=output, fmt=fmt, overwrite=overwrite, max_pixels=max_pixels,
            pipeline=PipelineConfig(scale=scale, tiling=tiling, batch=batch),
            load_threads=load_threads, save_threads=save_threads,
        )
        spec = _runner_spec(backend, device, precision, provider, weights, onnx, engine, engines_dir, threads)
        console = _console()
        with open_runner(spec, tiling=tiling, batch=batch) as runner, _progress(console, quiet) as on_event:
            console.print(f"[dim]runtime {runner.info.label}, tile {tile or 'whole image'}, batch {batch}[/dim]")
            summary = run_job(config, runner, on_event)
    if report is not None:
        report.write_text(json.dumps(summary.to_dict(), indent=2))
    _render_summary(console, summary)
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed:
        raise typer.Exit(1)


def _parse_jobs(jobs: str) -> tuple[int, int]:
    from vdsr_deploy.errors import ConfigError

    parts = jobs.split(":")
    try:
        values = [int(p) for p in parts]
    except ValueError as error:
        raise ConfigError(f"--jobs: expected LOAD:SAVE like 2:2, got {jobs!r}") from error
    if len(values) != 2 or min(values) < 1:
        raise ConfigError(f"--jobs: expected LOAD:SAVE with both >= 1, got {jobs!r}")
    return values[0], values[1]


@contextmanager
def _progress(console: Any, quiet: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]upscale"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
        console=console, disable=quiet, transient=False,
    )
    task = progress.add_task("upscale", total=None, rate="")

    def on_event(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            progress.update(task, total=event["total"])
        elif kind == "done":
            progress.update(task, advance=1, rate=f"{event['megapixels_per_second']:.3f} Mpx/s")
        elif kind == "failed":
            progress.console.print(f"[red]failed[/red] {event['file']}: {event['reason']}")
            if "target" not in event:
                progress.update(task, advance=0)
        elif kind == "skipped":
            progress.console.print(f"[yellow]skipped[/yellow] {event['target']} exists (use --overwrite)")

    with progress:
        yield on_event


def _render_summary(console: Any, summary: Any) -> None:
    rate = summary.megapixels_out / summary.seconds if summary.seconds else 0.0
    console.print(
        f"{len(summary.done)} done, {len(summary.skipped)} skipped, {len(summary.failed)} failed"
        f" — {summary.megapixels_out:.2f} Mpx in {summary.seconds:.1f} s ({rate:.3f} Mpx/s)"
        + (" — interrupted" if summary.interrupted else "")
    )
    for failure in summary.failed:
        console.print(f"  [red]✗[/red] {failure.source}: {failure.reason}")


@app.command()
def export(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the ONNX files.")] = Path("engines"),
    weights: WeightsOption = None,
    precision: Annotated[list[str], typer.Option("--precision", "-p", help="fp32 and/or fp16 (repeatable).")] = ["fp32", "fp16"],  # noqa: B006
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
) -> None:
    """Export dynamic-shape ONNX (FP32, and FP16 for TensorRT), verified against PyTorch."""
    from vdsr_deploy.export import default_onnx_name, export_onnx
    from vdsr_deploy.weights import load_weights

    console = _console()
    with _user_errors():
        model, info = load_weights(weights)
        for p in precision:
            result = export_onnx(model, output_dir / default_onnx_name(info.sha256, p), precision=p, info=info, overwrite=overwrite)
            console.print(
                f"{result.path}  ({p}; ORT vs PyTorch max |diff| {result.max_abs_diff:.2e} on shapes "
                f"{', '.join('x'.join(map(str, s)) for s in result.shapes_checked)})"
            )


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Versions, available runtimes and providers, GPU, and where the default weights are."""
    from vdsr_deploy.system import system_info

    data = system_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key:>22}: {value}")


@app.command("eval")
def evaluate_command(
    folders: Annotated[list[Path], typer.Argument(help="Folders of HR images (e.g. Set5).")],
    scales: Annotated[list[int], typer.Option("--scale", "-s", help="Scales (repeatable).")] = [2, 3, 4],  # noqa: B006
    weights: WeightsOption = None,
    backend: BackendOption = "torch",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    provider: ProviderOption = "cpu",
    engines_dir: EnginesOption = None,
    tile: TileOption = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write <name>.json and <name>.md reports here.")] = None,
    threads: ThreadsOption = 0,
) -> None:
    """PSNR/SSIM on Y (modcrop, MATLAB bicubic, shave = scale) against bicubic."""
    from vdsr_deploy.evaluate import evaluate_folders, render_markdown

    with _user_errors():
        spec = _runner_spec(backend, device, precision, provider, weights, None, None, engines_dir, threads)
        reports = evaluate_folders(folders, scales, spec, tile=tile)
    console = _console()
    from rich.table import Table

    for report in reports:
        table = Table(title=f"{report.dataset} — {report.backend}")
        for column in ("scale", "images", "bicubic PSNR", "bicubic SSIM", "PSNR", "SSIM", "paper bic/VDSR"):
            table.add_column(column, justify="right")
        from vdsr_deploy.evaluate import PAPER_PSNR

        for s in report.summaries:
            paper = PAPER_PSNR.get(report.dataset.lower(), {}).get(s.scale)
            table.add_row(
                f"x{s.scale}", str(s.images), f"{s.bicubic_psnr:.2f}", f"{s.bicubic_ssim:.4f}",
                f"{s.psnr:.2f}", f"{s.ssim:.4f}", f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-",
            )
        console.print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for report in reports:
            (out / f"{report.dataset}.json").write_text(json.dumps(report.to_dict(), indent=2))
            (out / f"{report.dataset}.md").write_text(render_markdown(report))
        console.print(f"reports written to {out}")


@app.command()
def train(
    config: Annotated[str, typer.Option("--config", "-c", help="Recipe: built-in name (paper, fast) or a TOML file.")] = "fast",
    data: Annotated[list[Path] | None, typer.Option("--data", help="HR training image folders (repeatable).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Validation folder (e.g. Set5).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, weights.")] = Path("runs/vdsr"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.safetensors.")] = False,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Override the recipe's iterations.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Train VDSR (paper recipe or a faster one) with checkpoints, resume and validation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from train.config import load_config
    from train.loop import train as run_training

    if not data:
        _fail("give at least one --data folder of HR training images (e.g. ../shared/data/train/t91)")
    console = _console()
    with _user_errors():
        recipe = load_config(config)
        if iterations is not None:
            recipe = recipe.replace(iterations=iterations)
        progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), console=console,
        )
        task = progress.add_task("train", total=recipe.iterations, status="preparing data")

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "train":
                progress.update(
                    task, completed=event["step"],
                    status=f"loss {event['loss']:.5f} lr {event['lr']:.2e} {1 / event['seconds_per_iter']:.2f} it/s",
                )
            elif event["event"] == "validate":
                scores = " ".join(f"x{s} {event[f'x{s}']:.2f}" for s in recipe.scales)
                progress.console.print(f"step {event['step']}: validation PSNR {scores}")

        with progress:
            result = run_training(recipe, data_dirs=data, out_dir=out, val_dir=val, resume=resume, device=device, on_event=on_event)
    state = "stopped early (resume with --resume)" if result.interrupted else "finished"
    console.print(f"{state} at iteration {result.iterations_done}; best {result.best_psnr}; run folder {out}")
    if result.interrupted:
        raise typer.Exit(130)


def main() -> None:  # pragma: no cover - entry point convenience
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
