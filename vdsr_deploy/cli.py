"""The ``vdsr`` command line: parse, build a config, call one library function, render.

Every :class:`~vdsr_deploy.errors.VdsrError` becomes one sentence on stderr and exit code
1; heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import inspect
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.core

if TYPE_CHECKING:
    from train.config import TrainConfig

_Function = TypeVar("_Function", bound=Callable[..., Any])
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


class _Command(typer.core.TyperCommand):
    """Help as a user reads it: flags show no ``<bool>`` (they take no value), docstring
    paragraphs flow to the terminal's width instead of breaking where the source line ended,
    and ``{recipes}`` in an option's help lists the built-in training recipes. A flag given a
    value (``--overwrite true``) is an error, not an input file named ``true``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = reflow_help(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            if param.is_flag and param.metavar is None:
                param.metavar = ""
            if param.help and "{recipes}" in param.help:
                from train.config import builtin_recipes

                param.help = param.help.replace("{recipes}", ", ".join(builtin_recipes()))
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        flags = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, typer.core.TyperOption) and param.is_flag
            for name in (*param.opts, *param.secondary_opts)
        }
        for flag, value in itertools.pairwise(args):
            if flag in flags and value.lower() in BOOLEAN_WORDS and not Path(value).exists():
                _fail(f"{flag} takes no value: write {flag} alone (or leave it out), not '{flag} {value}'")
        return super().parse_args(ctx, args)


