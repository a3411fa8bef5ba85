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

Never losing work: one job at a time writes to an output folder (:mod:`vdsr_deploy.joblock`);
outputs are written to a temporary file and renamed into place; the resume manifest
(:mod:`vdsr_deploy.manifest`) records each finished output with its size, SHA-256 and
settings, so a re-run skips complete outputs and redoes the rest. A stop request
(:func:`stop_on_signals`: SIGINT/SIGTERM) or Ctrl-C ends the job cleanly: unfinished outputs
leave no file behind and the summary lists what finished. A file that fails is reported with
its name and the reason and the rest of the batch goes on.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import queue
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import colour
from vdsr_deploy.backends.base import Runner, RunnerInfo
from vdsr_deploy.device_pipeline import Band, DeviceUpscaler, use_device_path
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
    not_regular_reason,
    open_image_writer,
    output_format,
    output_layout,
    probe_image,
    quantize,
    read_image,
    remove_live_temporaries,
    stale_temporaries,
)
from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.joblock import JobLock, release_all
from vdsr_deploy.manifest import Manifest, settings_key
from vdsr_deploy.pipeline import FLUSH, Flush, PipelineConfig, upscale_planes
from vdsr_deploy.remote import RemotePath, glob_files, is_uri, location, uses_uris
from vdsr_deploy.tiling import Span, plan_axis

if TYPE_CHECKING:
    import torch

EventSink = Callable[[dict[str, Any]], None]
F32 = NDArray[np.float32]
MIB = 1 << 20

