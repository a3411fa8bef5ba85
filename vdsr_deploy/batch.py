"""Batch upscaling of files: inputs -> output paths -> decode | prepare | infer | encode.

Stages run concurrently and talk through bounded queues, so memory stays flat for any
number of files and the runner is fed while files are decoded and encoded:

- *feed* (one thread): reads each file's header, reserves its decoded size from the input
  budget (half of ``memory_mb``), and hands the file to a decode worker (``load_threads``).
- *prepare* (one thread): cuts each decoded image into row bands, one per row of tiles
  (:func:`vdsr_deploy.tiling.plan_axis`), and computes the band's bicubic Y/CbCr/alpha
  planes with :class:`vdsr_deploy.colour.RowPreparer`: exactly the rows of the
  whole-image planes, computed in bounded chunks. Bands take the other half of the budget.
- *infer* (the calling thread): :func:`vdsr_deploy.pipeline.upscale_planes` fills batches
  with tiles of any bands and images; when nothing is ready it flushes partial batches so
  the accelerator never waits for a full batch.
- *save* (``save_threads``): recombines colour, quantizes, and streams the band's rows into
  the output file (PNG and 16-bit TIFF are written row by row); the last band finishes the
  file atomically.

So a huge image costs its decoded samples plus a few bands, never whole float planes.

Never losing work: outputs are written to a temporary file and renamed into place; the
resume manifest (:mod:`vdsr_deploy.manifest`) records each finished output with its size,
SHA-256 and settings, so a re-run skips complete outputs and redoes the rest. A stop request
(:func:`stop_on_signals`: SIGINT/SIGTERM) or Ctrl-C ends the job cleanly: unfinished outputs
leave no file behind and the summary lists what finished. A file that fails is reported with
its name and the reason and the rest of the batch goes on.
"""

from __future__ import annotations

import glob
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import colour
from vdsr_deploy.backends.base import Runner
from vdsr_deploy.ensemble import ensemble_planes
from vdsr_deploy.errors import (
    ConfigError,
    ImageWriteError,
    InvalidInputError,
    VdsrError,
)
from vdsr_deploy.imageio import (
    DEFAULT_MAX_PIXELS,
    FORMAT_SUFFIX,
    IMAGE_SUFFIXES,
    DecodedImage,
    ImageWriter,
    OutputLayout,
    adapt_channels,
    open_image_writer,
    output_format,
    output_layout,
    probe_image,
    quantize,
    read_image,
    stale_temporaries,
)
from vdsr_deploy.manifest import Manifest, settings_key
from vdsr_deploy.pipeline import FLUSH, Flush, PipelineConfig, upscale_planes
from vdsr_deploy.tiling import Span, plan_axis

EventSink = Callable[[dict[str, Any]], None]
F32 = NDArray[np.float32]
MIB = 1 << 20

__all__ = [
    "DecodedImage",
    "Failure",
    "JobConfig",
    "JobSummary",
    "Note",
    "Skipped",
    "StopRequest",
    "WorkItem",
    "plan_outputs",
    "run_job",
    "stop_on_signals",
]


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
    ``quality``: JPEG/WebP quality; ``model``: identifies weights and runtime for resume.
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


@dataclass(frozen=True)
class Failure:
    source: Path
    reason: str


@dataclass(frozen=True)
class Skipped:
    source: Path
    target: Path
    reason: str


@dataclass(frozen=True)
class Note:
    """Something changed on the way (first frame only, alpha dropped, ...) for one file."""

    source: Path
    message: str


@dataclass
class JobSummary:
    done: list[WorkItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    unfinished: list[WorkItem] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    megapixels_out: float = 0.0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": [{"file": str(i.source), "output": str(i.target)} for i in self.done],
            "skipped": [
                {"file": str(s.source), "output": str(s.target), "reason": s.reason}
                for s in self.skipped
            ],
            "failed": [{"file": str(f.source), "reason": f.reason} for f in self.failed],
            "unfinished": [
                {"file": str(i.source), "output": str(i.target)} for i in self.unfinished
            ],
            "notes": [{"file": str(n.source), "note": n.message} for n in self.notes],
            "megapixels_out": round(self.megapixels_out, 3),
            "seconds": round(self.seconds, 3),
            "megapixels_per_second": round(self.megapixels_out / self.seconds, 4)
            if self.seconds
            else None,
            "interrupted": self.interrupted,
        }


