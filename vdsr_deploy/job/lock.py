"""One batch job per output folder: a lock file that names its holder.

``<output folder>/.vdsr-lock`` is held with ``flock`` for the whole job and contains the
holder's PID, host and start time. A second job on the same folder is refused with a
sentence naming the holder. The kernel drops the ``flock`` when the holder exits in any way
(kill -9 included), so a dead holder's lock is simply taken over; where the file system
has no ``flock``, the PID is checked instead (a holder on this host that is no longer
running is taken over; one on another host is refused with a hint to remove the file).

The lock covers the whole output tree: once it holds its own folder, a job also refuses to
run when a live job holds a folder above it or inside it (``-o out`` and ``-o out/sub``
would otherwise both write under ``out/``). Both jobs take their own lock before looking at
the others', so of two starting at once at least one sees the other.
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
            try:
                self._refuse_nested_jobs()
            except BaseException:
                self.release()
                raise
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
        holder = _holder_by_pid(self.path)
        if holder is not None:
            self._refuse(holder)
        return True

    def _refuse(self, holder: LockHolder | None) -> None:
        who = holder.describe() if holder is not None else "holder unknown"
        raise FolderInUseError(
            f"{self.folder}: another vdsr job is writing to this folder ({who}); wait for it "
            f"to finish or choose another output folder (if no such job runs, delete "
            f"{self.path})"
        )

    def _refuse_nested_jobs(self) -> None:
        """Raise :class:`FolderInUseError` when a live job holds a folder above or inside
        this one."""
        own = self.path.resolve()
        for other in _lock_files_around(self.folder.resolve()):
            if other == own:
                continue
            holder = _live_holder(other)
            if holder is None:
                continue
            where = "above" if own.is_relative_to(other.parent) else "inside"
            raise FolderInUseError(
                f"{self.folder}: another vdsr job is writing to {other.parent}, a folder "
                f"{where} this one ({holder.describe()}); its outputs and this job's would mix. "
                f"Wait for it to finish or choose an output folder outside its tree (if no such "
                f"job runs, delete {other})"
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


def _lock_files_around(folder: Path) -> list[Path]:
    """The lock files in ``folder``'s parents and anywhere under ``folder`` (links not
    followed)."""
    found = [parent / LOCK_NAME for parent in folder.parents if (parent / LOCK_NAME).is_file()]
    for root, folders, files in os.walk(folder, onerror=lambda _: None):
        folders[:] = [name for name in folders if not name.startswith(".vdsr-")]
        if LOCK_NAME in files:
            found.append(Path(root) / LOCK_NAME)
    return found


def _live_holder(path: Path) -> LockHolder | None:
    """The holder of the lock file ``path`` if a live job holds it, else ``None``.

    A lock this process holds counts as live. Otherwise ``flock`` decides (a lock we can take
    has no holder); where the file system has no ``flock``, the recorded PID does.
    """
    with _held_lock:
        if any(lock.path.resolve() == path for lock in _held):
            return _read_holder(path) or LockHolder(os.getpid(), socket.gethostname(), "?")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # removed meanwhile (its job ended), or unreadable: not ours to judge
    try:
        try:
            import fcntl
        except ImportError:
            return _holder_by_pid(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path) or LockHolder(-1, "unknown", "unknown")
        except OSError:
            return _holder_by_pid(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder_by_pid(path: Path) -> LockHolder | None:
    holder = _read_holder(path)
    if holder is None:
        return None
    if holder.host != socket.gethostname():
        return holder  # cannot be checked from here: taken as live
    return holder if holder.pid != os.getpid() and pid_alive(holder.pid) else None


def release_all() -> None:
    """Release every lock this process holds (for an immediate exit)."""
    with _held_lock:
        held = list(_held)
    for lock in held:
        lock.release()