def reflow_help(text: str) -> str:
    """Docstring -> help: each paragraph on one line (the terminal wraps it), paragraphs kept."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


class _Typer(typer.Typer):
    """Every command uses :class:`_Command` (also those other modules add)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[_Function], _Function]:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
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
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        "-p",
        help="auto | fp32 | fp16 | bf16 | int8 (auto: fp16 on CUDA; on CPU the fastest path "
        "costing <= 0.05 dB PSNR; fp32: the reference).",
    ),
]
ProviderOption = Annotated[
    str, typer.Option("--provider", help="ONNX Runtime execution provider: cpu | cuda | tensorrt")
]
TileOption = Annotated[int, typer.Option("--tile", "-t", help="Tile side in pixels; 0 runs each image whole.")]
HaloOption = Annotated[
    int,
    typer.Option(
        "--halo",
        help="Context around each tile: at least the receptive radius (20 for the shipped weights) for exact results.",
    ),
]
InexactHaloOption = Annotated[
    bool,
    typer.Option(
        "--inexact-halo",
        help="Accept a --halo below the network's receptive radius (tiles then differ from whole-image results).",
    ),
]
BatchOption = Annotated[int, typer.Option("--batch", help="Tiles per runner call.")]
ThreadsOption = Annotated[int, typer.Option("--threads", help="CPU threads for the runtime (0 = all cores).")]
EnginesOption = Annotated[
    Path | None, typer.Option("--engines-dir", help="Where ONNX exports and engines are cached (default ./engines).")
]
EnsembleOption = Annotated[
    bool,
    typer.Option(
        "--ensemble",
        help="x8 self-ensemble: run the 4 rotations and their mirror images, map back and average "
        "(exact with tiling; 8x the compute; its measured PSNR gain is in the README).",
    ),
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


def escape(text: str) -> str:
    """``text`` safe inside rich markup: file names and messages may hold ``[...]`` (e.g. a
    pip extra), which rich would otherwise take for a style tag and drop."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _check_halo(
    halo: int, tile: int, inexact: bool, weights: Path | None, onnx: Path | None, console: Any
) -> None:
    """Refuse a halo below the model's receptive radius (its depth in pixels) unless
    ``--inexact-halo`` accepts it, then warn. Unreadable files are left to the runner to report."""
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.weights import read_depth

    if tile == 0:
        return
    try:
        if onnx is not None and weights is None:
            from vdsr_deploy.artifacts import MetadataKey, onnx_metadata

            radius = int(onnx_metadata(onnx).get(MetadataKey.DEPTH, "20"))
        else:
            radius = read_depth(weights)
    except (VdsrError, ValueError):
        return
    if halo >= radius:
        return
    problem = (
        f"--halo {halo} is below the network's receptive radius ({radius} px): tiles would not "
        "match whole-image inference (visible seams)"
    )
    if not inexact:
        _fail(f"{problem}; use --halo {radius} or more, or pass --inexact-halo to accept that")
    console.print(f"[yellow]warning:[/yellow] {escape(problem)}")


def _runner_spec(
    backend: str,
    device: str,
    precision: str,
    provider: str,
    weights: Path | None,
    onnx: Path | None,
    engine: Path | None,
    engines_dir: Path | None,
    threads: int,
) -> Any:
    from vdsr_deploy.backends.factory import RunnerSpec

    return RunnerSpec(
        backend=backend,
        device=device,
        precision=precision,
        provider=provider,
        weights=weights,
        onnx=onnx,
        engine=engine,
        engines_dir=engines_dir,
        threads=threads,
    )


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
    ] = "256",
    halo: HaloOption = 20,
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
    from vdsr_deploy.backends.factory import choose_backend, open_runner
    from vdsr_deploy.job import JobConfig, run_job, stop_on_signals
    from vdsr_deploy.pipeline import PipelineConfig
    from vdsr_deploy.remote import location
    from vdsr_deploy.tiling import TileConfig

    console = _console()
    summary: Any = None
    with stop_on_signals() as stop, _user_errors():
        load_threads, save_threads = _parse_jobs(jobs)
        spec = _runner_spec(backend, device, precision, provider, weights, onnx, engine, engines_dir, threads)
        spec, picked = _resolve_precision(spec)
        chosen = _upscale_tile(tile, tuple(inputs), output, scale, halo, batch, spec, memory_mb, max_pixels)
        _check_halo(halo, chosen.tile, inexact_halo, weights, onnx, console)
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
            model=_model_identity(weights, onnx, engine),
        )
        if spec.backend == "auto" and cluster is None:  # on a cluster, the workers' nodes decide
            choice = choose_backend(spec)
            console.print(f"[dim]backend auto -> {choice.backend}: {choice.reason}[/dim]")
        try:
            if cluster is not None:
                summary = _upscale_on_cluster(config, spec, cluster, actors, retries, console, quiet, stop.event)
            else:
                with open_runner(spec, tiling=tiling, batch=batch) as runner:
                    console.print(
                        f"[dim]runtime {runner.info.label}, tile {tiling.tile or 'whole image'}, batch {batch}"
                        + (f"; {picked.describe()}" if picked.requested == "auto" else "")
                        + (", x8 ensemble" if ensemble else "")
                        + "[/dim]"
                    )
                    with _progress(console, quiet) as on_event:
                        summary = run_job(config, runner, on_event, stop=stop.event)
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
    from vdsr_deploy.backends.factory import default_engines_dir
    from vdsr_deploy.fastpath import resolve_spec

    return resolve_spec(spec, spec.engines_dir or default_engines_dir())


def _upscale_on_cluster(
    config: Any, spec: Any, address: str, actors: int, retries: int, console: Any, quiet: bool, stop: Any
) -> Any:
    """``vdsr upscale --cluster``: the same job on a pool of Ray workers (vdsr_deploy.cluster)."""
    from dataclasses import replace

    from vdsr_deploy.cluster import ClusterConfig, OpenRunner, run_cluster_job

    cluster = ClusterConfig(address=address, actors=actors, retries=retries)
    # Workers may start elsewhere: give them absolute paths.
    spec = replace(
        spec,
        **{k: Path(v).absolute() for k in ("weights", "onnx", "engine", "engines_dir") if (v := getattr(spec, k))},
    )
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


def _upscale_tile(
    tile: str,
    inputs: tuple[str, ...],
    output: Path,
    scale: float,
    halo: int,
    batch: int,
    spec: Any,
    memory_mb: int,
    max_pixels: int,
) -> Any:
    from vdsr_deploy.autotile import AutoTile, parse_tile, resolve_tile
    from vdsr_deploy.backends.factory import choose_backend

    if parse_tile(tile) is not None:
        return AutoTile(int(tile), "")
    from vdsr_deploy.weights import load_weights

    _, info = load_weights(spec.weights)
    return resolve_tile(
        tile,
        inputs,
        output,
        scale=scale,
        batch=batch,
        halo=halo,
        backend=choose_backend(spec).backend,
        device=spec.device,
        provider=spec.provider,
        precision=spec.precision,
        channels=info.channels,
        memory_mb=memory_mb,
        max_pixels=max_pixels,
    )


def _model_identity(weights: Path | None, onnx: Path | None, engine: Path | None) -> str:
    """Which model made an output (for resume): each artifact's name, size and mtime."""
    from vdsr_deploy.weights import default_weights_path

    parts = []
    for path in (weights or default_weights_path(), onnx, engine):
        if path is None:
            continue
        try:
            stat = Path(path).stat()
            parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            parts.append(f"{Path(path).name}:missing")
    return "|".join(parts)


def _write_report(report: Path, summary: Any, exit_code: int | None) -> None:
    from vdsr_deploy.errors import VdsrError

    data = summary.to_dict()
    data["exit_code"] = exit_code if exit_code is not None else (1 if summary.failed else 0)
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    except OSError as error:
        raise VdsrError(f"{report}: cannot write the report ({error.strerror or error})") from error


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


@app.command()
def export(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Folder for the ONNX files.")] = Path(
        "engines"
    ),
    weights: WeightsOption = None,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            "-p",
            help="fp32, fp16 and/or int8 (repeatable; default fp32 and fp16). int8: the static "
            "INT8 QDQ model for ONNX Runtime, calibrated on the shipped tiles (cached).",
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="With -p int8: calibrate on the images in this folder (96x96 tiles; the last images' "
            "tiles are held out to measure the cost) instead of the shipped procedural tiles. Run the "
            "result with upscale -b onnxruntime -p int8 --onnx FILE.",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing files.")] = False,
    triton: Annotated[
        Path | None,
        typer.Option("--triton", help="Write a Triton model repository here instead (needs [triton])."),
    ] = None,
    tile: TileOption = 256,
    halo: HaloOption = 20,
    batch: Annotated[int, typer.Option("--batch", help="With --triton: max_batch_size (tiles per request).")] = 4,
    engine: Annotated[
        Path | None, typer.Option("--engine", help="With --triton: this FP16 TensorRT engine (and its .json).")
    ] = None,
    engines_dir: EnginesOption = None,
) -> None:
    """Export dynamic-shape ONNX (FP32, and FP16 for TensorRT), verified against PyTorch.

    With --triton DIR: a Triton Inference Server model repository (ONNX Runtime model, and the
    FP16 TensorRT plan where TensorRT and a GPU are usable), every config.pbtxt validated.
    """
    from vdsr_deploy.artifacts import default_onnx_name
    from vdsr_deploy.errors import ConfigError
    from vdsr_deploy.export import export_onnx
    from vdsr_deploy.precision import check_precision
    from vdsr_deploy.weights import load_weights

    console = _console()
    if triton is not None:
        _export_triton(console, triton, weights, tile, halo, batch, engine, engines_dir, overwrite)
        return
    with _user_errors():
        wanted = precision or ["fp32", "fp16"]
        for p in wanted:
            check_precision(p, ("fp32", "fp16", "int8"))
        if calibration is not None and "int8" not in wanted:
            raise ConfigError("--calibration: applies to -p int8 only")
        model, info = load_weights(weights)
        for p in wanted:
            if p == "int8":
                _export_int8(console, weights, output_dir, overwrite, calibration)
                continue
            result = export_onnx(
                model, output_dir / default_onnx_name(info.sha256, p), precision=p, info=info, overwrite=overwrite
            )
            console.print(
                f"{result.path}  ({p}; ORT vs PyTorch max |diff| {result.max_abs_diff:.2e} on shapes "
                f"{', '.join('x'.join(map(str, s)) for s in result.shapes_checked)})"
            )


