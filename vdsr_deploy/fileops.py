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
