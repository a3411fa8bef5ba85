"""What a job did: the result records (:class:`JobSummary` and its failures, skips and
notes) and the :class:`Recorder` that fills the summary and emits the matching events, one
at a time, from whichever thread reports. Errors become words for a user here
(:func:`describe_error`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.fileops import atomic_write_bytes
from vdsr_deploy.job.config import WorkItem

EventSink = Callable[[dict[str, Any]], None]


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


class Recorder:
    """The job's summary and event stream: each method records one outcome and emits its
    event (``start``, ``skipped``, ``note``, ``begin``, ``band``, ``done``, ``failed``,
    ``finished``) under one lock, so the sink sees one event at a time."""

    def __init__(self, sink: EventSink) -> None:
        self.summary = JobSummary()
        self._sink = sink
        self._lock = threading.Lock()
        self._started = time.perf_counter()

    def emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._sink(event)

    def start(self, total: int) -> None:
        """The work is planned: ``total`` files to do; the clock starts now."""
        self.emit({"event": "start", "total": total, "skipped": len(self.summary.skipped)})
        self._started = time.perf_counter()

    def fail(self, source: Path, reason: str) -> None:
        with self._lock:
            self.summary.failed.append(Failure(source, reason))
            self._sink({"event": "failed", "file": str(source), "reason": reason})

    def note(self, source: Path, message: str) -> None:
        with self._lock:
            self.summary.notes.append(Note(source, message))
            self._sink({"event": "note", "file": str(source), "note": message})

    def skip(self, skipped: Skipped) -> None:
        with self._lock:
            self.summary.skipped.append(skipped)
            self._sink(
                {
                    "event": "skipped",
                    "file": str(skipped.source),
                    "target": None if skipped.target is None else str(skipped.target),
                    "reason": skipped.reason,
                }
            )

    def done(self, item: WorkItem, megapixels: float) -> None:
        with self._lock:
            self.summary.done.append(item)
            self.summary.megapixels_out += megapixels
            elapsed = time.perf_counter() - self._started
            self._sink(
                {
                    "event": "done",
                    "file": str(item.source),
                    "target": str(item.target),
                    "megapixels": megapixels,
                    "megapixels_per_second": self.summary.megapixels_out / elapsed
                    if elapsed
                    else 0.0,
                }
            )

    def finish(self, todo: list[WorkItem], *, interrupted: bool) -> JobSummary:
        """Close the summary: what of ``todo`` neither finished nor failed is unfinished."""
        summary = self.summary
        summary.interrupted = interrupted
        finished = {item.source for item in summary.done} | {f.source for f in summary.failed}
        summary.unfinished = [item for item in todo if item.source not in finished]
        summary.seconds = time.perf_counter() - self._started
        self.emit({"event": "finished", **summary.to_dict()})
        return summary


def describe_error(error: BaseException) -> str:
    """An exception as words for a user: the OS's sentence for OSErrors, else its text,
    never a repr (``FileNotFoundError(2, ...)``)."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {Path(error.filename).name}" if error.filename else ""
        return f"{error.strerror}{where}"
    text = str(error).strip()
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind


def failure_reason(error: BaseException, source: Path) -> str:
    """``error``'s text without a leading ``source: `` (the summary names the file)."""
    text = str(error)
    prefix = f"{source}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


REPORT_KEYS = ("done", "skipped", "failed", "exit_code")


def check_report_path(path: Path) -> None:
    """Refuse, before a job starts, a ``--report`` path whose file a report would destroy:
    a folder, or an existing file that is not an earlier report (an image of the user's, a
    document...). An earlier report (JSON with the report's keys) or an empty file is
    replaced."""
    if path.is_dir():
        raise ConfigError(f"--report {path}: is a folder, expected a file name")
    if not path.exists():
        return
    if path.stat().st_size and not _is_report(path):
        raise ConfigError(
            f"--report {path}: exists and is not a vdsr report; it would be replaced: choose "
            "another file name"
        )


def _is_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_bytes()[: 64 << 20])
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in REPORT_KEYS)


def write_report(
    path: Path, summary: JobSummary, exit_code: int | None, *, tiling: dict[str, Any] | None = None
) -> None:
    """Write ``summary`` with its ``exit_code`` (None: 1 if anything failed, else 0) as JSON,
    atomically; ``tiling``: the tile, halo and halo overhead the job ran with (``"tiling"``).
    ASCII JSON: a file name that is not UTF-8 is kept losslessly ("\\udce9")."""
    data = summary.to_dict()
    data["exit_code"] = exit_code if exit_code is not None else (1 if summary.failed else 0)
    if tiling is not None:
        data["tiling"] = tiling
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(data, indent=2).encode())
    except OSError as error:
        raise VdsrError(f"{path}: cannot write the report ({error.strerror or error})") from error