def _export_int8(
    console: Any, weights: Path | None, output_dir: Path, overwrite: bool, calibration_dir: Path | None
) -> None:
    from vdsr_deploy.backends.factory import RunnerSpec
    from vdsr_deploy.fastpath import int8_artifact
    from vdsr_deploy.int8 import int8_path
    from vdsr_deploy.quality import calibration_set_from_images, load_calibration_set

    spec = RunnerSpec(backend="onnxruntime", precision="int8", weights=weights, engines_dir=output_dir)
    calibration = load_calibration_set() if calibration_dir is None else calibration_set_from_images(calibration_dir)
    if overwrite:
        from vdsr_deploy.int8 import DEFAULT_RECIPE, int8_key
        from vdsr_deploy.weights import weights_file_sha256

        key = int8_key(weights_file_sha256(weights), DEFAULT_RECIPE, calibration.sha256)
        int8_path(output_dir, key).unlink(missing_ok=True)
    artifact = int8_artifact(spec, output_dir, calibration)
    cost = ", ".join(f"{scale} {value:+.3f}" for scale, value in sorted(artifact.cost_db.items()))
    console.print(
        f"{artifact.path}  (int8 QDQ, {'built' if artifact.built else 'cached, key matches'}; "
        f"calibration {calibration.origin}: {calibration.calibration} tiles, {len(calibration.held_out)} held out; "
        f"task PSNR vs ONNX Runtime fp32 on the held-out tiles: {cost} dB)"
    )


