"""Batch upscaling of files: inputs -> output paths -> decode | infer | encode.

Decoding and encoding run in worker threads with bounded queues, overlapping the runner
(PyTorch, ONNX Runtime and TensorRT release the GIL while computing); tiles of several
images share batches via :func:`vdsr_deploy.pipeline.upscale_planes`. A file that fails is
reported with its name and reason and the rest of the batch goes on. Outputs are written
atomically and never replace an existing file unless ``overwrite``.
"""

from __future__ import annotations

import glob
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsr_deploy import colour
from vdsr_deploy.errors import ImageWriteError, InvalidInputError, VdsrError
from vdsr_deploy.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMAT_SUFFIX,
    IMAGE_SUFFIXES,
    DecodedImage,
    output_format,
    read_image,
    write_image,
)
from vdsr_deploy.pipeline import PipelineConfig, upscale_planes
from vdsr_deploy.runners.base import Runner

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class WorkItem:
    """One input file and where its output goes."""

    source: Path
    target: Path


@dataclass(frozen=True)
class JobConfig:
    """A batch job: inputs (files, folders, globs), output (file or folder), format."""

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

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InvalidInputError("no inputs given")
        if self.fmt is not None:
            output_format(Path("x"), self.fmt)
        if self.load_threads < 1 or self.save_threads < 1 or self.queue_size < 1:
            raise InvalidInputError("load/save threads and queue size must be >= 1")


@dataclass(frozen=True)
class Failure:
    source: Path
    reason: str


@dataclass
class JobSummary:
    done: list[WorkItem] = field(default_factory=list)
    skipped: list[WorkItem] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    megapixels_out: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": [str(i.target) for i in self.done],
            "skipped": [str(i.target) for i in self.skipped],
            "failed": [{"file": str(f.source), "reason": f.reason} for f in self.failed],
            "megapixels_out": round(self.megapixels_out, 3),
            "seconds": round(self.seconds, 3),
            "megapixels_per_second": round(self.megapixels_out / self.seconds, 4) if self.seconds else None,
            "interrupted": self.interrupted,
        }


def _expand(spec: str, recursive: bool) -> list[tuple[Path, Path]]:
    """(file, path relative to its root) for one input spec; [] when nothing matches."""
    path = Path(spec)
    if path.is_dir():
        walker = path.rglob("*") if recursive else path.glob("*")
        files = sorted(p for p in walker if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return [(p, Path(path.name) / p.relative_to(path)) for p in files]
    if path.exists() or not glob.has_magic(spec):
        return [(path, Path(path.name))]
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
    return [(p, Path(p.name)) for p in matches if p.is_file()]


def plan_outputs(config: JobConfig) -> tuple[list[WorkItem], list[Failure]]:
    """Map every input to an output path; collisions and self-overwrites become failures.

    One input file and an output with an image suffix: that file. Otherwise the output is
    a folder: files land by name, folders keep their tree under ``output/<folder name>/``.
    """
    found: list[tuple[Path, Path]] = []
    failures: list[Failure] = []
    for spec in config.inputs:
        expanded = _expand(spec, config.recursive)
        if not expanded:
            failures.append(Failure(Path(spec), "no such file, folder, or matching glob"))
        found.extend(expanded)
    single_file = len(found) == 1 and config.output.suffix.lower() in IMAGE_SUFFIXES and not config.output.is_dir()
    inputs = {p.resolve() for p, _ in found}
    items: list[WorkItem] = []
    taken: dict[Path, Path] = {}
    for source, relative in found:
        if single_file:
            target = config.output
        else:
            fmt = config.fmt or _default_format(source)
            target = config.output / relative.with_suffix(FORMAT_SUFFIX[fmt])
        resolved = target.resolve()
        if resolved in inputs:
            failures.append(Failure(source, f"output {target} would overwrite an input; choose another output folder"))
            continue
        if resolved in taken:
            failures.append(Failure(source, f"output {target} collides with the output of {taken[resolved]}"))
            continue
        taken[resolved] = source
        items.append(WorkItem(source, target))
    return items, failures


def _default_format(source: Path) -> str:
    suffix = source.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix)
    return name if name in FORMAT_SUFFIX else "png"


_END = object()


