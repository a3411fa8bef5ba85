"""The resume manifest: which outputs of a batch job are complete, and with which settings.

One JSON object per line in ``<output folder>/.vdsr-manifest.jsonl``, appended (and fsynced)
after an output's data is complete on disk and *before* it is renamed into place. So an
output that exists and matches its record (size and SHA-256) is complete; a record whose
file is missing or differs means the write did not finish, and the output is redone. A
line cut short by a crash (kill -9 or a full disk mid-append) is ignored, and the next record
starts on a line of its own, so no later record is lost. The last record for an output wins.

A damaged manifest (a line torn mid-record, or garbled) heals instead of turning complete
outputs into "not made by this job" for good: an existing output with no record is made
again and compared (*rechecked*) when a damaged line names it, or when a damaged line names
nothing readable. Identical: its record is written again and the file is left untouched.
Different: replaced when a damaged line names it (it was this job's and is damaged),
otherwise left alone and reported as a failure (it may be the user's). Once every recheck
came out identical or replaced, the job rewrites the manifest without its damaged lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ImageWriteError
from vdsr_deploy.faults import fault_point
from vdsr_deploy.fileops import atomic_write_bytes
from vdsr_deploy.imageio import FileDigest, file_digest
from vdsr_deploy.job.remote import manifest_path

MANIFEST_NAME = ".vdsr-manifest.jsonl"
VERSION = 1


def settings_key(settings: Mapping[str, Any]) -> str:
    """A short stable hash of the settings that change an output's pixels."""
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceStamp:
    """Identity of an input file: size and modification time."""

    size: int
    mtime_ns: int

    @staticmethod
    def of(path: Path) -> SourceStamp | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return SourceStamp(stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class Record:
    """One finished output."""

    output: str  # path relative to the manifest's folder, POSIX separators
    size: int
    sha256: str
    settings: str  # settings_key
    source: str
    source_size: int
    source_mtime_ns: int
    finished: str
    version: int = VERSION


@dataclass(frozen=True)
class Verdict:
    """What to do with one planned output: ``complete`` (skip), ``redo``, ``foreign`` (a file
    this job did not make), ``other_settings`` (made by this tool with other settings)."""

    state: str
    reason: str

    @property
    def replace_existing(self) -> bool:
        return self.state in ("redo", "recheck")


@dataclass(frozen=True)
class Settled:
    """How a finished output is committed: ``publish`` it (rename it into place) or keep the
    identical file already there; ``note`` says why, for a rechecked output."""

    publish: bool
    note: str | None = None


class Manifest:
    """Records in ``folder / MANIFEST_NAME``; thread-safe appends.

    ``damaged``: lines that could not be read; ``named_by_damaged``: the outputs those lines
    still name; ``rechecks``: outputs the plan chose to recheck (see the module docstring)
    and ``settled``: those whose recheck came out identical or replaced."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = manifest_path(folder, MANIFEST_NAME)  # a URI's: in a local state folder
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self.damaged = 0
        self.named_by_damaged: set[str] = set()
        self._unnamed_damaged = 0
        self.rechecks: set[str] = set()
        self.settled: set[str] = set()
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing recorded yet (a blocked output folder fails per file later)
        except OSError as error:
            raise ImageWriteError(
                f"{self.path}: cannot read the resume manifest ({error.strerror or error})"
            ) from error
        for line in lines:
            try:
                data = json.loads(line)
                if isinstance(data, dict) and set(data) == {"retract"}:
                    self._records.pop(str(data["retract"]), None)
                    continue
                record = Record(**data)
            except (ValueError, TypeError):
                if line.strip():  # a line cut short by a crash, garbled, or from another version
                    self.damaged += 1
                    names = _named_outputs(line)
                    self.named_by_damaged.update(names)
                    self._unnamed_damaged += not names
                continue
            self._records[record.output] = record

    def key(self, target: Path) -> str:
        try:
            relative = target.resolve().relative_to(self.folder.resolve())
        except ValueError:
            relative = Path(os.path.abspath(target))
        return relative.as_posix()

    def get(self, target: Path) -> Record | None:
        return self._records.get(self.key(target))

    def verdict(self, target: Path, source: Path, settings: str) -> Verdict:
        """Whether ``target`` (for ``source`` under ``settings``) is complete."""
        record = self.get(target)
        exists = target.exists() or target.is_symlink()
        if exists and not target.is_file():  # never hash (open) a FIFO or device
            return Verdict("foreign", "exists and is not a regular file; left as it is")
        if record is None:
            if exists and self._may_have_lost_record(target):
                self.rechecks.add(self.key(target))
                return Verdict(
                    "recheck",
                    f"exists with no record, and the resume manifest has {self.damaged} damaged "
                    "line(s) that may have held it: made again and compared",
                )
            if exists:
                return Verdict(
                    "foreign", "exists and was not made by this job (use --overwrite to replace it)"
                )
            return Verdict("redo", "new")
        if not exists:
            return Verdict("redo", "recorded output is missing; redoing it")
        if record.settings != settings:
            return Verdict(
                "other_settings", "made with other settings (use --overwrite to replace it)"
            )
        stamp = SourceStamp.of(source)
        if stamp is None or (stamp.size, stamp.mtime_ns) != (
            record.source_size,
            record.source_mtime_ns,
        ):
            return Verdict("redo", "input changed since the output was made; redoing it")
        try:
            digest = file_digest(target)
        except OSError:
            return Verdict("redo", "output unreadable; redoing it")
        if (digest.size, digest.sha256) != (record.size, record.sha256):
            return Verdict(
                "redo", "output does not match its record (incomplete or changed); redoing it"
            )
        return Verdict("complete", "complete (matches the manifest)")

    def _may_have_lost_record(self, target: Path) -> bool:
        return self.key(target) in self.named_by_damaged or self._unnamed_damaged > 0

    def settle(self, target: Path, digest: FileDigest) -> Settled:
        """How to commit a finished output whose data has ``digest``: publish it, except for a
        rechecked output (see the module docstring), which may be kept as it is or refused
        (:class:`ImageWriteError`: the file there is left alone)."""
        key = self.key(target)
        if key not in self.rechecks:
            return Settled(publish=True)
        settled = self._settle_recheck(target, digest)
        with self._lock:
            self.settled.add(key)
        return settled

    def _settle_recheck(self, target: Path, digest: FileDigest) -> Settled:
        key = self.key(target)
        try:
            existing = file_digest(target)
        except OSError:
            return Settled(publish=True, note="rechecked: the existing output is unreadable; replaced")
        if (existing.size, existing.sha256) == (digest.size, digest.sha256):
            return Settled(
                publish=False,
                note="rechecked: identical to this job's result; its lost record was written again",
            )
        if key in self.named_by_damaged:
            return Settled(
                publish=True,
                note="rechecked: differs from this job's result and its record was damaged; replaced",
            )
        raise ImageWriteError(
            f"{target}: exists, differs from this job's result, and the resume manifest "
            f"{self.path} lost records ({self.damaged} damaged line(s)), so whether this job "
            "made it cannot be told; left as it is (use --overwrite to replace it)"
        )

    def compact(self) -> None:
        """Rewrite the manifest without its damaged lines, once nothing they may have held is
        still unsettled (every recheck came out identical or replaced); atomic."""
        with self._lock:
            if self.damaged == 0 or not self.rechecks <= self.settled:
                return
            lines = [json.dumps(asdict(record)) + "\n" for record in self._records.values()]
            atomic_write_bytes(self.path, "".join(lines).encode())
            self.damaged = self._unnamed_damaged = 0
            self.named_by_damaged.clear()

    def record(self, target: Path, digest: FileDigest, source: Path, settings: str) -> None:
        """Append a record for ``target`` and fsync it."""
        stamp = SourceStamp.of(source) or SourceStamp(-1, -1)
        record = Record(
            output=self.key(target),
            size=digest.size,
            sha256=digest.sha256,
            settings=settings,
            source=str(source),
            source_size=stamp.size,
            source_mtime_ns=stamp.mtime_ns,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        with self._lock:
            self._append(asdict(record))
            self._records[record.output] = record

    def retract(self, target: Path) -> None:
        """Withdraw the record of ``target``: its output was not published after all (a file
        appeared at its name meanwhile), so the file there is not this job's."""
        with self._lock:
            self._append({"retract": self.key(target)})
            self._records.pop(self.key(target), None)

    def _append(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one fsynced line (on a line of its own after a torn one)."""
        line = (json.dumps(entry) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a URI's: the state folder
            with self.path.open("a+b") as handle:
                if _ends_mid_line(handle):
                    line = b"\n" + line  # a torn last line stays torn, alone
                half = len(line) // 2
                handle.write(line[:half])
                handle.flush()
                fault_point("manifest")
                handle.write(line[half:])
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise ImageWriteError(
                f"{self.path}: cannot update the resume manifest ({error.strerror or error})"
            ) from error


_OUTPUT_FIELD = re.compile(r'"output"\s*:\s*("(?:[^"\\]|\\.)*")')


def _named_outputs(line: str) -> list[str]:
    """The ``output`` names still readable in a damaged manifest line."""
    names = []
    for match in _OUTPUT_FIELD.finditer(line):
        try:
            names.append(str(json.loads(match.group(1))))
        except ValueError:
            continue
    return names


def _ends_mid_line(handle: Any) -> bool:
    """Whether the file open in ``handle`` (binary, append) is non-empty and lacks a final
    newline, i.e. its last append was cut short."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return False
    handle.seek(end - 1)
    last: bytes = handle.read(1)
    return last != b"\n"
