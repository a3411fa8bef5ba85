"""``--tile auto`` (the default): size the tile for a job from its images and the memory that
holds the network's activations (the GPU's free memory on CUDA; on the CPU a share of the
memory available, :func:`cpu_budget`).

The arithmetic is :func:`vdsr_deploy.planes.device_pipeline.auto_tile` (pure, unit-tested); this
module gathers its inputs: output sizes from the files' headers (nothing decoded) and the
budget from the device.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.planes.colour import output_shape
from vdsr_deploy.planes.device_pipeline import activation_bytes_per_pixel, auto_tile, int32_pixel_limit
from vdsr_deploy.planes.tiling import DEFAULT_TILE, TileConfig, halo_overhead

if TYPE_CHECKING:
    from vdsr_deploy.backends.registry import RunnerSpec

MIB = 1 << 20
DEVICE_SHARE = 0.6  # of the free GPU memory: the rest for cuDNN workspaces, planes, other work
CPU_SHARE = 0.25
"""Of the memory available (``MemAvailable``) for the activations on the CPU: the job's
decoded inputs and bands (``--memory-mb``), the runtime's own arena and workspaces, the
encoder and the rest of the machine keep the other three quarters."""
CPU_CAP = 4 << 30
"""At most this much for activations on the CPU (4 GiB: a whole 8 Mpx output at fp32 needs
about 4 GiB, 524 B/pixel): on the CPU a tile of a few hundred pixels runs at nearly the
speed of a whole image (the halo is the only waste), so more memory buys little."""
CPU_FLOOR = 256 * MIB
"""At least this much (when the machine says it has less available, or nothing)."""


@dataclass(frozen=True)
class AutoTile:
    """The chosen tile (0: whole images) and why, for the job's log. ``max_side``: with
    TensorRT and whole images, the profile side that covers the largest image (None:
    not needed)."""

    tile: int
    reason: str
    max_side: int | None = None
    halo_overhead: float | None = None
    """Pixels computed for the halos over the output pixels of the inputs
    (:func:`~vdsr_deploy.planes.tiling.halo_overhead`); None: not known (a remote input with
    a given tile: no header is fetched only for this figure)."""

    def describe(self) -> str:
        """``tile 256 (halo overhead +38.5%)``, ``whole image``: for the job's first line."""
        name = f"tile {self.tile}" if self.tile else "whole image"
        if self.halo_overhead is None or not self.tile:
            return name
        return f"{name} (halo overhead +{self.halo_overhead:.1%})"


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


def cpu_budget(available: int | None) -> int:
    """Bytes the activations may use on the CPU when ``available`` bytes are available
    (None: unknown): :data:`CPU_SHARE` of it, within [:data:`CPU_FLOOR`, :data:`CPU_CAP`]."""
    if available is not None and available < 0:
        raise ConfigError(f"available memory: expected >= 0 bytes, got {available}")
    if available is None:
        return CPU_FLOOR
    return max(CPU_FLOOR, min(CPU_CAP, int(available * CPU_SHARE)))


