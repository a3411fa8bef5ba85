"""How a TensorRT engine is to be built: :class:`EngineBuildConfig` (shape profile,
precision, execution contexts, workspace, optimization level, timing cache), validated on
construction, with the defaults and limits of each option.

Take the profile from :meth:`EngineBuildConfig.for_tiles` so the engine and the tiler
agree. Nothing here needs TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.errors import ConfigError
from vdsr_deploy.io_names import ShapeProfile, profile_for_tiles
from vdsr_deploy.planes.tiling import TileConfig

PRECISIONS = ("fp32", "fp16")
"""What TensorRT engines are built in (the TensorRT descriptor reads this)."""
# --tile 0 (whole images) with TensorRT: the profile's largest side when none is given.
DEFAULT_WHOLE_IMAGE_MAX_SIDE = 4096
# --tile auto with TensorRT picks one of these (every tile is a new engine: a build of
# minutes, so the choice must not move with free memory), and --tile 0 rounds the largest
# image side up to a power of two of at least MIN_WHOLE_IMAGE_SIDE.
AUTO_TILES = (256, 512, 1024, 2048)
MIN_WHOLE_IMAGE_SIDE = 1024
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_OPTIMIZATION_LEVEL = 3
OPTIMIZATION_LEVELS = range(0, 6)
# One execution context: the device pipeline sends one batch per call from one stream, so a
# second context never ran at the same time as the first (issue 22) and only doubled the
# context memory, the graph captures and the profiles to build. More contexts pay off only
# when calls come from several streams at once; that gain was never measured on a GPU.
DEFAULT_CONTEXTS = 1
MAX_CONTEXTS = 8
MIN_WORKSPACE_BYTES = 1 << 20


def whole_image_side(longest: int) -> int:
    """The profile side for whole images whose longest side is ``longest``: the next power
    of two, at least :data:`MIN_WHOLE_IMAGE_SIDE` (a few stable values: a stable cache key)."""
    if longest < 1:
        raise ConfigError(f"expected an image side >= 1, got {longest}")
    side = MIN_WHOLE_IMAGE_SIDE
    while side < longest:
        side *= 2
    return side


def engine_memory_bytes(tile: int, batch: int, contexts: int, bytes_per_pixel: int) -> int:
    """Device memory an engine for ``tile`` x ``tile`` at ``batch`` needs while it runs:
    each execution context's activations (``bytes_per_pixel`` per input pixel) and the
    runner's float32 input and output buffers."""
    pixels = batch * tile * tile
    return contexts * pixels * (bytes_per_pixel + 2 * 4)


def auto_tensorrt_tile(
    longest: int, *, batch: int, contexts: int, budget_bytes: int, bytes_per_pixel: int, halo: int
) -> int:
    """``--tile auto`` for TensorRT: the smallest of :data:`AUTO_TILES` that takes the
    longest output side whole (the largest, 2048, for bigger images), stepped down while
    its engine (:func:`engine_memory_bytes`) does not fit ``budget_bytes``. Never 0: a
    whole-image profile would follow every image size. ConfigError when even the smallest
    does not fit."""
    if longest < 1 or batch < 1 or contexts < 1 or budget_bytes <= 0:
        raise ConfigError(
            f"--tile auto: expected a positive side, batch, contexts and budget, got {longest}, "
            f"{batch}, {contexts}, {budget_bytes}"
        )
    fitting = [t for t in AUTO_TILES if t > 2 * halo]
    wanted = next((t for t in fitting if t >= longest), fitting[-1] if fitting else 0)
    for tile in sorted((t for t in fitting if t <= wanted), reverse=True):
        if engine_memory_bytes(tile, batch, contexts, bytes_per_pixel) <= budget_bytes:
            return tile
    smallest = fitting[0] if fitting else AUTO_TILES[-1]
    raise ConfigError(
        f"--tile auto: {budget_bytes / 2**20:.0f} MiB of device memory fits no TensorRT tile "
        f"(the smallest, {smallest} at batch {batch} with {contexts} context(s), needs "
        f"{engine_memory_bytes(smallest, batch, contexts, bytes_per_pixel) / 2**20:.0f} MiB); "
        "lower --batch or free device memory"
    )


@dataclass(frozen=True)
class EngineBuildConfig:
    """How to build an engine.

    ``profile``: the input shape range; take it from :meth:`for_tiles` so the engine and the
    tiler agree (one source of truth: :func:`vdsr_deploy.io_names.profile_for_tiles`).
    ``contexts``: identical copies of the profile, one per execution context running
    concurrently (TensorRT lets a dynamic-shape profile serve one context at a time).
    ``precision``: fp16 (needs the FP16 ONNX) or fp32 (TF32 off, for parity baselines).
    ``workspace_bytes``: the builder's WORKSPACE memory-pool limit. ``optimization_level``:
    TensorRT's builder optimization level 0..5. ``timing_cache``: where the timing cache is
    loaded from and saved to (None: next to the engines, one per GPU and TensorRT version).
    """

    profile: ShapeProfile
    precision: str = "fp16"
    contexts: int = DEFAULT_CONTEXTS
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.profile, ShapeProfile):
            raise ConfigError(
                f"profile: expected a ShapeProfile, got {type(self.profile).__name__}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 1 <= self.contexts <= MAX_CONTEXTS:
            raise ConfigError(f"contexts: expected 1..{MAX_CONTEXTS}, got {self.contexts}")
        if self.workspace_bytes < MIN_WORKSPACE_BYTES:
            raise ConfigError(
                f"workspace_bytes: expected >= {MIN_WORKSPACE_BYTES} (1 MiB), got "
                f"{self.workspace_bytes}"
            )
        if self.optimization_level not in OPTIMIZATION_LEVELS:
            raise ConfigError(f"optimization_level: expected 0..5, got {self.optimization_level}")

    @classmethod
    def for_tiles(
        cls,
        tiling: TileConfig,
        batch: int,
        *,
        max_side: int | None = None,
        precision: str = "fp16",
        contexts: int = DEFAULT_CONTEXTS,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
        optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
        timing_cache: Path | None = None,
    ) -> EngineBuildConfig:
        """The config whose profile is exactly what the tiler feeds at ``batch``."""
        return cls(
            profile=profile_for_tiles(tiling, batch, max_side=max_side),
            precision=precision,
            contexts=contexts,
            workspace_bytes=workspace_bytes,
            optimization_level=optimization_level,
            timing_cache=timing_cache,
        )

    @property
    def profiles(self) -> tuple[ShapeProfile, ...]:
        """One optimization profile per execution context."""
        return (self.profile,) * self.contexts

    @property
    def tf32(self) -> bool:
        """TF32 stays at TensorRT's default (on) for fp16 and is switched off for fp32."""
        return self.precision != "fp32"
