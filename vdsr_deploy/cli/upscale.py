"""``vdsr upscale``: a batch job on one runner here, or on a Ray cluster; progress and summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, check_halo, counted, escape, make_console, runner_spec, user_errors
from vdsr_deploy.cli.options import (
    BackendOption,
    BatchOption,
    DeviceOption,
    EnginesOption,
    EnsembleOption,
    HaloOption,
    InexactHaloOption,
    PrecisionOption,
    ProviderOption,
    ThreadsOption,
    WeightsOption,
)
from vdsr_deploy.planes.tiling import DEFAULT_HALO, DEFAULT_TILE

DEFAULT_OUTPUT = "upscaled"
"""Without -o: the folder ``upscaled/`` in the current folder (as Real-ESRGAN's ``results/``)."""


@app.command()
def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or globs (paths or URIs: s3://...).")],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Output folder, or a file name (with an image suffix) for one input; path or URI. "
            "Outputs keep their input names.",
        ),
    ] = Path(DEFAULT_OUTPUT),
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor > 1 (2, 3, 4 or any).")] = 2.0,
    weights: WeightsOption = None,
    backend: BackendOption = "auto",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    provider: ProviderOption = "cpu",
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Use this ONNX file (onnxruntime/tensorrt).")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="Use this TensorRT engine.")] = None,
    foreign_model: Annotated[
        bool,
        typer.Option(
            "--foreign-model",
            help="Run an --onnx file that is not a vdsr-deploy export (no metadata saying which weights it runs).",
        ),
    ] = False,
    engines_dir: EnginesOption = None,
    tile: Annotated[
        str,
        typer.Option(
            "--tile", "-t", help="Tile side in pixels; 0 runs each image whole; auto: the largest that fits memory."
        ),
    ] = str(DEFAULT_TILE),
    halo: HaloOption = DEFAULT_HALO,
    batch: BatchOption = 4,
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="png | jpg | webp | tiff | bmp (default: as input)."),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Redo and replace every output instead of resuming."),
    ] = False,
    threads: ThreadsOption = 0,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", help="Refuse larger inputs (decompression bombs).")
    ] = 400_000_000,
    memory_mb: Annotated[
        int,
        typer.Option("--memory-mb", help="Memory for decoded inputs and bands in flight (MiB)."),
    ] = 1024,
    quality: Annotated[int, typer.Option("--quality", help="JPEG/WebP quality 1..100.")] = 95,
    jobs: Annotated[str, typer.Option("--jobs", "-j", help="load:save worker threads.")] = "2:2",
    report: Annotated[Path | None, typer.Option("--report", help="Write a JSON summary (every file) here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run on Ray: local (start Ray here), auto (this node's cluster), ray://host:port. Needs [cluster].",
        ),
    ] = None,
    actors: Annotated[
        int, typer.Option("--actors", help="With --cluster: workers (0 = one per GPU, else one per 2 CPUs).")
    ] = 0,
    retries: Annotated[
        int, typer.Option("--retries", help="With --cluster: retries of an image whose worker died.")
    ] = 2,
    ensemble: EnsembleOption = False,
    inexact_halo: InexactHaloOption = False,
) -> None:
    """Upscale images (RGB via YCbCr, gray, alpha, 16-bit) with exact tiling on any runtime.

    Re-running the same command resumes: complete outputs (checked against the manifest in
    the output folder) are skipped, the rest redone. Ctrl-C / SIGTERM stop cleanly (exit
    130 / 143) without leaving partial files.

    The defaults are for speed (--backend auto, --precision auto, --tile 256): the first
    lines say what was chosen and why. vdsr eval and vdsr validate default to the PyTorch
    fp32 reference instead.
    """
    from vdsr_deploy.backends.registry import choose_backend
    from vdsr_deploy.job import JobConfig, stop_on_signals
    from vdsr_deploy.job.autotile import resolve_tile
    from vdsr_deploy.job.inputs import check_inputs_exist
    from vdsr_deploy.job.remote import location
    from vdsr_deploy.job.report import check_report_path, write_report
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig

    console = make_console()
    summary: Any = None
    with stop_on_signals() as stop, user_errors():
        check_inputs_exist(inputs)  # before a runtime loads or any folder is created
        load_threads, save_threads = _parse_jobs(jobs)
        if report is not None:
            check_report_path(report)  # before any work: a report never replaces a user's file
        given = runner_spec(
            backend, device, precision, provider, weights, onnx, engine, engines_dir, threads, foreign_model
        )
        # on a cluster, each worker resolves --precision auto for its own hardware
        spec, picked = (given, None) if cluster is not None else _resolve_precision(given)
        if picked is not None and picked.warning:  # before anything slow starts
            console.print(f"[yellow]warning:[/yellow] {escape(picked.warning)}")
        chosen = resolve_tile(
            tile, tuple(inputs), output, spec, scale=scale, batch=batch, halo=halo, memory_mb=memory_mb,
            max_pixels=max_pixels,
        )  # fmt: skip
        check_halo(halo, chosen.tile, inexact_halo, weights, onnx, console)
        if chosen.reason:
            console.print(f"[dim]{escape(chosen.reason)}[/dim]")
        tiling = TileConfig(tile=chosen.tile, halo=halo)
        config = JobConfig(
            inputs=tuple(inputs),
            output=location(output),  # a URI (s3://...) becomes a RemotePath
            fmt=fmt,
            overwrite=overwrite,
            max_pixels=max_pixels,
            pipeline=PipelineConfig(scale=scale, tiling=tiling, batch=batch, ensemble=ensemble),
            load_threads=load_threads,
            save_threads=save_threads,
            memory_mb=memory_mb,
            quality=quality,
            model=given.model_identity(),
        )
        if spec.backend == "auto" and cluster is None:  # on a cluster, the workers' nodes decide
            choice = choose_backend(spec)
            console.print(f"[dim]backend auto -> {choice.backend}: {escape(choice.reason)}[/dim]")
        try:
            if cluster is not None:
                summary = _upscale_on_cluster(config, spec, cluster, actors, retries, console, quiet, stop.event)
            else:
                summary = _upscale_here(config, spec, picked, console, quiet, stop.event, chosen.max_side)
        except KeyboardInterrupt:
            stop.event.set()
        if summary is None:
            console.print("stopped before any image was processed")
            raise typer.Exit(stop.exit_code)
        if report is not None:
            write_report(report, summary, stop.exit_code if summary.interrupted else None)
    _render_summary(console, summary, output)
    if summary.interrupted:
        raise typer.Exit(stop.exit_code)
    if summary.failed:
        raise typer.Exit(1)


