"""``vdsr upscale``: a batch job on one runner here, or on a Ray cluster; progress and summary."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, check_halo, escape, make_console, runner_spec, user_errors
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


@app.command()
def upscale(
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or globs (paths or URIs: s3://...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (or file for one input); path or URI.")],
    scale: Annotated[float, typer.Option("--scale", "-s", help="Upscaling factor > 1 (2, 3, 4 or any).")] = 2.0,
    weights: WeightsOption = None,
    backend: BackendOption = "auto",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    provider: ProviderOption = "cpu",
    onnx: Annotated[Path | None, typer.Option("--onnx", help="Use this ONNX file (onnxruntime/tensorrt).")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="Use this TensorRT engine.")] = None,
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
    """
    from vdsr_deploy.backends.registry import choose_backend
    from vdsr_deploy.job import JobConfig, stop_on_signals
    from vdsr_deploy.job.autotile import resolve_tile
    from vdsr_deploy.job.remote import location
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig

    console = make_console()
    summary: Any = None
    with stop_on_signals() as stop, user_errors():
        load_threads, save_threads = _parse_jobs(jobs)
        _check_cluster_options(cluster, actors, retries)
        given = runner_spec(backend, device, precision, provider, weights, onnx, engine, engines_dir, threads)
        # on a cluster, each worker resolves --precision auto for its own hardware
        spec, picked = (given, None) if cluster is not None else _resolve_precision(given)
        chosen = resolve_tile(
            tile, tuple(inputs), output, spec, scale=scale, batch=batch, halo=halo, memory_mb=memory_mb,
            max_pixels=max_pixels,
        )  # fmt: skip
        check_halo(halo, chosen.tile, inexact_halo, weights, onnx, console)
        if chosen.reason:
            console.print(f"[dim]{chosen.reason}[/dim]")
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
            console.print(f"[dim]backend auto -> {choice.backend}: {choice.reason}[/dim]")
        try:
            if cluster is not None:
                summary = _upscale_on_cluster(config, spec, cluster, actors, retries, console, quiet, stop.event)
            else:
                summary = _upscale_here(config, spec, picked, console, quiet, stop.event)
        except KeyboardInterrupt:
            stop.event.set()
        if summary is None:
            console.print("stopped before any image was processed")
            raise typer.Exit(stop.exit_code)
        if report is not None:
            _write_report(report, summary, stop.exit_code if summary.interrupted else None)
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


def _upscale_here(config: Any, spec: Any, picked: Any, console: Any, quiet: bool, stop: Any) -> Any:
    """The job on one runner on this machine; its first line says which runtime, tile and batch."""
    from vdsr_deploy.job import run_job
    from vdsr_deploy.runtime.prepare import open_runner

    pipeline = config.pipeline
    with open_runner(spec, tiling=pipeline.tiling, batch=pipeline.batch) as runner:
        console.print(
            f"[dim]runtime {runner.info.label}, tile {pipeline.tiling.tile or 'whole image'}, batch {pipeline.batch}"
            + (f"; {picked.describe()}" if picked.requested == "auto" else "")
            + (", x8 ensemble" if pipeline.ensemble else "")
            + "[/dim]"
        )
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
                console.print(
                    f"[dim]runtime {event['runner']} on {event['workers']} Ray workers "
                    f"({event['worker_resources']}), tile {config.pipeline.tiling.tile or 'whole image'}[/dim]"
                )
            elif event["event"] == "retry":
                console.print(f"[yellow]retry[/yellow] {escape(str(event['file']))}: {escape(str(event['reason']))}")
            on_event(event)

        factory = OpenRunner(spec, config.pipeline.tiling, config.pipeline.batch)
        return run_cluster_job(config, cluster, factory, on_cluster_event, stop=stop, device=spec.device)


def _write_report(report: Path, summary: Any, exit_code: int | None) -> None:
    from vdsr_deploy.errors import VdsrError

    data = summary.to_dict()
    data["exit_code"] = exit_code if exit_code is not None else (1 if summary.failed else 0)
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    except OSError as error:
        raise VdsrError(f"{report}: cannot write the report ({error.strerror or error})") from error


def _check_cluster_options(cluster: str | None, actors: int, retries: int) -> None:
    """--actors and --retries: >= 0, and only with --cluster (alone they would do nothing)."""
    from vdsr_deploy.errors import ConfigError

    for option, value, default in (("--actors", actors, 0), ("--retries", retries, 2)):
        if value < 0:
            raise ConfigError(f"{option}: expected >= 0, got {value}")
        if cluster is None and value != default:
            raise ConfigError(f"{option}: applies with --cluster only")


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
            progress.update(task, detail=f"{name} band {event['band']}/{event['bands']}")
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
    written = [item.target for item in summary.done]
    if len(written) == 1:
        console.print(f"output: {written[0]}", soft_wrap=True)
    elif written or summary.skipped:
        console.print(f"outputs in: {output}", soft_wrap=True)