def budget_bytes(device: str) -> tuple[int, str]:
    """Bytes the network's activations may use on ``device`` (``cpu``, ``cuda``, ``cuda:N``),
    and where that figure comes from (for the job's log)."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free * DEVICE_SHARE), f"{DEVICE_SHARE:.0%} of {free / 2**30:.1f} GiB free on {device}"
    from vdsr_deploy.environment import available_memory_bytes

    available = available_memory_bytes()
    budget = cpu_budget(available)
    of = "the memory available (unknown)" if available is None else f"{available / 2**30:.1f} GiB available"
    return budget, f"{budget / 2**30:.2f} GiB: {CPU_SHARE:.0%} of {of}, at most {CPU_CAP >> 30} GiB"


def choose_tile(
    sizes: list[tuple[int, int]],
    *,
    scale: float,
    batch: int,
    halo: int,
    device: str,
    precision: str,
    channels: int,
    budget: int | None = None,
) -> AutoTile:
    """The ``--tile auto`` tile for input ``sizes`` (height, width) upscaled by ``scale``;
    ``budget``: bytes for the activations (default: :func:`budget_bytes` of ``device``).

    On the CPU an image run whole is one window (batch 1), so whole images are chosen when
    one of the largest fits; a tile is sized for ``batch`` tiles at once. On CUDA the
    device pipeline may batch whole frames, so ``batch`` of them must fit."""
    outputs = [output_shape(h, w, scale) for h, w in sizes]
    where = f"{(budget or 0) / 2**30:.2f} GiB given"
    if budget is None:
        budget, where = budget_bytes(device)
    per_pixel = activation_bytes_per_pixel(channels, precision)
    on_cuda = device.startswith("cuda")
    limit = int32_pixel_limit(channels) if on_cuda else None
    tile = auto_tile(outputs, budget_bytes=budget, batch=batch, halo=halo, bytes_per_pixel=per_pixel, max_pixels=limit)
    if tile and not on_cuda:
        whole = auto_tile(outputs, budget_bytes=budget, batch=1, halo=halo, bytes_per_pixel=per_pixel)
        tile = tile if whole else 0
    chosen = "whole images" if tile == 0 else f"tile {tile}"
    times = "" if tile == 0 and not on_cuda else f" x batch {batch}"
    return AutoTile(tile, f"--tile auto: {chosen} ({per_pixel} B/pixel{times} within {where})")


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


def input_sizes(paths: list[str], *, max_pixels: int, remote: bool = True) -> list[tuple[int, int]]:
    """(height, width) of every readable file among ``paths`` (headers only; unreadable files
    are left to the job, which reports them; ``remote`` False: local files only)."""
    from vdsr_deploy.imageio import probe_image
    from vdsr_deploy.job.remote import RemotePath, image_size, location
    from vdsr_deploy.videoio import is_video_path
    from vdsr_deploy.videoio.probe import probe_video

    sizes = []
    for path in paths:
        if isinstance(where := location(path), RemotePath):  # s3://...: the header's ranges only
            if not remote:
                continue
            size = image_size(where)
            if size is not None and size[0] * size[1] <= max_pixels:
                sizes.append(size)
            continue
        if is_video_path(path):  # its frames' size (the video extra; without it the job says so)
            try:
                video = probe_video(Path(path))
            except (VdsrError, ImportError):
                continue
            sizes.append((video.height, video.width))
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
    max_pixels: int,
) -> AutoTile:
    """``--tile`` as given (a side or 0), or sized by :func:`choose_tile` for ``auto`` from the
    inputs' headers (folders and globs expanded as the job will), for the runtime ``spec``
    resolves to and the width of its weights; with the halo overhead of the chosen tile on
    those inputs (a given tile: local inputs only)."""
    from vdsr_deploy.backends.registry import choose_backend
    from vdsr_deploy.job.config import JobConfig
    from vdsr_deploy.job.plan import plan_outputs
    from vdsr_deploy.protocol import check_scale

    side = parse_tile(text)
    check_scale(scale)  # before any output size is computed from it
    tensorrt = choose_backend(spec).backend == "tensorrt"
    items, _failures = plan_outputs(JobConfig(inputs=inputs, output=output))
    given = side is not None and not (side == 0 and tensorrt)
    sizes = input_sizes([str(item.source) for item in items], max_pixels=max_pixels, remote=not given)
    chosen = AutoTile(side, "") if given and side is not None else _auto(side, sizes, spec, scale, batch, halo)
    if sizes and halo >= 0 and (chosen.tile == 0 or chosen.tile > 2 * halo):  # else check_halo/TileConfig refuse
        outputs = [output_shape(h, w, scale) for h, w in sizes]
        overhead = halo_overhead(outputs, TileConfig(tile=chosen.tile, halo=halo))
        return replace(chosen, halo_overhead=overhead)
    return chosen


def _auto(
    side: int | None, sizes: list[tuple[int, int]], spec: RunnerSpec, scale: float, batch: int, halo: int
) -> AutoTile:
    """``--tile auto`` (``side`` None), or ``--tile 0`` on TensorRT (whole images: the profile
    side that covers the largest), for inputs of ``sizes``."""
    from vdsr_deploy.backends.registry import choose_backend, compute_device, unavailable_reason
    from vdsr_deploy.model.weights import read_channels

    if unavailable_reason(spec) is not None:  # opening the runner says why; nothing to size for
        return AutoTile(DEFAULT_TILE, "")
    if side == 0:  # TensorRT, whole images: the engine's profile must take the largest
        from vdsr_deploy.backends.tensorrt.build_config import whole_image_side

        longest = max((max(output_shape(h, w, scale)) for h, w in sizes), default=0)
        covering = whole_image_side(longest) if longest else None
        return AutoTile(0, "", covering)
    if not sizes:
        return AutoTile(0, "--tile auto: no readable image to size the tile for (whole images)")
    channels = read_channels(spec.weights)
    if choose_backend(spec).backend == "tensorrt":
        from vdsr_deploy.backends.device import cuda_index

        return choose_tensorrt_tile(
            sizes,
            scale=scale,
            batch=batch,
            halo=halo,
            device=cuda_index(spec.device),
            precision=spec.precision if spec.precision in ("fp16", "fp32") else "fp16",
            channels=channels,
        )
    return choose_tile(
        sizes,
        scale=scale,
        batch=batch,
        halo=halo,
        device=compute_device(spec),
        precision=spec.precision,
        channels=channels,
    )