def _export_triton(
    console: Any,
    directory: Path,
    weights: Path | None,
    tile: int,
    halo: int,
    batch: int,
    engine: Path | None,
    engines_dir: Path | None,
    overwrite: bool,
) -> None:
    from vdsr_deploy.backends.factory import default_engines_dir
    from vdsr_deploy.tiling import TileConfig
    from vdsr_deploy.triton import export_triton

    with _user_errors():
        result = export_triton(
            directory,
            weights=weights,
            tiling=TileConfig(tile=tile, halo=halo),
            batch=batch,
            engines_dir=engines_dir or default_engines_dir(),
            engine=engine,
            overwrite=overwrite,
        )
    for config in result.configs:
        console.print(f"{config}  (validated with Triton's model_config schema)")
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {note}")
    console.print(f"serve: tritonserver --model-repository {directory.absolute()}  (see README: Triton)")


@app.command()
def build(
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="Build from this ONNX (default: the weights' ONNX, exported)."),
    ] = None,
    weights: WeightsOption = None,
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp16 | fp32 (TF32 off, for parity).")] = "fp16",
    engines_dir: EnginesOption = None,
    tile: TileOption = 256,
    halo: HaloOption = 20,
    batch: BatchOption = 4,
    max_side: Annotated[int | None, typer.Option("--max-side", help="Largest image side when --tile 0.")] = None,
    contexts: Annotated[int, typer.Option("--contexts", help="Execution contexts in flight (one profile each).")] = 2,
    workspace: Annotated[int, typer.Option("--workspace", help="Builder workspace limit in MiB.")] = 1024,
    opt_level: Annotated[int, typer.Option("--opt-level", help="TensorRT builder optimization level 0..5.")] = 3,
    gpu: Annotated[int, typer.Option("--gpu", "-g", help="CUDA device index.")] = 0,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build even when a matching engine is cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build (or find) the TensorRT engine for a tile size and batch: engine + JSON sidecar."""
    from vdsr_deploy.backends.factory import default_engines_dir
    from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
    from vdsr_deploy.backends.tensorrt.builder import ensure_engine
    from vdsr_deploy.tiling import TileConfig

    with _user_errors():
        config = EngineBuildConfig.for_tiles(
            TileConfig(tile=tile, halo=halo),
            batch,
            max_side=max_side,
            precision=precision,
            contexts=contexts,
            workspace_bytes=workspace << 20,
            optimization_level=opt_level,
        )
        record = ensure_engine(
            config,
            engines_dir or default_engines_dir(),
            onnx_path=onnx,
            weights=weights,
            device=gpu,
            rebuild=rebuild,
        )
    described = record.describe()
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    console = _console()
    state = f"built in {described['build_seconds']:.1f} s" if record.built else "cached, matches this GPU and TensorRT"
    console.print(f"{described['engine']}  ({state})")
    for reason in described["replaced_because"]:
        console.print(f"  [yellow]rebuilt[/yellow]: the cached engine was {reason}")
    console.print(
        f"  {described['precision']}, {described['profiles']}, {described['gpu']}, "
        f"TensorRT {described['tensorrt']}, "
        f"{described['fp16_layers']} of {described['layers']} layers FP16"
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
    ensemble: EnsembleOption = False,
) -> None:
    """PSNR/SSIM on Y (modcrop, MATLAB bicubic, shave = scale) against bicubic."""
    from vdsr_deploy.evaluate import evaluate_folders, render_markdown

    with _user_errors():
        spec = _runner_spec(backend, device, precision, provider, weights, None, None, engines_dir, threads)
        reports = evaluate_folders(folders, scales, spec, tile=tile, ensemble=ensemble)
    console = _console()
    from rich.table import Table

    for report in reports:
        table = Table(title=f"{report.dataset} — {report.method}")
        for column in ("scale", "images", "bicubic PSNR", "bicubic SSIM", "PSNR", "SSIM", "paper bic/VDSR"):
            table.add_column(column, justify="right")
        from vdsr_deploy.evaluate import PAPER_PSNR

        for s in report.summaries:
            paper = PAPER_PSNR.get(report.dataset.lower(), {}).get(s.scale)
            table.add_row(
                f"x{s.scale}",
                str(s.images),
                f"{s.bicubic_psnr:.2f}",
                f"{s.bicubic_ssim:.4f}",
                f"{s.psnr:.2f}",
                f"{s.ssim:.4f}",
                f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-",
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
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="Recipe: a built-in name ({recipes}) or a TOML file. Default: fast."
        ),
    ] = None,
    data: Annotated[list[Path] | None, typer.Option("--data", help="HR training image folders (repeatable).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Validation folder (e.g. Set5).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, weights.")] = Path(
        "runs/vdsr"
    ),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in OUT (last.safetensors) with its recipe, iterations and folders.",
        ),
    ] = False,
    init_weights: Annotated[
        Path | None,
        typer.Option("--init-weights", help="Start from these weights (fine-tune; new optimizer state)."),
    ] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Override the recipe's iterations.")] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Seconds to train for: measure the step time here and set the iterations to fit.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes cutting batches ahead of the model (0: inline).")
    ] = 0,
    device: DeviceOption = "auto",
) -> None:
    """Train VDSR (paper recipe or a faster one) with checkpoints, resume and validation.

    Every file a run writes (last, best and final .safetensors) works as --weights for the
    other commands. --resume continues a stopped run exactly: its recipe, iterations and data
    folders come from the checkpoint, so --config and --data are not needed again (given and
    different, they are refused).
    """
    from train.config import load_config
    from train.loop import train as run_training
    from train.settings import resumed_config

    if not data and not resume:
        _fail("give at least one --data folder of HR training images (e.g. ../shared/data/train/t91)")
    console = _console()
    with _user_errors():
        if time_budget is not None and (iterations is not None or resume):
            _fail("--time-budget sets the iterations of a new run: drop --iterations/--resume")
        recipe: TrainConfig | None = None
        if config is not None or not resume:
            recipe = load_config(config or "fast")
        if time_budget is not None and recipe is not None:
            recipe = _fit_to_budget(recipe, time_budget, device, console)
        if iterations is not None:
            recipe = recipe.replace(iterations=iterations) if recipe else resumed_config(out, iterations=iterations)
        with _train_progress(console) as on_event:
            result = run_training(
                recipe,
                data_dirs=data,
                out_dir=out,
                val_dir=val,
                resume=resume,
                init_weights=init_weights,
                device=device,
                data_workers=workers,
                on_event=on_event,
            )
    _render_training(console, result)
    if result.interrupted:
        raise typer.Exit(130)


@contextmanager
def _train_progress(console: Any) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Training events -> a bar on a terminal, one line per logged step otherwise (a pipe or a
    log file gets progress too); data preparation is its own phase, before the bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    interactive = bool(console.is_terminal)
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not interactive,
    )
    task = progress.add_task("train", total=None, status="", start=False)
    total = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal total
        kind = event["event"]
        if kind == "warning":
            console.print(f"[yellow]warning:[/yellow] {event['message']}")
        elif kind == "preparing":
            scales = ", ".join(f"x{s}" for s in event["scales"])
            images = f"{event['images']} image{'s' if event['images'] != 1 else ''}"
            console.print(f"preparing data: {images} at {scales}...")
        elif kind == "prepared":
            validation = f", {event['validation_images']} validation items" if event["validation_images"] else ""
            console.print(f"prepared {event['pairs']} training pairs{validation} in {event['seconds']:.1f} s")
        elif kind == "start":
            total = event["iterations"]
            verb = "resuming at" if event["resumed"] else "training from"
            console.print(f"{verb} iteration {event['step']} of {total}")
            progress.update(task, total=total, completed=event["step"])
            progress.start_task(task)
            progress.start()
        elif kind == "train":
            status = f"loss {event['loss']:.5f} lr {event['lr']:.2e} {1 / event['seconds_per_iter']:.2f} it/s"
            progress.update(task, completed=event["step"], status=status)
            if not interactive:
                console.print(f"step {event['step']}/{total} {status}")
        elif kind == "validate":
            scores = " ".join(f"{key} {value:.2f}" for key, value in event.items() if _is_scale_key(key))
            progress.console.print(f"step {event['step']}: validation PSNR {scores}")

    try:
        yield on_event
    finally:
        progress.stop()


def _is_scale_key(key: str) -> bool:
    return key.startswith("x") and key[1:].isdigit()


def _render_training(console: Any, result: Any) -> None:
    """How the run ended, as a short table: iterations, time, best PSNR and its weights."""
    from rich.table import Table

    state = "stopped early" if result.interrupted else "finished"
    table = Table(title=f"training {state}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("iterations", f"{result.iterations_done:,} of {result.iterations:,}")
    seconds = result.wall_seconds
    table.add_row("wall time", f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min")
    best = result.best_psnr
    if best:
        scores = ", ".join(f"{key} {value:.2f} dB" for key, value in best.items() if _is_scale_key(key))
        table.add_row("best validation PSNR", f"{scores} (iteration {int(best['step']):,})")
    else:
        table.add_row("best validation PSNR", "- (no --val folder, or no validation yet)")
    if result.final_weights is not None:
        table.add_row("weights", str(result.final_weights))
    if result.best_weights is not None:
        table.add_row("best weights", str(result.best_weights))
    table.add_row("checkpoint", f"{result.checkpoint} (also loads as --weights)")
    console.print(table)
    weights = result.weights
    if result.interrupted:
        console.print(f"continue with: vdsr train --resume --out {result.out_dir}", soft_wrap=True)
    if weights is not None:
        console.print(f"upscale with: vdsr upscale --weights {weights} IMAGES -o OUT", soft_wrap=True)


def _fit_to_budget(recipe: TrainConfig, seconds: float, device: str, console: Any) -> TrainConfig:
    """``recipe`` with as many iterations as fit in ``seconds`` at the step time measured here."""
    from train.budget import iterations_for_budget, measure_step_times
    from vdsr_deploy.backends.device import resolve_device

    torch_device = resolve_device(device)
    times = measure_step_times(recipe, torch_device)
    fitted = iterations_for_budget(recipe, seconds, times)
    precision = f"{times.mixed * 1e3:.1f} ms bf16, " if recipe.precision == "bf16" else ""
    console.print(
        f"time budget {seconds:g} s on {torch_device}: {precision}{times.fp32 * 1e3:.1f} ms fp32 "
        f"per step of {recipe.batch_size} -> {fitted:,} iterations"
    )
    return recipe.replace(iterations=fitted)


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
            "onnxruntime-int8, "
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
    tile: TileOption = 256,
    halo: HaloOption = 20,
    batch: BatchOption = 2,
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
    from vdsr_deploy.parity import (
        DEFAULT_CANDIDATES,
        ValidateConfig,
        edge_case_images,
        folder_images,
        hr_images,
        sample_image,
    )
    from vdsr_deploy.parity import (
        validate as run,
    )
    from vdsr_deploy.tiling import TileConfig

    console = _console()
    with _user_errors():
        _check_halo(halo, tile, inexact_halo, weights, None, console)
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
        images = folder_images(folder) if folder is not None else []
        if hr is not None:
            images += hr_images(hr, scale)
        if folder is None and hr is None:
            images.append(sample_image())
        if edge_cases:
            images += edge_case_images()

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "reference":
                console.print(f"[dim]reference PyTorch FP32 on {event['images']} image(s)...[/dim]")
            elif event["event"] == "pair-done":
                console.print(f"[dim]  {event['name']}: {event['status']}[/dim]")

        report = run(config, images, on_event=on_event)
    _render_validation(console, report)
    if out is not None:
        from vdsr_deploy.parity_report import render_markdown, write_heatmap

        with _user_errors():
            out.mkdir(parents=True, exist_ok=True)
            (out / "validate.json").write_text(report.to_json())
            (out / "validate.md").write_text(render_markdown(report))
            heatmap = write_heatmap(report, out / "validate-heatmap.png")
        console.print(f"reports written to {out}" + ("" if heatmap else " (no heatmap: no pair ran)"))
    if not report.passed:
        raise typer.Exit(1)


def _render_validation(console: Any, report: Any) -> None:
    from rich import box
    from rich.table import Table

    from vdsr_deploy.environment import describe_weights
    from vdsr_deploy.parity_report import TERMINAL_COLUMNS, TERMINAL_LEGEND, terminal_row

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
        cells = list(terminal_row(pair))
        cells[1] = f"[{colours.get(pair.status, 'white')}]{cells[1]}[/]"
        table.add_row(*cells)
    console.print(f"weights {describe_weights(report.weights)}")
    console.print(table)
    console.print(f"[dim]{TERMINAL_LEGEND}[/dim]")
    for pair in report.pairs:
        if pair.figures is None and pair.reasons:
            console.print(f"[yellow]{pair.status}[/yellow] {pair.name}: {escape('; '.join(pair.reasons))}")
    for pair in report.pairs:
        for note in pair.notes:
            console.print(f"[dim]note ({pair.name}): {escape(note)}[/dim]")
    for check in report.artifacts:
        mark = "[green]ok[/green]" if check.passed else "[red]MISMATCH[/red]"
        console.print(f"artifact {escape(str(check.artifact))}: {mark} — {escape(check.detail)}")
    if report.passed:
        console.print("[bold green]PASSED[/bold green]")
    else:
        console.print("[bold red]FAILED[/bold red]")
        for line in report.failures:
            console.print(f"  [red]✗[/red] {escape(line)}")


@app.command()
def bench(
    backends: Annotated[
        list[str] | None,
        typer.Option("--backend", "-b", help="torch | onnxruntime | tensorrt (repeatable)."),
    ] = None,
    precisions: Annotated[
        list[str] | None,
        typer.Option("--precision", "-p", help="fp32 | fp16 | bf16 | int8 (repeatable; default fp32)."),
    ] = None,
    tiles: Annotated[
        list[int] | None,
        typer.Option("--tile", "-t", help="Tile side (repeatable; 0 = whole image)."),
    ] = None,
    batches: Annotated[list[int] | None, typer.Option("--batch", help="Tiles per runner call (repeatable).")] = None,
    halo: HaloOption = 20,
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
    from vdsr_deploy.bench import BenchConfig, benchmark, render_markdown, sweep, write_plot

    console = _console()
    with _user_errors():
        if any(tiles or [256]):
            _check_halo(halo, max(tiles or [256]), inexact_halo, weights, onnx, console)
        if cpu_paths:
            from vdsr_deploy.bench import CPU_BASELINE as BASELINE
            from vdsr_deploy.bench import cpu_path_settings

            settings = cpu_path_settings((tiles or [256])[0], batch=(batches or [1])[0])
            notes: list[str] = []
            baseline = baseline or BASELINE
        else:
            onnx_precision = None
            if onnx is not None:
                from vdsr_deploy.artifacts import MetadataKey, onnx_metadata

                onnx_precision = onnx_metadata(onnx).get(MetadataKey.PRECISION, "fp32")
            settings, notes = sweep(
                backends or ["torch", "onnxruntime"],
                precisions or ["fp32"],
                tiles or [256],
                batches or [1],
                device=device,
                provider=provider,
                onnx=onnx,
                onnx_precision=onnx_precision,
            )
        for line in notes:
            console.print(f"[yellow]{line}[/yellow]")
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
                console.print(f"[yellow]{event['setting']}: {event['event']} ({event['reason']})[/yellow]")
            elif event["event"] == "warmup":
                console.print(f"[dim]warming up {event['setting']}[/dim]")

        result = benchmark(config, on_event=on_event)
        costs = ""
        if hr:
            from vdsr_deploy.bench import cost_markdown, quality_costs

            reference = baseline or settings[0].name
            scored = [s for s in settings if s.precision != "fp32" or s.name == reference]
            console.print(f"[dim]scoring {', '.join(p.name for p in hr)} (whole images, x2/x3/x4)...[/dim]")
            result["task_psnr"] = quality_costs(hr, [2, 3, 4], scored, config, reference)
            costs = cost_markdown(result, result["task_psnr"], reference)
    _render_bench(console, result)
    if costs:
        console.print(costs)
    if out is not None:
        with _user_errors():
            out.mkdir(parents=True, exist_ok=True)
            (out / "bench.json").write_text(json.dumps(result, indent=2))
            (out / "bench.md").write_text(render_markdown(result) + ("\n" + costs if costs else ""))
            write_plot(result, out / "bench.png")
        console.print(f"results written to {out}")
    if any(r["status"] == "error" for r in result["results"]):
        raise typer.Exit(1)


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
        table.add_row(*row)
    console.print(table)
    notes = [OVERHEAD_NOTE]
    if result["config"].get("baseline"):
        notes.append(f"vs base: runtime throughput relative to {result['config']['baseline']}")
    notes.append("runner, tiles, latency percentiles and GFLOP/s: --out DIR writes them to bench.md")
    for note in notes:
        console.print(f"[dim]{note}[/dim]")
    for item in result["results"]:
        if item.get("runtime") is None:
            console.print(f"[yellow]{item['status']}[/yellow] {item['name']}: {item['reason']}")


def main() -> None:  # pragma: no cover - entry point convenience
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