# ---------------------------------------------------------------------------------------------
# Stop requests


@dataclass
class StopRequest:
    """Set by :func:`stop_on_signals`; ``signum`` is the first signal received."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def stop_on_signals(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a stop request for :func:`run_job` (pass ``request.event``).

    The first signal asks the job to stop cleanly; a second one raises KeyboardInterrupt
    (the job still removes its temporary files). Handlers are restored on exit. Outside the
    main thread no handler can be installed and the request is only set by hand.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if request.event.is_set():
            raise KeyboardInterrupt
        request.signum = signum
        request.event.set()

    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield request
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


# ---------------------------------------------------------------------------------------------
# Planning outputs


def _magic_root(spec: str) -> Path:
    parts = Path(spec).parts
    fixed: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def _expand(spec: str, recursive: bool, exclude: Path | None) -> tuple[Path, list[Path]] | None:
    """(root, files) for one input spec; None when nothing matches. ``exclude``: the resolved
    output folder; when it lies inside the input folder its files are never inputs."""
    path = Path(spec)
    if path.is_dir():
        skip = exclude if exclude is not None and path.resolve() in exclude.parents else None
        walker = path.rglob("*") if recursive else path.glob("*")
        files = sorted(
            p
            for p in walker
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not _inside(p.resolve(), skip)
        )
        return path, files
    if path.exists() or not glob.has_magic(spec):
        return (path.parent, [path]) if path.exists() else None
    root = _magic_root(spec)
    skip = exclude if exclude is not None and root.resolve() in exclude.parents else None
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
    files = [p for p in matches if p.is_file() and not _inside(p.resolve(), skip)]
    return (root, files) if files else None


def _default_format(source: Path) -> str:
    suffix = source.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix)
    return name if name in FORMAT_SUFFIX else "png"


def _absolute(path: Path) -> Path:
    """Absolute and normalised, symlinks kept (so files under a root stay under it)."""
    return Path(os.path.abspath(path))


def _common_root(roots: list[Path]) -> Path:
    return Path(os.path.commonpath([str(r) for r in roots])) if roots else Path(".")


def plan_outputs(config: JobConfig) -> tuple[list[WorkItem], list[Failure]]:
    """Map every input to an output path; missing inputs and self-overwrites are failures.

    One input file and an output with an image suffix: that file. Otherwise the output is a
    folder and the input tree is kept under it: relative to the input folder when there is
    one root, else relative to the common ancestor of all inputs (``a/x.png`` and
    ``b/x.png`` -> ``out/a/x.png``, ``out/b/x.png``). Names that would still collide (``x.jpg``
    and ``x.png`` written as PNG) get the source suffix added (``x-jpg.png``). Files inside the
    output folder are never inputs, and no output may replace an input.
    """
    output_folder = config.output if not _is_single_file_output(config.output) else None
    exclude = output_folder.resolve() if output_folder is not None else None
    failures: list[Failure] = []
    found: list[tuple[Path, Path]] = []  # (file, root)
    seen: set[Path] = set()
    for spec in config.inputs:
        expanded = _expand(spec, config.recursive, exclude)
        if expanded is None:
            failures.append(Failure(Path(spec), "no such file, folder, or matching glob"))
            continue
        root, files = expanded
        for file in files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, root))
    inputs = {p.resolve() for p, _ in found}
    single_file = _is_single_file_output(config.output)
    if single_file and len(found) > 1:
        raise ConfigError(
            f"--output {config.output} is a file name but {len(found)} images were found; "
            "give a folder"
        )
    roots = sorted({_absolute(root) for _, root in found})
    base = _common_root(roots)
    planned: list[tuple[int, Path, Path]] = []  # (input order, source, natural target)
    for order, (source, _root) in enumerate(found):
        if single_file:
            planned.append((order, source, config.output))
            continue
        fmt = output_format(source, config.fmt or _default_format(source))
        relative = _absolute(source).relative_to(base)
        planned.append((order, source, config.output / relative.with_suffix(FORMAT_SUFFIX[fmt])))
    # A file whose suffix already matches its output keeps the plain name (x.png -> x.png).
    planned.sort(key=lambda p: (p[2].suffix.lower() != p[1].suffix.lower(), p[0]))
    placed: list[tuple[int, WorkItem]] = []
    taken: dict[Path, Path] = {}
    for order, source, target in planned:
        note = None
        if target.resolve() in taken and not single_file:
            stem = f"{target.stem}-{source.suffix.lstrip('.').lower() or 'file'}"
            candidate = target.with_name(stem + target.suffix)
            counter = 2
            while candidate.resolve() in taken or candidate.resolve() in inputs:
                candidate = target.with_name(f"{stem}-{counter}{target.suffix}")
                counter += 1
            other = taken[target.resolve()]
            note = f"output renamed to {candidate.name}: {target.name} is the output of {other}"
            target = candidate
        resolved = target.resolve()
        if resolved in inputs:
            failures.append(
                Failure(source, f"output {target} would overwrite an input; choose another output")
            )
            continue
        taken[resolved] = source
        placed.append((order, WorkItem(source, target, note)))
    items = [item for _, item in sorted(placed, key=lambda p: p[0])]
    return items, failures


def _is_single_file_output(output: Path) -> bool:
    return output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()


def _manifest_folder(config: JobConfig) -> Path:
    return config.output.parent if _is_single_file_output(config.output) else config.output


# ---------------------------------------------------------------------------------------------
# Running


class _Stopped(Exception):
    """Raised inside the job when a stop was requested."""


class _Budget:
    """Bytes that may be held at once; a request larger than the whole budget waits until
    nothing else is held, then runs alone (so any single image or band can be processed)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._condition = threading.Condition()

    def acquire(self, amount: int, halted: Callable[[], bool]) -> bool:
        with self._condition:
            while self.used and self.used + amount > self.capacity:
                if halted():
                    return False
                self._condition.wait(0.05)
            self.used += amount
            return True

    def release(self, amount: int) -> None:
        with self._condition:
            self.used -= amount
            self._condition.notify_all()