def _resolve_precision(spec: Any) -> tuple[Any, Any]:
    """``spec`` with ``--precision auto`` resolved, and the choice (said on the first line)."""
    from vdsr_deploy.runtime.prepare import default_engines_dir
    from vdsr_deploy.runtime.resolve import resolve_spec

    return resolve_spec(spec, spec.engines_dir or default_engines_dir())


def _upscale_here(
    config: Any, spec: Any, picked: Any, console: Any, quiet: bool, stop: Any, max_side: int | None = None
) -> Any:
    """The job on one runner on this machine; its first line says which runtime, tile and batch.
    ``max_side``: the largest image side an engine for whole images must take."""
    from vdsr_deploy.job import run_job
    from vdsr_deploy.runtime.prepare import open_runner

    pipeline = config.pipeline
    with open_runner(spec, tiling=pipeline.tiling, batch=pipeline.batch, max_side=max_side) as runner:
        console.print(
            f"[dim]runtime {escape(runner.info.label)}, tile {pipeline.tiling.tile or 'whole image'}, "
            f"batch {pipeline.batch}" + (", x8 ensemble" if pipeline.ensemble else "") + "[/dim]"
        )
        if picked.requested == "auto":  # what auto chose, then each path passed over: a line each
            for line in picked.describe_lines():
                console.print(f"[dim]{escape(line)}[/dim]")
        with _progress(console, quiet) as on_event:
            return run_job(config, runner, on_event, stop=stop)


