"""Atomic file writes and file hashing: the one home for both.

A write goes to a temporary file next to the target, then replaces the target in one
rename, so a reader never sees half a file and an interrupted write leaves the old file
intact. Temporary names are unique per process *and* per thread (and per call), so two
threads writing the same target (two runners building the same engine, say) never write
into each other's temporary file; the last rename wins with a complete file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vdsr_deploy.errors import InvalidInputError

TEMPORARY_SUFFIX = ".tmp"


def temporary_path(target: Path) -> Path:
    """A fresh hidden temporary name next to ``target``, unique per process, thread and call."""
    target = Path(target)
    token = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    return target.with_name(f".{target.name}.{token}{TEMPORARY_SUFFIX}")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically, on
    any error it is removed and ``target`` is left as it was."""
    target = Path(target)
    temporary = temporary_path(target)
    try:
        yield temporary
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def move_into_place(temporary: Path, target: Path, *, replace: bool) -> None:
    """Rename the complete ``temporary`` onto ``target``.

    With ``replace=False`` an existing ``target`` is never replaced, not even one that
    appeared a moment ago: the file is hard-linked to the target name, which fails at once
    (``FileExistsError``) when that name exists, then the temporary name is removed. Where
    the file system has no hard links, an existence check and a rename do it instead (the
    check and the rename are then not one step).
    """
    if replace:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(temporary, target)
        return
    os.unlink(temporary)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (see the module docstring)."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks; InvalidInputError when it is missing."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError as error:
        raise InvalidInputError(f"{path}: file not found") from error
    return digest.hexdigest()


def with_default_permissions(path: Path) -> None:
    """Give ``path`` the permissions of a newly created file under the current umask (0644
    under the usual 022), like every other output: safetensors itself writes 0600."""
    current = os.umask(0)
    os.umask(current)
    os.chmod(path, 0o666 & ~current)


_NOT_REGULAR = (
    (stat.S_ISDIR, "is a folder, not {kind}"),
    (stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file; not read"),
    (stat.S_ISCHR, "is a character device, not a regular file; not read"),
    (stat.S_ISBLK, "is a block device, not a regular file; not read"),
    (stat.S_ISSOCK, "is a socket, not a regular file; not read"),
)


def not_regular_reason(mode: int, kind: str = "an image file") -> str | None:
    """Why a file of ``st_mode`` ``mode`` is not read as ``kind`` (None: a regular file)."""
    for test, reason in _NOT_REGULAR:
        if test(mode):
            return reason.format(kind=kind)
    return None if stat.S_ISREG(mode) else "is not a regular file; not read"


def regular_file_problem(path: Path, kind: str) -> str | None:
    """Why ``path`` cannot be read as ``kind`` (e.g. "a weights file"), as words to follow
    the file's name and kind ("not found", "is a FIFO ..."), decided from its ``stat``
    without opening it (a FIFO or a device could block or never end); None when it is a
    regular file."""
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        if Path(path).is_symlink():
            return "broken link (its target does not exist)"
        return "not found"
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return not_regular_reason(mode, kind)


def require_regular_file(
    path: Path, noun: str, error: type[InvalidInputError] = InvalidInputError
) -> Path:
    """``path``, or ``error`` naming it: "<path>: weights file not found", "<path>: ONNX file
    is a FIFO (named pipe) ..." (``noun``: "weights file", "ONNX file", ...)."""
    article = "an" if noun[:1].lower() in "aeiou" else "a"
    problem = regular_file_problem(path, f"{article} {noun}")
    if problem is not None:
        raise error(f"{path}: {noun} {problem}")
    return Path(path)


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (another user's included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive_file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing, never deleted:
    deleting a lock file another process waits on would let a third one in) for the
    block, waiting as long as another process or thread holds it. ``fcntl.flock`` on
    POSIX, ``msvcrt.locking`` on Windows; the lock is released when the block ends or the
    process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt

            while True:
                try:
                    msvcrt.locking(descriptor, msvcrt.LK_LOCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:  # LK_LOCK gives up after 10 s: wait again
                    continue
            try:
                yield
            finally:
                os.lseek(descriptor, 0, os.SEEK_SET)
                msvcrt.locking(descriptor, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        else:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