def run_job(config: JobConfig, runner: Runner, on_event: EventSink | None = None) -> JobSummary:
    """Upscale every input; the runner must be active. Returns what was done and failed."""
    emit = on_event or (lambda event: None)
    summary = JobSummary()
    items, failures = plan_outputs(config)
    summary.failed.extend(failures)
    for failure in failures:
        emit({"event": "failed", "file": str(failure.source), "reason": failure.reason})
    todo: list[WorkItem] = []
    for item in items:
        if item.target.exists() and not config.overwrite:
            summary.skipped.append(item)
            emit({"event": "skipped", "file": str(item.source), "target": str(item.target)})
        else:
            todo.append(item)
    emit({"event": "start", "total": len(todo)})
    started = time.perf_counter()
    decoded: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
    meta: dict[int, tuple[WorkItem, DecodedImage, colour.PreparedImage]] = {}
    stop = threading.Event()

    def load(item: WorkItem) -> tuple[DecodedImage, colour.PreparedImage]:
        image = read_image(item.source, max_pixels=config.max_pixels)
        return image, colour.prepare(image.pixels, config.pipeline.scale)

    def producer() -> None:
        with ThreadPoolExecutor(config.load_threads, thread_name_prefix="vdsr-load") as pool:
            window: list[tuple[int, WorkItem, Future[tuple[DecodedImage, colour.PreparedImage]]]] = []
            index = 0
            pending_items = iter(enumerate(todo))
            while not stop.is_set():
                while len(window) < config.load_threads + 1:
                    nxt = next(pending_items, None)
                    if nxt is None:
                        break
                    window.append((nxt[0], nxt[1], pool.submit(load, nxt[1])))
                if not window:
                    break
                index, item, future = window.pop(0)
                try:
                    decoded.put((index, item, future.result()))
                except VdsrError as error:
                    decoded.put((index, item, error))
                except Exception as error:  # a decoder bug must not stop the batch
                    decoded.put((index, item, InvalidInputError(f"{item.source}: cannot decode ({error!r})")))
        decoded.put(_END)

    def planes() -> Iterator[tuple[int, Any]]:
        while True:
            entry = decoded.get()
            if entry is _END:
                return
            index, item, result = entry  # type: ignore[misc]
            if isinstance(result, VdsrError):
                summary.failed.append(Failure(item.source, _reason(result, item.source)))
                emit({"event": "failed", "file": str(item.source), "reason": _reason(result, item.source)})
                continue
            image, prepared = result
            meta[index] = (item, image, prepared)
            yield index, prepared.y

    def save(index: int, y: Any) -> None:
        item, image, prepared = meta.pop(index)
        pixels = colour.finish(prepared, y)
        write_image(
            item.target, pixels, bit_depth=image.bit_depth, fmt=config.fmt, overwrite=config.overwrite,
            icc_profile=image.icc_profile, dpi=image.dpi, exif=image.exif,
        )
        return None

    feeder = threading.Thread(target=producer, name="vdsr-decode", daemon=True)
    feeder.start()
    writes: list[tuple[int, WorkItem, float, Future[None]]] = []
    try:
        with ThreadPoolExecutor(config.save_threads, thread_name_prefix="vdsr-save") as savers:
            p = config.pipeline
            for index, y in upscale_planes(planes(), runner, p.tiling, batch=p.batch, max_images_in_flight=p.max_images_in_flight):
                item = meta[index][0]
                megapixels = y.shape[0] * y.shape[1] / 1e6
                writes.append((index, item, megapixels, savers.submit(save, index, y)))
                while len(writes) > config.save_threads * 2:
                    _collect(writes.pop(0), summary, emit, started)
            while writes:
                _collect(writes.pop(0), summary, emit, started)
    except KeyboardInterrupt:
        summary.interrupted = True
        stop.set()
        for _, _, _, future in writes:
            future.cancel()
        for write in writes:
            if not write[3].cancelled():
                _collect(write, summary, emit, started)
    finally:
        stop.set()
        while feeder.is_alive():
            try:
                decoded.get_nowait()
            except queue.Empty:
                feeder.join(timeout=0.05)
    summary.seconds = time.perf_counter() - started
    emit({"event": "finished", **summary.to_dict()})
    return summary


def _reason(error: Exception, source: Path) -> str:
    text = str(error)
    prefix = f"{source}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _collect(
    write: tuple[int, WorkItem, float, Future[None]], summary: JobSummary, emit: EventSink, started: float
) -> None:
    _, item, megapixels, future = write
    try:
        future.result()
    except (ImageWriteError, OSError) as error:
        summary.failed.append(Failure(item.source, _reason(error, item.target)))
        emit({"event": "failed", "file": str(item.source), "reason": str(error)})
        return
    summary.done.append(item)
    summary.megapixels_out += megapixels
    elapsed = time.perf_counter() - started
    emit({"event": "done", "file": str(item.source), "target": str(item.target), "megapixels": megapixels,
          "megapixels_per_second": summary.megapixels_out / elapsed if elapsed else 0.0})


