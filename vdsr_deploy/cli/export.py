"""``vdsr export`` and ``vdsr build``: the artifacts runtimes run (ONNX, INT8 QDQ, Triton
repository, TensorRT engine), built apart from running them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, escape, make_console, user_errors
from vdsr_deploy.cli.options import BatchOption, EnginesOption, HaloOption, TileOption, WeightsOption
from vdsr_deploy.planes.tiling import DEFAULT_HALO, DEFAULT_TILE


@app.command()
def export(
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", "-o", help="Folder for the ONNX files (default: the cache folder, vdsr cache)."),
    ] = None,
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
    tile: TileOption = DEFAULT_TILE,
    halo: HaloOption = DEFAULT_HALO,
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
    from vdsr_deploy.errors import ConfigError
    from vdsr_deploy.export.onnx import export_onnx
    from vdsr_deploy.model.onnx_metadata import default_onnx_name
    from vdsr_deploy.model.weights import load_weights
    from vdsr_deploy.precision.names import check_precision
    from vdsr_deploy.runtime.cache import default_cache_dir

    console = make_console()
    if triton is None:
        # these shape the Triton repository only: given without --triton they would do nothing
        with user_errors():
            _refuse_without_triton(tile=tile, halo=halo, batch=batch, engine=engine, engines_dir=engines_dir)
    if triton is not None:
        _export_triton(console, triton, weights, tile, halo, batch, engine, engines_dir, overwrite)
        return
    output_dir = output_dir or engines_dir or default_cache_dir()
    with user_errors():
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
            state = "identical file already in place; " if result.already_in_place else ""
            console.print(
                f"{escape(str(result.path))}  ({p}; {state}ORT vs PyTorch max |diff| {result.max_abs_diff:.2e} "
                "on shapes "
                f"{', '.join('x'.join(map(str, s)) for s in result.shapes_checked)})",
                soft_wrap=True,
            )


def _refuse_without_triton(
    *, tile: int, halo: int, batch: int, engine: Path | None, engines_dir: Path | None
) -> None:
    """A :class:`ConfigError` naming the first Triton-only option given without --triton."""
    from vdsr_deploy.errors import ConfigError

    given = {
        "--tile": tile != DEFAULT_TILE,
        "--halo": halo != DEFAULT_HALO,
        "--batch": batch != 4,
        "--engine": engine is not None,
        "--engines-dir": engines_dir is not None,
    }
    for option, present in given.items():
        if present:
            raise ConfigError(f"{option}: applies with --triton DIR only (it shapes the Triton repository)")


def _export_int8(
    console: Any, weights: Path | None, output_dir: Path, overwrite: bool, calibration_dir: Path | None
) -> None:
    from vdsr_deploy.backends.registry import RunnerSpec
    from vdsr_deploy.export.calibration import calibration_set_from_images, load_calibration_set
    from vdsr_deploy.runtime.artifacts import int8_artifact

    spec = RunnerSpec(backend="onnxruntime", precision="int8", weights=weights, engines_dir=output_dir)
    calibration = load_calibration_set() if calibration_dir is None else calibration_set_from_images(calibration_dir)
    artifact = int8_artifact(spec, output_dir, calibration, rebuild=overwrite)
    cost = ", ".join(f"{scale} {value:+.3f}" for scale, value in sorted(artifact.cost_db.items()))
    console.print(
        f"{escape(str(artifact.path))}  (int8 QDQ, {'built' if artifact.built else 'cached, key matches'}; "
        f"calibration {escape(str(calibration.origin))}: {calibration.calibration} tiles, "
        f"{len(calibration.held_out)} held out; "
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
    from vdsr_deploy.planes.tiling import TileConfig
    from vdsr_deploy.runtime.prepare import default_engines_dir
    from vdsr_deploy.runtime.triton import export_triton

    with user_errors():
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
        console.print(f"{escape(str(config))}  (validated with Triton's model_config schema)", soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}")
    console.print(
        f"serve: tritonserver --model-repository {escape(str(directory.absolute()))}  (see docs/cluster.md: Triton)",
        soft_wrap=True,
    )


def _check_build_options(gpu: int, max_side: int | None, tile: int) -> None:
    """What ``vdsr build`` can check before TensorRT is even looked for."""
    from vdsr_deploy.errors import ConfigError

    if gpu < 0:
        raise ConfigError(f"--gpu: expected a CUDA device index >= 0, got {gpu}")
    if max_side is not None and max_side < 1:
        raise ConfigError(f"--max-side: expected >= 1, got {max_side}")
    if max_side is not None and tile != 0:
        raise ConfigError(f"--max-side: applies with --tile 0 only (got --tile {tile})")


@app.command()
def build(
    onnx: Annotated[
        Path | None,
        typer.Option("--onnx", help="Build from this ONNX (default: the weights' ONNX, exported)."),
    ] = None,
    weights: WeightsOption = None,
    precision: Annotated[str, typer.Option("--precision", "-p", help="fp16 | fp32 (TF32 off, for parity).")] = "fp16",
    engines_dir: EnginesOption = None,
    tile: TileOption = DEFAULT_TILE,
    halo: HaloOption = DEFAULT_HALO,
    batch: BatchOption = 4,
    max_side: Annotated[int | None, typer.Option("--max-side", help="Largest image side when --tile 0.")] = None,
    contexts: Annotated[
        int,
        typer.Option(
            "--contexts",
            help="Execution contexts in flight (one profile each); more than 1 helps only callers on several streams.",
        ),
    ] = 1,
    workspace: Annotated[int, typer.Option("--workspace", help="Builder workspace limit in MiB.")] = 1024,
    opt_level: Annotated[int, typer.Option("--opt-level", help="TensorRT builder optimization level 0..5.")] = 3,
    gpu: Annotated[int, typer.Option("--gpu", "-g", help="CUDA device index.")] = 0,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Build even when a matching engine is cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Build (or find) the TensorRT engine for a tile size and batch: engine + JSON sidecar."""
    from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
    from vdsr_deploy.planes.tiling import TileConfig
    from vdsr_deploy.runtime.artifacts import ensure_engine
    from vdsr_deploy.runtime.prepare import default_engines_dir

    with user_errors():
        _check_build_options(gpu, max_side, tile)
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
    console = make_console()
    state = f"built in {described['build_seconds']:.1f} s" if record.built else "cached, matches this GPU and TensorRT"
    console.print(f"{escape(str(described['engine']))}  ({state})", soft_wrap=True)
    for reason in described["replaced_because"]:
        console.print(f"  [yellow]rebuilt[/yellow]: the cached engine was {escape(str(reason))}")
    console.print(
        f"  {described['precision']}, {escape(str(described['profiles']))}, {escape(str(described['gpu']))}, "
        f"TensorRT {described['tensorrt']}, "
        f"{described['fp16_layers']} of {described['layers']} layers FP16"
    )