__all__ = [
    "DecodedImage",
    "Failure",
    "JobConfig",
    "JobSummary",
    "Note",
    "ResumePlan",
    "Skipped",
    "StopRequest",
    "WorkItem",
    "exit_at_once",
    "plan_job",
    "plan_outputs",
    "plan_resume",
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
    """Not processed: its output is complete or not ours (``target``), or the entry found
    while walking a folder is not a readable file (``target`` None: a FIFO, a broken link)."""

    source: Path
    target: Path | None
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
                {
                    "file": str(s.source),
                    "output": None if s.target is None else str(s.target),
                    "reason": s.reason,
                }
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


def exit_at_once(signum: int) -> None:
    """End the process now: remove this process's temporary output files, release its job
    locks, exit with 128 + ``signum``. Completed outputs and their manifest records stay."""

    def release_and_exit() -> None:
        release_all()
        os._exit(128 + signum)

    remove_live_temporaries(then=release_and_exit)


class _SignalWatcher:
    """Counts signals on a thread of its own, woken by :func:`signal.set_wakeup_fd`.

    The wake-up byte is written by the C-level handler the moment a signal arrives, so the
    watcher acts even while the main thread is inside a long runner, decode or encode call
    (Python-level handlers only run between the main thread's bytecodes).
    """

    def __init__(self, request: StopRequest, signals: tuple[int, ...]) -> None:
        self.request = request
        self.signals = signals
        self.count = 0
        self._lock = threading.Lock()
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._thread = threading.Thread(target=self._watch, name="vdsr-signals", daemon=True)

    def __enter__(self) -> _SignalWatcher:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()
        self._thread.join()
        self._reader.close()

    def received(self, signum: int) -> None:
        if signum not in self.signals:
            return
        with self._lock:
            self.count += 1
            first = self.count == 1
            if first:
                self.request.signum = signum
        if first:
            self.request.event.set()
        else:
            exit_at_once(self.request.signum or signum)

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                self.received(signum)


@contextmanager
def stop_on_signals(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a stop request for :func:`run_job` (pass ``request.event``).

    The first signal sets the request at once (from a watcher thread, whatever the main
    thread is doing); the job then stops, interrupting the runner call in flight where the
    runtime allows it (:meth:`Runner.interrupt`). A second signal exits the process at once
    (:func:`exit_at_once`: temporary files removed, locks released, exit code 128 + the
    first signal; no summary). Handlers are restored on exit. Outside the main thread no
    handler can be installed and the request is only set by hand.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        """Nothing to do here: the watcher thread acts on the wake-up byte."""

    with _SignalWatcher(request, signals):
        previous = {number: signal.signal(number, handler) for number in signals}
        try:
            yield request
        finally:
            for number, old in previous.items():
                signal.signal(number, old)


# ---------------------------------------------------------------------------------------------
# Planning outputs


def _magic_root(spec: str) -> Path:
    path = location(spec)
    fixed: list[str] = []
    for part in path.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return type(path)(*fixed) if fixed else Path(".")


def _glob(spec: str) -> list[Path]:
    if is_uri(spec):
        return glob_files(spec)
    return sorted(Path(p) for p in glob.glob(spec, recursive=True))


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def walk_skip_reason(path: Path) -> str | None:
    """Why an image-named entry met while walking a folder or expanding a glob is not an
    input (None: a regular file, or a folder, which the walk enters)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken link (its target does not exist)" if path.is_symlink() else None
    except OSError as error:
        if path.is_symlink():
            return f"link that cannot be followed ({error.strerror or error})"
        return f"cannot be read ({error.strerror or error})"
    return None if stat.S_ISDIR(mode) else not_regular_reason(mode)


@dataclass(frozen=True)
class _Expanded:
    root: Path
    files: list[Path]
    skipped: list[tuple[Path, str]]


def _expand(spec: str, recursive: bool, exclude: Path | None) -> _Expanded | None:
    """Files of one input spec; None when nothing matches. ``exclude``: the resolved output
    folder; when it lies inside the input folder its files are never inputs. Image-named
    entries that are not regular files (FIFOs, devices, broken links) are ``skipped``. A URI
    (``s3://bucket/scans``) is listed through its filesystem (:mod:`vdsr_deploy.remote`)."""
    path = location(spec)
    if path.is_dir():
        skip = exclude if exclude is not None and path.resolve() in exclude.parents else None
        walker = path.rglob("*") if recursive else path.glob("*")
        candidates = sorted(p for p in walker if p.suffix.lower() in IMAGE_SUFFIXES)
        return _sort_entries(path, candidates, skip)
    if path.exists() or path.is_symlink() or not glob.has_magic(spec):
        exists = path.exists() or path.is_symlink()
        return _Expanded(path.parent, [path], []) if exists else None
    root = _magic_root(spec)
    skip = exclude if exclude is not None and root.resolve() in exclude.parents else None
    matches = _glob(spec)
    expanded = _sort_entries(root, matches, skip)
    return expanded if expanded.files or expanded.skipped else None


def _sort_entries(root: Path, entries: list[Path], exclude: Path | None) -> _Expanded:
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for entry in entries:
        reason = walk_skip_reason(entry)
        if reason is not None:
            skipped.append((entry, reason))
        elif entry.is_file() and not _inside(entry.resolve(), exclude):
            files.append(entry)
    return _Expanded(root, files, skipped)


def _default_format(source: Path) -> str:
    suffix = source.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix)
    return name if name in FORMAT_SUFFIX else "png"


def _absolute(path: Path) -> Path:
    """Absolute and normalised, symlinks kept (so files under a root stay under it)."""
    return path if isinstance(path, RemotePath) else Path(os.path.abspath(path))


def _common_root(roots: list[Path]) -> Path:
    if not roots:
        return Path(".")
    if not any(isinstance(r, RemotePath) for r in roots):
        return Path(os.path.commonpath([str(r) for r in roots]))
    common = list(roots[0].parts)
    for root in roots[1:]:
        same = 0
        while same < min(len(common), len(root.parts)) and common[same] == root.parts[same]:
            same += 1
        del common[same:]
    if len(common) < 1 or not all(type(r) is type(roots[0]) for r in roots):
        raise ConfigError("inputs are on different filesystems; upscale each in its own run")
    return type(roots[0])(*common)


def plan_outputs(config: JobConfig) -> tuple[list[WorkItem], list[Failure]]:
    """Map every input to an output path; missing inputs and self-overwrites are failures.
    (:func:`plan_job` also returns the entries skipped while walking folders.)"""
    items, failures, _ = plan_job(config)
    return items, failures


def plan_job(config: JobConfig) -> tuple[list[WorkItem], list[Failure], list[Skipped]]:
    """Map every input to an output path; missing inputs and self-overwrites are failures,
    image-named folder entries that are not regular files are skipped (with the reason).

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
    walk_skipped: list[Skipped] = []
    found: list[tuple[Path, Path]] = []  # (file, root)
    seen: set[Path] = set()
    for spec in config.inputs:
        expanded = _expand(spec, config.recursive, exclude)
        if expanded is None:
            failures.append(Failure(location(spec), "no such file, folder, or matching glob"))
            continue
        walk_skipped.extend(Skipped(entry, None, reason) for entry, reason in expanded.skipped)
        for file in expanded.files:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                found.append((file, expanded.root))
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
    return items, failures, walk_skipped


def _is_single_file_output(output: Path) -> bool:
    return output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()


def _manifest_folder(config: JobConfig) -> Path:
    return config.output.parent if _is_single_file_output(config.output) else config.output


@dataclass
class ResumePlan:
    """What a job will do, decided before any pixel is read: ``todo`` (item, whether it may
    replace an existing output), what is ``skipped`` or ``failed`` and why, ``notes`` (why an
    output is redone), the ``settings`` key outputs are recorded under, and the manifest."""

    todo: list[tuple[WorkItem, bool]]
    skipped: list[Skipped]
    failed: list[Failure]
    notes: list[Note]
    settings: str
    manifest: Manifest


def plan_resume(
    config: JobConfig, runner_label: str, *, halted: Callable[[], bool] | None = None
) -> ResumePlan:
    """:func:`plan_job` checked against the resume manifest (see docs/batch.md). Checking
    an output hashes it: once ``halted()`` the rest is left in ``todo`` unchecked (a
    stopped job lists it as unfinished)."""
    items, failures, walk_skipped = plan_job(config)
    p = config.pipeline
    settings = settings_key(
        {
            "scale": p.scale,
            "runner": runner_label,
            "model": config.model,
            "quality": config.quality,
            # only when on, so outputs made before the option existed still resume
            **({"ensemble": True} if p.ensemble else {}),
        }
    )
    plan = ResumePlan([], walk_skipped, failures, [], settings, Manifest(_manifest_folder(config)))
    for position, item in enumerate(items):
        if config.overwrite:
            plan.todo.append((item, True))
            continue
        if halted is not None and halted():
            plan.todo.extend((rest, False) for rest in items[position:])
            break
        verdict = plan.manifest.verdict(item.target, item.source, settings)
        if verdict.state in ("foreign", "other_settings", "complete"):
            plan.skipped.append(Skipped(item.source, item.target, verdict.reason))
            continue
        if verdict.reason != "new":
            plan.notes.append(Note(item.source, verdict.reason))
        plan.todo.append((item, verdict.replace_existing and item.target.exists()))
    return plan


# ---------------------------------------------------------------------------------------------
# Running


class _Stopped(Exception):
    """Raised inside the job when a stop was requested."""


class _StopCheckingRunner(Runner):
    """The job's runner, checking for a stop request before every call: the tiles of one
    big image take many calls, and a stopped job drops that image anyway."""

    def __init__(self, runner: Runner, halted: Callable[[], bool]) -> None:
        super().__init__()
        self._runner = runner
        self._halted = halted

    @property
    def info(self) -> RunnerInfo:
        return self._runner.info

    @property
    def profile(self) -> ShapeProfile | None:
        return self._runner.profile

    @property
    def tensor_device(self) -> str:
        return self._runner.tensor_device

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if self._halted():
            raise _Stopped
        try:
            return self._runner.infer(batch)
        except Exception:
            if self._halted():  # interrupted by the stop (Runner.interrupt)
                raise _Stopped from None
            raise

    def infer_tensor(
        self, batch: torch.Tensor, *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        if self._halted():
            raise _Stopped
        try:
            return self._runner.infer_tensor(batch, stream=stream)
        except Exception:
            if self._halted():
                raise _Stopped from None
            raise

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._runner.infer(batch)


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


@dataclass
class _DevicePath:
    """The device path's upscaler and its writer threads (None: the host path runs)."""

    upscaler: DeviceUpscaler
    writes: ThreadPoolExecutor

    @staticmethod
    def select(runner: Runner, config: JobConfig, wanted: bool | None) -> _DevicePath | None:
        """``wanted`` None: the device path when the runner computes on a CUDA device (on the
        CPU the host path is faster, measured in benchmarks/pipeline_overhead.py)."""
        use = use_device_path(runner) if wanted is None else wanted
        if not use or config.pipeline.ensemble:  # the x8 ensemble wraps the host plane pipeline
            return None
        writes = ThreadPoolExecutor(config.save_threads, thread_name_prefix="vdsr-device-save")
        return _DevicePath(DeviceUpscaler(runner, config.pipeline), writes)


class _Job:
    def __init__(
        self,
        config: JobConfig,
        runner: Runner,
        emit: EventSink,
        stop: threading.Event,
        device_path: bool | None = None,
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
        # the device path calls the runner from its own loop: it gets the stop-checking runner
        self.device = _DevicePath.select(
            _StopCheckingRunner(runner, self.halted), config, device_path
        )

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

    def skip(self, skipped: Skipped) -> None:
        with self._lock:
            self.summary.skipped.append(skipped)
            self._emit_sink(
                {
                    "event": "skipped",
                    "file": str(skipped.source),
                    "target": None if skipped.target is None else str(skipped.target),
                    "reason": skipped.reason,
                }
            )

    def plan(self) -> list[tuple[WorkItem, bool]]:
        plan = plan_resume(self.config, self.runner.info.label, halted=self.halted)
        self.settings, self.manifest = plan.settings, plan.manifest
        for failure in plan.failed:
            self.fail(failure.source, failure.reason)
        for skipped in plan.skipped:
            self.skip(skipped)
        for note in plan.notes:
            self.note(note.source, note.message)
        return plan.todo

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
            if self.device is not None:
                self.device.writes.shutdown(wait=True)
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
            self.fail(source, f"cannot decode ({describe_error(error)})")
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
            if self.device is not None:
                self._device_bands(task, image)
            else:
                self._cut_bands(index, task, image)
        except _Stopped:
            return  # the job is stopping: the image is dropped (its writer aborted at the end)
        except MemoryError:
            self.fail_task(task, "not enough memory for its bands (lower --memory-mb or --tile)")
        except VdsrError as error:
            self.fail_task(task, _reason(error, item.source))

    def _device_bands(self, task: _Task, image: DecodedImage) -> None:
        """The device path (:mod:`vdsr_deploy.device_pipeline`): bands computed on the runner's
        device, downloaded as final samples and written by the device path's writers."""
        assert self.device is not None
        held: list[int] = []

        def wait(nbytes: int) -> None:
            held.append(nbytes if self.band_budget.acquire(nbytes, self.halted) else 0)

        self.device.upscaler.on_note = lambda message: self.note(task.item.source, message)
        for band in self.device.upscaler.bands(image.samples, bit_depth=task.bit_depth, wait=wait):
            reserved = held.pop()
            if self.halted() or task.failed:
                self.band_budget.release(reserved)
                return
            self.device.writes.submit(self._device_write, task, band, reserved)

    def _device_write(self, task: _Task, band: Band, reserved: int) -> None:
        try:
            rows = adapt_channels(band.pixels.result(), task.layout.channels)
            if not (task.failed or self.halted()):
                self._write_in_order(task, band.index, [rows])
        except VdsrError as error:
            self.fail_task(task, str(error))
        except Exception as error:  # an encoder bug must not stop the batch
            self.fail_task(task, f"cannot write ({describe_error(error)})")
        finally:
            self.band_budget.release(reserved)

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
            self.fail_task(task, f"cannot write ({describe_error(error)})")
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
            if not complete or self.halted():  # a stopped job drops images in progress
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

    def interrupt_runner_on_stop(self) -> None:
        """Interrupt the runner call in flight when a stop is requested (ends with the job)."""
        while not self.stop.wait(_POLL):
            if self.halt.is_set():
                return
        self.runner.interrupt()

    def run(self) -> JobSummary:
        """The whole job, holding the output folder's lock (one job per folder)."""
        with JobLock(_manifest_folder(self.config)):
            return self._run()

    def _run(self) -> JobSummary:
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
        interrupter = threading.Thread(
            target=self.interrupt_runner_on_stop, name="vdsr-interrupt", daemon=True
        )
        writes: list[Future[None]] = []
        try:
            if self.halted():
                raise _Stopped
            feeder.start()
            preparer.start()
            interrupter.start()
            run_planes = ensemble_planes if p.ensemble else upscale_planes
            results = run_planes(
                self.planes(),
                _StopCheckingRunner(self.runner, self.halted),
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
            for thread in (feeder, preparer, interrupter):
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
    device_path: bool | None = None,
) -> JobSummary:
    """Upscale every input; the runner must be active. Returns what was done, skipped and failed.

    ``on_event`` receives dicts (``start``, ``skipped``, ``note``, ``begin``, ``band``,
    ``done``, ``failed``, ``finished``), one at a time, possibly from worker threads. Setting
    ``stop`` (see :func:`stop_on_signals`) or Ctrl-C ends the job cleanly with
    ``summary.interrupted``. ``device_path``: prepare, run and finish every band on the
    runner's device (:mod:`vdsr_deploy.device_pipeline`); None picks it when the runner
    computes on CUDA. Per-file problems are failures in the summary; a runner error
    ends the job (after cleaning up) and is raised. Inputs or output named by URIs
    (``s3://...``) run staged through local scratch files (:mod:`vdsr_deploy.remote`).
    """
    if not config.model:  # the caller named no model: the files the runner was opened from
        config = dataclasses.replace(config, model=runner.model_identity)
    if uses_uris(config.inputs, config.output):
        from vdsr_deploy.cluster.driver import run_staged_job

        return run_staged_job(config, runner, on_event, stop=stop)
    job = _Job(config, runner, on_event or (lambda event: None), stop or threading.Event(), device_path)
    return job.run()


def describe_error(error: BaseException) -> str:
    """An exception as words for a user: the OS's sentence for OSErrors, else its text,
    never a repr (``FileNotFoundError(2, ...)``)."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {Path(error.filename).name}" if error.filename else ""
        return f"{error.strerror}{where}"
    text = str(error).strip()
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind


def _reason(error: BaseException, source: Path) -> str:
    text = str(error)
    prefix = f"{source}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
