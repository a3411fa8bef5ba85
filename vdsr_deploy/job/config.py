"""A job's settings (:class:`JobConfig`, validated on construction) and its unit of work
(:class:`WorkItem`: one input file and the output it becomes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vdsr_deploy.errors import ConfigError, ImageWriteError, InvalidInputError
from vdsr_deploy.imageio import DEFAULT_MAX_PIXELS, output_format
from vdsr_deploy.planes.pipeline import PipelineConfig


@dataclass(frozen=True)
class WorkItem:
    """One input file and where its output goes (``note``: why the name was changed)."""

    source: Path
    target: Path
    note: str | None = None


@dataclass(frozen=True)
class JobConfig:
    """A batch job.

    ``inputs``: files, folders or globs; ``output``: a folder (or a file for one input);
    ``fmt``: png | jpg | webp | tiff | bmp (default: as the input, else png);
    ``overwrite``: replace existing outputs instead of resuming; ``max_pixels``: refuse
    larger inputs (decompression bombs); ``load_threads``/``save_threads``: decode and encode
    workers; ``queue_size``: bands waiting for the runner; ``memory_mb``: budget for decoded
    inputs and bands in flight (half each; one item larger than its half runs alone);
    ``quality``: JPEG/WebP quality; ``model``: identifies the model files for resume
    (:func:`vdsr_deploy.model.identity.model_identity`; empty: :func:`run_job` takes the runner's).
    """

    inputs: tuple[str, ...]
    output: Path
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    fmt: str | None = None
    overwrite: bool = False
    recursive: bool = True
    max_pixels: int = DEFAULT_MAX_PIXELS
    load_threads: int = 2
    save_threads: int = 2
    queue_size: int = 4
    memory_mb: int = 1024
    quality: int = 95
    model: str = ""

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InvalidInputError("no inputs given")
        if self.fmt is not None:
            try:
                output_format(Path("x"), self.fmt)
            except ImageWriteError as error:
                raise ConfigError(f"format: {error}".replace("x: ", "")) from error
        if self.load_threads < 1 or self.save_threads < 1:
            raise ConfigError(
                f"load/save threads: expected >= 1, got {self.load_threads}:{self.save_threads}"
            )
        if self.queue_size < 1:
            raise ConfigError(f"queue_size: expected >= 1, got {self.queue_size}")
        if self.max_pixels < 1:
            raise ConfigError(f"max_pixels: expected >= 1, got {self.max_pixels}")
        if self.memory_mb < 16:
            raise ConfigError(f"memory_mb: expected >= 16, got {self.memory_mb}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"quality: expected 1..100, got {self.quality}")
