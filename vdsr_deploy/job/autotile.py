"""``--tile auto``: size the tile for a job from its images and the memory that holds the
network's activations (the GPU's free memory on CUDA, ``--memory-mb`` on the CPU).

The arithmetic is :func:`vdsr_deploy.planes.device_pipeline.auto_tile` (pure, unit-tested); this
module gathers its inputs: output sizes from the files' headers (nothing decoded) and the
budget from the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.planes.colour import output_shape
from vdsr_deploy.planes.device_pipeline import activation_bytes_per_pixel, auto_tile, int32_pixel_limit

if TYPE_CHECKING:
    from vdsr_deploy.backends.registry import RunnerSpec

MIB = 1 << 20
DEVICE_SHARE = 0.6  # of the free GPU memory: the rest for cuDNN workspaces, planes, other work


@dataclass(frozen=True)
class AutoTile:
    """The chosen tile (0: whole images) and why, for the job's log. ``max_side``: with
    TensorRT and whole images, the profile side that covers the largest image (None:
    not needed)."""

    tile: int
    reason: str
    max_side: int | None = None


def parse_tile(text: str) -> int | None:
    """``--tile``: a side in pixels, 0 (whole images) or ``auto`` (None)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError as error:
        raise ConfigError(f"--tile: expected a side in pixels, 0 or auto, got {text!r}") from error
    if value < 0:
        raise ConfigError(f"--tile: expected a side in pixels, 0 or auto, got {text!r}")
    return value


def budget_bytes(device: str, memory_mb: int) -> tuple[int, str]:
    """Bytes the network's activations may use on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * DEVICE_SHARE), f"{DEVICE_SHARE:.0%} of {free / 2**30:.1f} GiB free on {device}"
    return memory_mb * MIB, f"--memory-mb {memory_mb}"


def choose_tile(
    sizes: list[tuple[int, int]],
    *,
    scale: float,
    batch: int,
    halo: int,
    device: str,
    precision: str,
    channels: int,
    memory_mb: int,
) -> AutoTile:
    """The ``--tile auto`` tile for input ``sizes`` (height, width) upscaled by ``scale``."""
    outputs = [output_shape(h, w, scale) for h, w in sizes]
    budget, where = budget_bytes(device, memory_mb)
    per_pixel = activation_bytes_per_pixel(channels, precision)
    tile = auto_tile(
        outputs,
        budget_bytes=budget,
        batch=batch,
        halo=halo,
        bytes_per_pixel=per_pixel,
        max_pixels=int32_pixel_limit(channels) if device.startswith("cuda") else None,
    )
    chosen = "whole images" if tile == 0 else f"tile {tile}"
    return AutoTile(tile, f"--tile auto: {chosen} ({per_pixel} B/pixel x batch {batch} within {where})")


def choose_tensorrt_tile(
    sizes: list[tuple[int, int]],
    *,
    scale: float,
    batch: int,
    halo: int,
    device: int,
    precision: str,
    channels: int,
) -> AutoTile:
    """``--tile auto`` for TensorRT: one of a few stable tiles, from the engine's memory
    at that tile against the GPU's free memory as the driver reports it (cuda-python), for
    the execution contexts the engine will have
    (:func:`vdsr_deploy.backends.tensorrt.build_config.auto_tensorrt_tile`)."""
    from vdsr_deploy.backends.tensorrt import cuda
    from vdsr_deploy.backends.tensorrt.build_config import DEFAULT_CONTEXTS, auto_tensorrt_tile

    outputs = [output_shape(h, w, scale) for h, w in sizes]
    longest = max(max(h, w) for h, w in outputs)
    free, _total = cuda.memory_info(device)
    budget = int(free * DEVICE_SHARE)
    per_pixel = activation_bytes_per_pixel(channels, precision)
    tile = auto_tensorrt_tile(
        longest, batch=batch, contexts=DEFAULT_CONTEXTS, budget_bytes=budget, bytes_per_pixel=per_pixel, halo=halo
    )
    return AutoTile(
        tile,
        f"--tile auto: tile {tile} for TensorRT ({per_pixel} B/pixel x batch {batch} x "
        f"{DEFAULT_CONTEXTS} context(s) within {DEVICE_SHARE:.0%} of {free / 2**30:.1f} GiB free on cuda:{device})",
    )


def input_sizes(paths: list[str], *, max_pixels: int) -> list[tuple[int, int]]:
    """(height, width) of every readable file among ``paths`` (headers only; unreadable files
    are left to the job, which reports them)."""
    from vdsr_deploy.imageio import probe_image
    from vdsr_deploy.job.remote import RemotePath, image_size, location

    sizes = []
    for path in paths:
        if isinstance(remote := location(path), RemotePath):  # s3://...: the header's ranges only
            size = image_size(remote)
            if size is not None and size[0] * size[1] <= max_pixels:
                sizes.append(size)
            continue
        try:
            header = probe_image(Path(path), max_pixels=max_pixels)
        except VdsrError:
            continue
        sizes.append((header.height, header.width))
    return sizes


def resolve_tile(
    text: str,
    inputs: tuple[str, ...],
    output: Path,
    spec: RunnerSpec,
    *,
    scale: float,
    batch: int,
    halo: int,
    memory_mb: int,
    max_pixels: int,
) -> AutoTile:
    """``--tile`` as given (a side or 0), or sized by :func:`choose_tile` for ``auto`` from the
    inputs' headers (folders and globs expanded as the job will), for the runtime ``spec``
    resolves to and the width of its weights."""
    from vdsr_deploy.backends.registry import choose_backend, compute_device

    side = parse_tile(text)
    tensorrt = choose_backend(spec).backend == "tensorrt"
    if side is not None and not (side == 0 and tensorrt):
        return AutoTile(side, "")
    from vdsr_deploy.job.config import JobConfig
    from vdsr_deploy.job.plan import plan_outputs
    from vdsr_deploy.model.weights import load_weights

    _, info = load_weights(spec.weights)
    items, _failures = plan_outputs(JobConfig(inputs=inputs, output=output))
    sizes = input_sizes([str(item.source) for item in items], max_pixels=max_pixels)
    if side == 0:  # TensorRT, whole images: the engine's profile must take the largest
        from vdsr_deploy.backends.tensorrt.build_config import whole_image_side

        longest = max((max(output_shape(h, w, scale)) for h, w in sizes), default=0)
        covering = whole_image_side(longest) if longest else None
        return AutoTile(0, "", covering)
    if not sizes:
        return AutoTile(0, "--tile auto: no readable image to size the tile for (whole images)")
    if tensorrt:
        from vdsr_deploy.backends.device import cuda_index

        return choose_tensorrt_tile(
            sizes,
            scale=scale,
            batch=batch,
            halo=halo,
            device=cuda_index(spec.device),
            precision=spec.precision if spec.precision in ("fp16", "fp32") else "fp16",
            channels=info.channels,
        )
    return choose_tile(
        sizes,
        scale=scale,
        batch=batch,
        halo=halo,
        device=compute_device(spec),
        precision=spec.precision,
        channels=info.channels,
        memory_mb=memory_mb,
    )
