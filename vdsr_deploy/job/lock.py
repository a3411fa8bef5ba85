"""One batch job per output folder: a lock file that names its holder.

``<output folder>/.vdsr-lock`` is held with ``flock`` for the whole job and contains the
holder's PID, host and start time. A second job on the same folder is refused with a
sentence naming the holder. The kernel drops the ``flock`` when the holder exits in any way
(kill -9 included), so a dead holder's lock is simply taken over; where the file system
has no ``flock``, the PID is checked instead (a holder on this host that is no longer
running is taken over; one on another host is refused with a hint to remove the file).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from vdsr_deploy.errors import ConfigError, ImageWriteError, VdsrError
from vdsr_deploy.fileops import pid_alive

LOCK_NAME = ".vdsr-lock"

_held: set[JobLock] = set()
_held_lock = threading.Lock()


class FolderInUseError(VdsrError):
    """Another live job holds the output folder."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, started {self.started}"

    def running_here(self) -> bool:
        """True if the holder is a running process on this host (or cannot be checked)."""
        return self.host == socket.gethostname() and pid_alive(self.pid)


def prepare_output_folder(folder: Path) -> None:
    """Create ``folder`` (and parents); one clear sentence when a file is in the way."""
    for part in (folder, *folder.parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                raise ConfigError(f"{part}: is a file, expected a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageWriteError(
            f"{folder}: cannot create the output folder ({error.strerror or error})"
        ) from error


def _read_holder(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class JobLock:
    """``with JobLock(folder):`` holds ``folder / LOCK_NAME`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        prepare_output_folder(self.folder)
        for _ in range(10):  # retried only when the file was replaced while we locked it
            fd = self._open()
            try:
                if not self._lock(fd) or not self._same_file(fd):
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            self._write_holder(fd)
            with _held_lock:
                _held.add(self)
            return
        raise FolderInUseError(f"{self.folder}: cannot take the job lock {self.path}")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _held_lock:
            _held.discard(self)
        with contextlib.suppress(OSError):
            if self._same_file(fd):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(fd)

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise ImageWriteError(
                f"{self.folder}: cannot write in the output folder ({error.strerror or error})"
            ) from error

    def _lock(self, fd: int) -> bool:
        """Lock ``fd``; raises :class:`FolderInUseError` when a live job holds it."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: decide from the recorded PID
            return self._lock_by_pid()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._refuse(_read_holder(self.path))
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise ImageWriteError(
                    f"{self.path}: cannot lock the output folder ({error.strerror or error})"
                ) from error
            return self._lock_by_pid()
        return True

    def _lock_by_pid(self) -> bool:
        holder = _read_holder(self.path)
        elsewhere = holder is not None and holder.host != socket.gethostname()
        if holder is not None and holder.pid != os.getpid() and (elsewhere or holder.running_here()):
            self._refuse(holder)
        return True

    def _refuse(self, holder: LockHolder | None) -> None:
        who = holder.describe() if holder is not None else "holder unknown"
        raise FolderInUseError(
            f"{self.folder}: another vdsr job is writing to this folder ({who}); wait for it "
            f"to finish or choose another output folder (if no such job runs, delete "
            f"{self.path})"
        )

    def _same_file(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == self.path.stat().st_ino
        except OSError:
            return False

    def _write_holder(self, fd: int) -> None:
        text = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
        except OSError as error:
            self.release()
            raise ImageWriteError(
                f"{self.path}: cannot write the job lock ({error.strerror or error})"
            ) from error


def release_all() -> None:
    """Release every lock this process holds (for an immediate exit)."""
    with _held_lock:
        held = list(_held)
    for lock in held:
        lock.release()
