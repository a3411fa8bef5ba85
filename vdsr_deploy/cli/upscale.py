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
from vdsr_deploy.planes.tiling import DEFAULT_HALO

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
    onnx: Annotated[
        Path | None, typer.Option("--onnx", help="Use this ONNX file (onnxruntime/openvino/tensorrt).")
    ] = None,
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
            "--tile",
            "-t",
            help="Tile side in pixels; 0 runs each image whole; auto: whole images when they fit the "
            "memory for activations (on the CPU a quarter of the memory available, at most 4 GiB), "
            "else the largest tile that does.",
        ),
    ] = "auto",
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
    codec: Annotated[
        str | None,
        typer.Option(
            "--codec", help="Video: the encoder (libx264, libx265, ffv1, libvpx-vp9, ...; default: the input's codec)."
        ),
    ] = None,
    crf: Annotated[
        int | None, typer.Option("--crf", help="Video: constant quality (x264 18, x265 20 by default).")
    ] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="Video: encoder preset (default medium).")] = None,
    encoder_option: Annotated[
        list[str] | None,
        typer.Option("--encoder-option", help="Video: KEY=VALUE passed to the encoder (repeatable)."),
    ] = None,
    frames: Annotated[
        str, typer.Option("--frames", help="Video: luma (the decoded Y plane to the network) or rgb (as images).")
    ] = "luma",
    segment_seconds: Annotated[
        float, typer.Option("--segment-seconds", help="Video: resume unit, cut at keyframes (0: one segment).")
    ] = 4.0,
) -> None:
    """Upscale images (RGB via YCbCr, gray, alpha, 16-bit) or a video with exact tiling on any runtime.

    A video input (.mkv, .mp4, .mov, .webm, ...) gives a video output with every other stream
    copied (needs the video extra; docs/video.md). Re-running the same command resumes:
    complete outputs (checked against the manifest in the output folder) are skipped, the
    rest redone. Ctrl-C / SIGTERM stop cleanly (exit 130 / 143) without leaving partial files.

    The defaults are for speed (--backend auto, --precision auto, --tile auto): the first
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
        _check_cluster_options(cluster, actors, retries)
        if report is not None:
            check_report_path(report)  # before any work: a report never replaces a user's file
        video, video_target = _video_input(inputs, output)
        if video is None:
            _refuse_video_options(codec, crf, preset, encoder_option, frames, segment_seconds)
        if video is not None and (report is not None or fmt is not None):
            from vdsr_deploy.errors import ConfigError

            raise ConfigError(f"{'--report' if report is not None else '--format'}: not available for a video")
        given = runner_spec(
            backend, device, precision, provider, weights, onnx, engine, engines_dir, threads, foreign_model
        )
        # on a cluster, each worker resolves --precision auto for its own hardware
        spec, picked = (given, None) if cluster is not None else _resolve_precision(given)
        if picked is not None and picked.warning:  # before anything slow starts
            console.print(f"[yellow]warning:[/yellow] {escape(picked.warning)}")
        chosen = resolve_tile(
            tile, tuple(inputs), output, spec, scale=scale, batch=batch, halo=halo, max_pixels=max_pixels
        )
        check_halo(halo, chosen.tile, inexact_halo, weights, onnx, console)
        if chosen.reason:
            console.print(f"[dim]{escape(chosen.reason)}[/dim]")
        tiling = TileConfig(tile=chosen.tile, halo=halo)
        if video is not None:
            from vdsr_deploy.job.video import VideoJobConfig

            video_config = VideoJobConfig(
                source=video,
                target=video_target,
                pipeline=PipelineConfig(scale=scale, tiling=tiling, batch=batch, ensemble=ensemble),
                codec=codec,
                crf=crf,
                preset=preset,
                encoder_options=_parse_encoder_options(encoder_option or []),
                frames=frames,
                segment_seconds=segment_seconds,
                overwrite=overwrite,
                model=given.model_identity(),
            )
            from vdsr_deploy.job.video import plan_video_job

            video_plan = plan_video_job(video_config)  # every check before the runner opens
            if cluster is not None:
                video_summary = _upscale_video_on_cluster(
                    video_config, video_plan, spec, cluster, actors, retries, console, quiet, stop.event
                )
            else:
                video_summary = _upscale_video(video_config, video_plan, spec, picked, console, quiet, stop.event)
            _render_video_summary(console, video_summary)
            if video_summary.interrupted:
                raise typer.Exit(stop.exit_code)
            return
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
                summary = _upscale_here(config, spec, picked, console, quiet, stop.event, chosen)
        except KeyboardInterrupt:
            stop.event.set()
        if summary is None:
            console.print("stopped before any image was processed")
            raise typer.Exit(stop.exit_code)
        if report is not None:
            tiling_record = {"tile": chosen.tile, "halo": halo, "halo_overhead": chosen.halo_overhead}
            write_report(report, summary, stop.exit_code if summary.interrupted else None, tiling=tiling_record)
    _render_summary(console, summary, output)
    if summary.interrupted:
        raise typer.Exit(stop.exit_code)
    if summary.failed:
        raise typer.Exit(1)


def _video_input(inputs: list[str], output: Path) -> tuple[Path | None, Path]:
    """The video to upscale and its output file, when the inputs name one (one video per
    run; an output that is not a video name is a folder: the video keeps its name in it),
    else ``(None, output)``."""
    from vdsr_deploy.errors import ConfigError
    from vdsr_deploy.videoio import is_video_path

    videos = [name for name in inputs if is_video_path(name)]
    if not videos:
        if is_video_path(output):
            raise ConfigError(f"{output}: a video output needs a video input, got {', '.join(inputs)}")
        return None, output
    if len(inputs) != 1:
        raise ConfigError(f"expected one video per run, got {len(inputs)} inputs ({', '.join(inputs)})")
    video = Path(videos[0])
    if is_video_path(output):
        return video, output
    if output.suffix and not output.is_dir():
        raise ConfigError(
            f"{output}: expected a video output (.mkv, .mp4, .mov, .webm, ...) or a folder for the video {video}"
        )
    return video, output / video.name


def _parse_encoder_options(options: list[str]) -> tuple[tuple[str, str], ...]:
    from vdsr_deploy.errors import ConfigError

    parsed = []
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ConfigError(f"--encoder-option: expected KEY=VALUE, got {option!r}")
        parsed.append((key, value))
    return tuple(parsed)


def _upscale_video(
    config: Any, plan: Any, spec: Any, picked: Any, console: Any, quiet: bool, stop: Any
) -> Any:
    """One video on one runner on this machine, with a progress bar in frames, fps and ETA."""
    from vdsr_deploy.job.video import run_video_job
    from vdsr_deploy.runtime.prepare import open_runner

    pipeline = config.pipeline
    with open_runner(spec, tiling=pipeline.tiling, batch=pipeline.batch) as runner:
        chosen = f"; {picked.describe()}" if picked.requested == "auto" else ""
        with _video_progress(console, quiet, f"runtime {runner.info.label}", config, chosen) as on_event:
            return run_video_job(config, runner, on_event, stop=stop, plan=plan)


def _upscale_video_on_cluster(
    config: Any, plan: Any, spec: Any, address: str, actors: int, retries: int, console: Any, quiet: bool, stop: Any
) -> Any:
    """One video with its keyframe segments as Ray work items (vdsr_deploy.cluster.video)."""
    from vdsr_deploy.cluster import ClusterConfig, OpenRunner
    from vdsr_deploy.cluster.video import run_cluster_video_job

    cluster = ClusterConfig(address=address, actors=actors, retries=retries)
    factory = OpenRunner(spec, config.pipeline.tiling, config.pipeline.batch)
    with _video_progress(console, quiet, f"Ray cluster {address}", config, "") as on_event:
        return run_cluster_video_job(config, cluster, factory, on_event, stop=stop, device=spec.device, plan=plan)


@contextmanager
def _video_progress(
    console: Any, quiet: bool, where: str, config: Any, chosen: str
) -> Iterator[Callable[[dict[str, Any]], None]]:
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    pipeline = config.pipeline
    progress = Progress(
        TextColumn("[bold]upscale"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("frames {task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet,
    )
    task = progress.add_task("upscale", total=None, rate="")
    began = [0.0]

    def on_event(event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "start":
            console.print(
                f"[dim]{escape(where)}, tile {pipeline.tiling.tile or 'whole frame'}, batch {pipeline.batch}, "
                f"frames via {event['frames_path']}, encoder {escape(event['encode'])}; "
                f"{event['segments']} segments, {event['reused']} done before{chosen}[/dim]"
            )
            progress.update(task, total=event["total"])
            began[0] = time.perf_counter()
        elif kind == "frame":
            progress.advance(task)
            elapsed = time.perf_counter() - began[0]
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / elapsed:.2f} fps" if elapsed > 0 else "")
        elif kind == "corrupt":
            when = f"{event['seconds']:.3f} s" if event["seconds"] >= 0 else "unknown time"
            progress.console.print(f"[yellow]corrupt packet[/yellow] at {when}: {escape(event['reason'])}")
        elif kind == "skipped":
            progress.console.print(f"[yellow]skipped[/yellow] {escape(event['target'])}: {escape(event['reason'])}")
        elif kind == "note":
            progress.console.print(f"[cyan]note[/cyan] {escape(event['file'])}: {escape(event['note'])}")

    with progress:
        yield on_event


def _render_video_summary(console: Any, summary: Any) -> None:
    if summary.skipped:
        return
    corrupt = summary.corrupt
    console.print(
        f"{summary.upscaled} frames upscaled in {summary.seconds:.1f} s ({summary.frames_per_second:.2f} fps), "
        f"{summary.reused} of {summary.segments} segments done before"
        + (f"; {len(corrupt)} corrupt packets skipped" if corrupt else "")
        + (" — interrupted; run the same command again to resume" if summary.interrupted else "")
    )
    for packet in corrupt[:10]:
        when = f"{packet.seconds:.3f} s" if packet.seconds >= 0 else "unknown time"
        console.print(f"  [yellow]corrupt packet[/yellow] at {when}: {escape(packet.reason)}")
    if not summary.interrupted:
        console.print(f"output: {summary.target} ({summary.written} frames, {summary.encode})", soft_wrap=True)


def _resolve_precision(spec: Any) -> tuple[Any, Any]:
    """``spec`` with ``--precision auto`` resolved, and the choice (said on the first line)."""
    from vdsr_deploy.runtime.prepare import resolve_precision

    return resolve_precision(spec)


def _upscale_here(config: Any, spec: Any, picked: Any, console: Any, quiet: bool, stop: Any, chosen: Any) -> Any:
    """The job on one runner on this machine; its first line says which runtime, tile (with
    its halo overhead) and batch. ``chosen``: the :class:`~vdsr_deploy.job.autotile.AutoTile`
    (its ``max_side``: the largest image side an engine for whole images must take)."""
    from vdsr_deploy.job import run_job
    from vdsr_deploy.runtime.prepare import open_runner

    pipeline = config.pipeline
    with open_runner(spec, tiling=pipeline.tiling, batch=pipeline.batch, max_side=chosen.max_side) as runner:
        console.print(
            f"[dim]runtime {escape(runner.info.label)}, {chosen.describe()}, "
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


def _refuse_video_options(
    codec: str | None,
    crf: int | None,
    preset: str | None,
    encoder_option: list[str] | None,
    frames: str,
    segment_seconds: float,
) -> None:
    """The video options, given for images: refused (alone they would do nothing)."""
    from vdsr_deploy.errors import ConfigError

    given = {
        "--codec": codec is not None,
        "--crf": crf is not None,
        "--preset": preset is not None,
        "--encoder-option": bool(encoder_option),
        "--frames": frames != "luma",
        "--segment-seconds": segment_seconds != 4.0,
    }
    for option, is_given in given.items():
        if is_given:
            raise ConfigError(f"{option}: applies to a video input only (.mkv, .mp4, .mov, .webm, ...)")


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
