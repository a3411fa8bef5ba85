"""One cluster worker: opens one runner once and runs the batch pipeline on its share.

:class:`UpscaleWorker` is a plain class (testable without Ray); the driver wraps it with
``ray.remote`` and places one per GPU, or several fractional-CPU ones on CPU nodes. A call
to :meth:`UpscaleWorker.process` gets a few planned items (source, final target, format)
and:

1. stages each input in a private scratch folder (a symlink to the source; for a URI, a
   download through its pyarrow filesystem: :mod:`vdsr_deploy.job.remote`);
2. runs :func:`vdsr_deploy.job.local.run_local_job` on them (decode, bands, tiles, batches, colour,
   encode: the same code, settings and bad-input handling as ``vdsr upscale``), writing to
   the scratch folder;
3. copies each finished output next to its target as ``.<name>.<owner>.<random>.part``,
   fsynced (for a URI target: uploaded to that temporary key in one output stream), and
   returns its size and SHA-256. ``<owner>`` is the driver's PID, not the worker's: the
   single-machine writer's name pattern, so a job on the driver's host keeps these as a live
   job's temporaries (:func:`vdsr_deploy.imageio.stale_temporaries`) while the driver, their
   owner, removes those of unfinished outputs when it ends (workers die with their driver).

It never renames onto a target and never touches the manifest: the driver records the
output and renames the temporary into place, in that order (as one process does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ImageReadError
from vdsr_deploy.fileops import pid_alive
from vdsr_deploy.imageio import FORMAT_SUFFIX, TEMP_SUFFIX, file_digest
from vdsr_deploy.job.config import JobConfig
from vdsr_deploy.job.local import run_local_job
from vdsr_deploy.job.remote import RemotePath, download, location, upload_temporary, use_filesystems
from vdsr_deploy.job.report import JobSummary
from vdsr_deploy.runner import Runner

RunnerFactory = Callable[[], Runner]
SCRATCH_PREFIX = "vdsr-cluster-"


@dataclass(frozen=True)
class WorkerTask:
    """One planned output: ``index`` in the driver's plan, absolute paths, output format."""

    index: int
    source: str
    target: str
    fmt: str