@dataclass
class _Task:
    """One image in progress."""

    item: WorkItem
    replace: bool
    layout: OutputLayout
    bit_depth: int
    out_shape: tuple[int, int]
    spans: list[Span]
    writer: ImageWriter
    next_band: int = 0
    waiting: dict[int, list[NDArray[Any]]] = field(default_factory=dict)
    failed: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Band:
    task: _Task
    index: int
    y: F32  # network input, window rows
    chroma: F32 | None  # core rows
    alpha: F32 | None  # core rows
    core: slice  # core rows within the window
    reserved: int


@dataclass
class _Decoded:
    item: WorkItem
    replace: bool
    reserved: int
    result: Future[DecodedImage] | VdsrError


_END = object()
_POLL = 0.05


class _Job:
    def __init__(
        self, config: JobConfig, runner: Runner, emit: EventSink, stop: threading.Event
    ) -> None:
        self.config = config
        self.runner = runner
        self._emit_sink = emit
        self.stop = stop
        self.halt = threading.Event()  # stop requested, or the job is ending
        self.summary = JobSummary()
        self._lock = threading.Lock()
        memory = config.memory_mb * MIB
        self.input_budget = _Budget(memory // 2)
        self.band_budget = _Budget(memory // 2)
        self.chunk_bytes = max(4 * MIB, memory // 32)
        self.decoded: queue.Queue[object] = queue.Queue(maxsize=config.load_threads + 1)
        self.bands_ready: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
        self.bands: dict[tuple[int, int], _Band] = {}
        self.tasks: list[_Task] = []
        self.settings: str = ""
        self.manifest: Manifest | None = None
        self.started = time.perf_counter()
        self.worker_error: BaseException | None = None

    # -- helpers -----------------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._emit_sink(event)

    def halted(self) -> bool:
        if self.stop.is_set():
            self.halt.set()
        return self.halt.is_set()

    def put(self, target: queue.Queue[object], entry: object) -> bool:
        while True:
            if self.halted():
                return False
            try:
                target.put(entry, timeout=_POLL)
                return True
            except queue.Full:
                continue

    def fail(self, source: Path, reason: str) -> None:
        with self._lock:
            self.summary.failed.append(Failure(source, reason))
            self._emit_sink({"event": "failed", "file": str(source), "reason": reason})

    def note(self, source: Path, message: str) -> None:
        with self._lock:
            self.summary.notes.append(Note(source, message))
            self._emit_sink({"event": "note", "file": str(source), "note": message})

    def fail_task(self, task: _Task, reason: str) -> None:
        with task.lock:
            if task.failed or task.finished:
                return
            task.failed = True
            task.waiting.clear()
            task.writer.abort()
        self.fail(task.item.source, reason)

    # -- planning ----------------------------------------------------------------------------

    def plan(self) -> list[tuple[WorkItem, bool]]:
        config = self.config
        items, failures = plan_outputs(config)
        for failure in failures:
            self.fail(failure.source, failure.reason)
        p = config.pipeline
        self.settings = settings_key(
            {
                "scale": p.scale,
                "runner": self.runner.info.label,
                "model": config.model,
                "quality": config.quality,
                # only when on, so outputs made before the option existed still resume
                **({"ensemble": True} if p.ensemble else {}),
            }
        )
        self.manifest = Manifest(_manifest_folder(config))
        todo: list[tuple[WorkItem, bool]] = []
        for item in items:
            if config.overwrite:
                todo.append((item, True))
                continue
            verdict = self.manifest.verdict(item.target, item.source, self.settings)
            if verdict.state in ("foreign", "other_settings", "complete"):
                with self._lock:
                    self.summary.skipped.append(Skipped(item.source, item.target, verdict.reason))
                    self._emit_sink(
                        {
                            "event": "skipped",
                            "file": str(item.source),
                            "target": str(item.target),
                            "reason": verdict.reason,
                        }
                    )
                continue
            if verdict.reason != "new":
                self.note(item.source, verdict.reason)
            todo.append((item, verdict.replace_existing and item.target.exists()))
        return todo

    # -- stage 1: headers, input budget, decoding --------------------------------------------

    def feed(self, todo: list[tuple[WorkItem, bool]], pool: ThreadPoolExecutor) -> None:
        try:
            for item, replace in todo:
                if self.halted():
                    break
                try:
                    header = probe_image(item.source, max_pixels=self.config.max_pixels)
                except VdsrError as error:
                    if not self.put(self.decoded, _Decoded(item, replace, 0, error)):
                        break
                    continue
                reserved = header.decoded_bytes
                if not self.input_budget.acquire(reserved, self.halted):
                    break
                future = pool.submit(read_image, item.source, max_pixels=self.config.max_pixels)
                if not self.put(self.decoded, _Decoded(item, replace, reserved, future)):
                    future.cancel()
                    self.input_budget.release(reserved)
                    break
        except BaseException as error:  # a bug: end the job with it rather than hang
            self.worker_error = error
            self.halt.set()
        finally:
            self.put(self.decoded, _END)  # when halted, the preparer stops on its own

    # -- stage 2: row bands ------------------------------------------------------------------

    def prepare_all(self) -> None:
        index = 0
        try:
            while True:
                entry = self._get(self.decoded)
                if entry is None or entry is _END:
                    break
                assert isinstance(entry, _Decoded)
                try:
                    self.prepare_image(index, entry)
                finally:
                    self.input_budget.release(entry.reserved)
                index += 1
        except BaseException as error:
            self.worker_error = error
            self.halt.set()
        finally:
            self.put(self.bands_ready, _END)

    def _get(self, source: queue.Queue[object]) -> object | None:
        while True:
            if self.halted():
                return None
            try:
                return source.get(timeout=_POLL)
            except queue.Empty:
                continue

    def _decode_result(self, entry: _Decoded) -> DecodedImage | None:
        source = entry.item.source
        if isinstance(entry.result, VdsrError):
            self.fail(source, _reason(entry.result, source))
            return None
        try:
            return entry.result.result()
        except VdsrError as error:
            self.fail(source, _reason(error, source))
        except MemoryError:
            self.fail(source, "not enough memory to decode it (lower --jobs or --memory-mb)")
        except Exception as error:  # a decoder bug must not stop the batch
            self.fail(source, f"cannot decode ({error!r})")
        return None

    def prepare_image(self, index: int, entry: _Decoded) -> None:
        image = self._decode_result(entry)
        if image is None:
            return
        item, config = entry.item, self.config
        scale = config.pipeline.scale
        out_shape = colour.output_shape(image.height, image.width, scale)
        fmt = output_format(item.target, config.fmt)
        layout = output_layout(fmt, image.channels, image.bit_depth)
        for message in (item.note, *image.notes, *layout.notes):
            if message:
                self.note(item.source, message)
        for stale in stale_temporaries(item.target):
            stale.unlink(missing_ok=True)
        try:
            writer = open_image_writer(
                item.target,
                out_shape[0],
                out_shape[1],
                layout.channels,
                bit_depth=layout.bit_depth,
                fmt=fmt,
                overwrite=entry.replace or config.overwrite,
                quality=config.quality,
                metadata=image.metadata,
            )
        except VdsrError as error:
            self.fail(item.source, str(error))
            return
        for message in writer.notes:
            self.note(item.source, message)
        spans = plan_axis(out_shape[0], config.pipeline.tiling.tile, config.pipeline.tiling.halo)
        task = _Task(item, entry.replace, layout, layout.bit_depth, out_shape, spans, writer)
        with self._lock:
            self.tasks.append(task)
        self.emit(
            {
                "event": "begin",
                "file": str(item.source),
                "target": str(item.target),
                "bands": len(spans),
                "megapixels": out_shape[0] * out_shape[1] / 1e6,
            }
        )
        try:
            self._cut_bands(index, task, image)
        except MemoryError:
            self.fail_task(task, "not enough memory for its bands (lower --memory-mb or --tile)")
        except VdsrError as error:
            self.fail_task(task, _reason(error, item.source))

    def _cut_bands(self, index: int, task: _Task, image: DecodedImage) -> None:
        preparer = colour.RowPreparer(
            image.samples, self.config.pipeline.scale, peak=image.peak, chunk_bytes=self.chunk_bytes
        )
        width = task.out_shape[1]
        per_row = width * (
            8
            + (8 if image.channels >= 3 else 0)
            + (4 if image.has_alpha else 0)
            + task.layout.channels * (2 if task.bit_depth == 16 else 1)
        )
        previous: tuple[int, colour.PreparedImage] | None = None
        for band_index, span in enumerate(task.spans):
            if self.halted() or task.failed:
                return
            reserved = span.length * per_row
            if not self.band_budget.acquire(reserved, self.halted):
                return
            try:
                window = self._window(preparer, span, previous)
            except BaseException:
                self.band_budget.release(reserved)
                raise
            previous = (span.start, window)
            core = slice(span.core_start - span.start, span.core_stop - span.start)
            band = _Band(
                task,
                band_index,
                window.y,
                None if window.chroma is None else window.chroma[core],
                None if window.alpha is None else window.alpha[core],
                core,
                reserved,
            )
            key = (index, band_index)
            with self._lock:
                self.bands[key] = band
            if not self.put(self.bands_ready, (key, window.y)):
                with self._lock:
                    self.bands.pop(key, None)
                self.band_budget.release(reserved)
                return

    @staticmethod
    def _window(
        preparer: colour.RowPreparer, span: Span, previous: tuple[int, colour.PreparedImage] | None
    ) -> colour.PreparedImage:
        """The prepared rows of ``span``'s window, reusing rows shared with the previous window."""
        if previous is None:
            return preparer.rows(span.start, span.stop)
        start, old = previous
        old_stop = start + old.y.shape[0]
        if not start <= span.start < old_stop:
            return preparer.rows(span.start, span.stop)
        keep = slice(span.start - start, None)
        fresh = None if old_stop >= span.stop else preparer.rows(old_stop, span.stop)

        def join(a: F32 | None, b: F32 | None) -> F32 | None:
            if a is None:
                return None
            return np.ascontiguousarray(a[keep]) if b is None else np.concatenate([a[keep], b])

        y = join(old.y, None if fresh is None else fresh.y)
        assert y is not None
        return colour.PreparedImage(
            y,
            join(old.chroma, None if fresh is None else fresh.chroma),
            join(old.alpha, None if fresh is None else fresh.alpha),
        )

    # -- stage 3: inference ------------------------------------------------------------------

    def planes(self) -> Iterator[tuple[tuple[int, int], F32] | Flush]:
        while True:
            try:
                entry = self.bands_ready.get_nowait()
            except queue.Empty:
                yield FLUSH  # nothing ready: run what waits for a full batch now
                entry = None
                while entry is None:
                    if self.halted():
                        raise _Stopped from None
                    try:
                        entry = self.bands_ready.get(timeout=_POLL)
                    except queue.Empty:
                        continue
            if entry is _END:
                if self.worker_error is not None:
                    raise self.worker_error
                return
            if self.halted():
                raise _Stopped
            key, plane = entry  # type: ignore[misc]
            band = self.bands.get(key)
            if band is None or band.task.failed:
                self._drop(key)
                continue
            yield key, plane

    def _drop(self, key: tuple[int, int]) -> None:
        with self._lock:
            band = self.bands.pop(key, None)
        if band is not None:
            self.band_budget.release(band.reserved)

    # -- stage 4: saving ---------------------------------------------------------------------

    def save(self, key: tuple[int, int], y: F32) -> None:
        with self._lock:
            band = self.bands.pop(key)
        task = band.task
        try:
            if task.failed or self.halted():
                return
            rows = self._finish_rows(band, y)
            self.emit(
                {
                    "event": "band",
                    "file": str(task.item.source),
                    "band": band.index + 1,
                    "bands": len(task.spans),
                }
            )
            self._write_in_order(task, band.index, rows)
        except VdsrError as error:
            self.fail_task(task, str(error))
        except MemoryError:
            self.fail_task(task, "not enough memory to encode it (lower --memory-mb or --jobs)")
        except Exception as error:  # an encoder bug must not stop the batch
            self.fail_task(task, f"cannot write ({error!r})")
        finally:
            self.band_budget.release(band.reserved)

    def _finish_rows(self, band: _Band, y: F32) -> list[NDArray[Any]]:
        y_in = band.y[band.core]
        y_out = y[band.core]
        rows, width = y_in.shape
        channels = 1 + (2 if band.chroma is not None else 0) + (1 if band.alpha is not None else 0)
        step = max(2, self.chunk_bytes // max(1, width * channels * 8 * 4))
        pieces: list[NDArray[Any]] = []
        for start in range(0, rows, step):
            part = slice(start, start + step)
            prepared = colour.PreparedImage(
                y_in[part],
                None if band.chroma is None else band.chroma[part],
                None if band.alpha is None else band.alpha[part],
            )
            pixels = colour.finish(prepared, y_out[part])
            pieces.append(
                adapt_channels(quantize(pixels, band.task.bit_depth), band.task.layout.channels)
            )
        return pieces

    def _write_in_order(self, task: _Task, index: int, rows: list[NDArray[Any]]) -> None:
        with task.lock:
            if task.failed:
                return
            task.waiting[index] = rows
            while task.next_band in task.waiting:
                for piece in task.waiting.pop(task.next_band):
                    task.writer.write_rows(piece)
                task.next_band += 1
            complete = task.next_band == len(task.spans)
            if not complete:
                return
            digest = task.writer.finish()
            assert self.manifest is not None
            self.manifest.record(task.item.target, digest, task.item.source, self.settings)
            task.writer.publish()
            task.finished = True
        megapixels = task.out_shape[0] * task.out_shape[1] / 1e6
        with self._lock:
            self.summary.done.append(task.item)
            self.summary.megapixels_out += megapixels
            elapsed = time.perf_counter() - self.started
            self._emit_sink(
                {
                    "event": "done",
                    "file": str(task.item.source),
                    "target": str(task.item.target),
                    "megapixels": megapixels,
                    "megapixels_per_second": self.summary.megapixels_out / elapsed
                    if elapsed
                    else 0.0,
                }
            )

    # -- the whole job -----------------------------------------------------------------------

    def run(self) -> JobSummary:
        todo = self.plan()
        self.emit({"event": "start", "total": len(todo), "skipped": len(self.summary.skipped)})
        self.started = time.perf_counter()
        config = self.config
        p = config.pipeline
        fatal: BaseException | None = None
        decoders = ThreadPoolExecutor(config.load_threads, thread_name_prefix="vdsr-decode")
        savers = ThreadPoolExecutor(config.save_threads, thread_name_prefix="vdsr-save")
        feeder = threading.Thread(
            target=self.feed, args=(todo, decoders), name="vdsr-feed", daemon=True
        )
        preparer = threading.Thread(target=self.prepare_all, name="vdsr-prepare", daemon=True)
        writes: list[Future[None]] = []
        try:
            if self.halted():
                raise _Stopped
            feeder.start()
            preparer.start()
            run_planes = ensemble_planes if p.ensemble else upscale_planes
            results = run_planes(
                self.planes(),
                self.runner,
                p.tiling,
                batch=p.batch,
                max_images_in_flight=p.max_images_in_flight,
            )
            for key, y in results:
                writes.append(savers.submit(self.save, key, y))
                while len(writes) > config.save_threads * 2:
                    writes.pop(0).result()
                if self.halted():
                    raise _Stopped
            for write in writes:
                write.result()
        except _Stopped:
            pass
        except KeyboardInterrupt:
            self.stop.set()
        except BaseException as error:
            fatal = error
        finally:
            self.halt.set()
            savers.shutdown(wait=True)
            for thread in (feeder, preparer):
                if thread.is_alive():
                    thread.join()
            decoders.shutdown(wait=True, cancel_futures=True)
            self._close(todo)
        if fatal is not None:
            raise fatal
        if self.worker_error is not None and not self.stop.is_set():
            raise self.worker_error
        return self.summary

    def _close(self, todo: list[tuple[WorkItem, bool]]) -> None:
        for task in self.tasks:
            with task.lock:
                if not task.finished:
                    task.writer.abort()
        self.summary.interrupted = self.stop.is_set()
        finished = {item.source for item in self.summary.done} | {
            f.source for f in self.summary.failed
        }
        self.summary.unfinished = [item for item, _ in todo if item.source not in finished]
        self.summary.seconds = time.perf_counter() - self.started
        self.emit({"event": "finished", **self.summary.to_dict()})


def run_job(
    config: JobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
) -> JobSummary:
    """Upscale every input; the runner must be active. Returns what was done, skipped and failed.

    ``on_event`` receives dicts (``start``, ``skipped``, ``note``, ``begin``, ``band``,
    ``done``, ``failed``, ``finished``), one at a time, possibly from worker threads. Setting
    ``stop`` (see :func:`stop_on_signals`) or Ctrl-C ends the job cleanly with
    ``summary.interrupted``. Per-file problems are failures in the summary; a runner error
    ends the job (after cleaning up) and is raised.
    """
    job = _Job(config, runner, on_event or (lambda event: None), stop or threading.Event())
    return job.run()


def _reason(error: BaseException, source: Path) -> str:
    text = str(error)
    prefix = f"{source}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