def _upscale_on_cluster(
    config: Any, spec: Any, address: str, actors: int, retries: int, console: Any, quiet: bool, stop: Any
) -> Any:
    """``vdsr upscale --cluster``: the same job on a pool of Ray workers (vdsr_deploy.cluster)."""
    from vdsr_deploy.cluster import ClusterConfig, OpenRunner, run_cluster_job

    cluster = ClusterConfig(address=address, actors=actors, retries=retries)
    with _progress(console, quiet) as on_event:

        def on_cluster_event(event: dict[str, Any]) -> None:
            if event["event"] == "start":
                workers = counted(int(event["workers"]), "Ray worker")
                console.print(
                    f"[dim]runtime {escape(str(event['runner']))} on {workers} "
                    f"({escape(str(event['worker_resources']))}), "
                    f"tile {config.pipeline.tiling.tile or 'whole image'}[/dim]"
                )
            elif event["event"] == "retry":
                console.print(f"[yellow]retry[/yellow] {escape(str(event['file']))}: {escape(str(event['reason']))}")
            on_event(event)

        factory = OpenRunner(spec, config.pipeline.tiling, config.pipeline.batch)
        return run_cluster_job(config, cluster, factory, on_cluster_event, stop=stop, device=spec.device)


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
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]upscale"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("[dim]{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=False,
    )
    task = progress.add_task("upscale", total=None, rate="", detail="")
    started = False

    def on_event(event: dict[str, Any]) -> None:
        nonlocal started
        kind = event["event"]
        if kind == "start":
            started = True
            progress.update(task, total=event["total"])
        elif kind == "done":
            progress.update(task, advance=1, rate=f"{event['megapixels_per_second']:.3f} Mpx/s", detail="")
        elif kind == "band" and event["bands"] > 1:
            name = Path(event["file"]).name
            progress.update(task, detail=f"{escape(name)} band {event['band']}/{event['bands']}")
        elif kind == "failed":
            progress.console.print(f"[red]failed[/red] {escape(str(event['file']))}: {escape(str(event['reason']))}")
            if started:
                progress.update(task, advance=1)
        elif kind == "skipped":
            skipped = escape(str(event["target"] or event["file"]))
            progress.console.print(f"[yellow]skipped[/yellow] {skipped}: {escape(str(event['reason']))}")
        elif kind == "note":
            progress.console.print(f"[cyan]note[/cyan] {escape(str(event['file']))}: {escape(str(event['note']))}")

    with progress:
        yield on_event


def _render_summary(console: Any, summary: Any, output: Path) -> None:
    rate = summary.megapixels_out / summary.seconds if summary.seconds else 0.0
    console.print(
        f"{len(summary.done)} done, {len(summary.skipped)} skipped, {len(summary.failed)} failed"
        + (f", {len(summary.unfinished)} unfinished" if summary.unfinished else "")
        + f" — {summary.megapixels_out:.2f} Mpx in {summary.seconds:.1f} s ({rate:.3f} Mpx/s)"
        + (" — interrupted; run the same command again to resume" if summary.interrupted else "")
    )
    for failure in summary.failed:
        console.print(f"  [red]✗[/red] {escape(str(failure.source))}: {escape(failure.reason)}")
    # where the outputs are: one file by its name (also one skipped as complete), else the folder
    targets = [item.target for item in summary.done] + [s.target for s in summary.skipped if s.target is not None]
    if len(targets) == 1:
        console.print(f"output: {escape(str(targets[0]))}", soft_wrap=True)
    elif targets:
        console.print(f"outputs in: {escape(str(output))}", soft_wrap=True)