@dataclass(frozen=True)
class ItemResult:
    """What became of one task: ``done`` (``temporary`` holds the complete output, ``size``
    and ``sha256`` describe it), ``failed`` (``reason``) or ``unfinished`` (stopped)."""

    index: int
    state: str
    reason: str = ""
    notes: tuple[str, ...] = ()
    temporary: str = ""
    size: int = 0
    sha256: str = ""
    megapixels: float = 0.0


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs."""

    worker: int
    node_id: str
    node_ip: str
    pid: int
    gpu_ids: tuple[str, ...]


@dataclass(frozen=True)
class ChunkResult:
    worker: WorkerInfo
    items: tuple[ItemResult, ...]
    seconds: float


class UpscaleWorker:
    """Holds one open runner for its lifetime; ``process`` may be called many times.

    ``job``: the user's job settings (its inputs/output are replaced per call);
    ``open_runner``: returns an inactive runner (the project's runner factory, called once);
    ``owner``: the PID named in its temporaries (the driver's; default this process's).
    """

    def __init__(
        self,
        worker: int,
        job: JobConfig,
        open_runner: RunnerFactory,
        filesystems: dict[str, Any] | None = None,
        *,
        stop: threading.Event | None = None,
        owner: int = 0,
    ) -> None:
        self.worker = worker
        self.owner = owner or os.getpid()
        self.job = job
        self._open_runner = open_runner
        self._runner: Runner | None = None
        self._stop = stop or threading.Event()
        use_filesystems(filesystems or {})  # the driver's registered URI filesystems
        self._remove_dead_scratch()

    def ready(self) -> WorkerInfo:
        """Where this worker runs (answers as soon as the worker is placed)."""
        node_id, node_ip, gpu_ids = _placement()
        return WorkerInfo(self.worker, node_id, node_ip, os.getpid(), gpu_ids)

    def open(self) -> str:
        """Open the runner (once); returns its label (part of the resume settings)."""
        if self._runner is None:
            runner = self._open_runner()
            runner.__enter__()
            self._runner = runner
        return self._runner.info.label

    def adopt(self, runner: Runner) -> None:
        """Use an already open runner (its owner closes it): a job run in-process."""
        self._runner = runner

    def stop(self) -> None:
        """Ask the call in progress to stop cleanly (runs beside it: a threaded actor)."""
        self._stop.set()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.__exit__(None, None, None)
            self._runner = None

    def process(self, tasks: list[WorkerTask]) -> ChunkResult:
        started = time.perf_counter()
        self.open()
        assert self._runner is not None
        scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        try:
            results: list[ItemResult] = []
            for fmt in sorted({task.fmt for task in tasks}):
                group = [task for task in tasks if task.fmt == fmt]
                results += self._run_group(scratch / fmt, group, fmt, self._runner)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return ChunkResult(self.ready(), tuple(results), time.perf_counter() - started)

    def _run_group(self, scratch: Path, tasks: list[WorkerTask], fmt: str, runner: Runner) -> list[ItemResult]:
        staged: dict[Path, WorkerTask] = {}
        (scratch / "in").mkdir(parents=True)
        failed: list[ItemResult] = []
        for task in tasks:
            source = location(task.source)
            link = scratch / "in" / f"{task.index}{source.suffix}"
            if isinstance(source, RemotePath):
                try:
                    download(source, link)
                except ImageReadError as error:
                    failed.append(ItemResult(task.index, "failed", _unstage(str(error), link, task)))
                    continue
            else:
                os.symlink(os.path.abspath(task.source), link)
            staged[link] = task
        if not staged:
            return failed
        config = dataclasses.replace(
            self.job,
            inputs=tuple(str(path) for path in staged),
            output=scratch / "out",
            fmt=fmt,
            overwrite=True,
        )
        megapixels: dict[str, float] = {}

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "done":
                megapixels[event["file"]] = event["megapixels"]

        summary = run_local_job(config, runner, on_event, stop=self._stop)
        return failed + [
            self._result(link, task, summary, megapixels.get(str(link), 0.0), scratch) for link, task in staged.items()
        ]

    def _result(
        self, link: Path, task: WorkerTask, summary: JobSummary, megapixels: float, scratch: Path
    ) -> ItemResult:
        notes = tuple(_unstage(note.message, link, task) for note in summary.notes if note.source == link)
        for failure in summary.failed:
            if failure.source == link:
                return ItemResult(task.index, "failed", _unstage(failure.reason, link, task), notes)
        made = scratch / "out" / f"{task.index}{FORMAT_SUFFIX[task.fmt]}"
        if not any(item.source == link for item in summary.done):
            return ItemResult(task.index, "unfinished", "stopped", notes)
        target = location(task.target)
        try:
            if isinstance(target, RemotePath):
                temporary: Path = upload_temporary(made, target, self.owner)
                digest = file_digest(made)  # the bytes just uploaded, complete: the stream closed
            else:
                temporary = _deliver(made, target, self.owner)
                digest = file_digest(temporary)
        except OSError as error:
            reason = f"{task.target}: cannot write ({error.strerror or error})"
            return ItemResult(task.index, "failed", reason, notes)
        return ItemResult(task.index, "done", "", notes, str(temporary), digest.size, digest.sha256, megapixels)

    @staticmethod
    def _remove_dead_scratch() -> None:
        """Scratch folders of workers on this node that were killed (their pid is gone)."""
        for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
            pid = folder.name[len(SCRATCH_PREFIX) :].split("-")[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def _deliver(made: Path, target: Path, owner: int) -> Path:
    """Copy ``made`` to a fsynced temporary next to ``target`` named after ``owner`` (a PID);
    returns the temporary."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.{owner}.", suffix=TEMP_SUFFIX, dir=target.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out, made.open("rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(made, temporary)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _unstage(text: str, link: Path, task: WorkerTask) -> str:
    """A message about the staged copy, told about the user's file."""
    return text.replace(str(link), task.source)




def _placement() -> tuple[str, str, tuple[str, ...]]:
    """(node id, node IP, GPU ids) inside a Ray worker; placeholders outside one."""
    with contextlib.suppress(Exception):
        import ray

        if ray.is_initialized():
            context = ray.get_runtime_context()
            gpus = tuple(str(g) for g in context.get_accelerator_ids().get("GPU", []))
            return context.get_node_id(), ray.util.get_node_ip_address(), gpus  # type: ignore[no-untyped-call]
    return "local", "127.0.0.1", ()
