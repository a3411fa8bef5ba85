"""Options several ``vdsr`` commands share, so each reads and behaves the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vdsr_deploy.backends.registry import BACKEND_CHOICES
from vdsr_deploy.precision.names import CHOICES

WeightsOption = Annotated[
    Path | None, typer.Option("--weights", "-w", help="VDSR weights (.safetensors); default: the shipped weights.")
]
BackendOption = Annotated[str, typer.Option("--backend", "-b", help=" | ".join(BACKEND_CHOICES))]
DeviceOption = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        "-p",
        help=" | ".join(CHOICES) + " (auto: fp16 on CUDA; on CPU the fastest path "
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
    Path | None,
    typer.Option(
        "--engines-dir",
        help="Cache folder for ONNX exports, INT8 models and engines (default: $VDSR_CACHE_DIR, else the "
        "user cache folder; vdsr info shows it).",
    ),
]
EnsembleOption = Annotated[
    bool,
    typer.Option(
        "--ensemble",
        help="x8 self-ensemble: run the 4 rotations and their mirror images, map back and average "
        "(exact with tiling; 8x the compute; its measured PSNR gain: docs/quality.md).",
    ),
]
