"""Atomic output files: the :class:`ImageWriter` base (temporary file, fsync, rename),
file digests, and stale or live temporaries."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from vdsr_deploy.errors import ImageWriteError
from vdsr_deploy.faults import fault_point
from vdsr_deploy.fileops import move_into_place, pid_alive
from vdsr_deploy.imageio.read import ImageMetadata, Samples

TEMP_SUFFIX = ".part"


@dataclass(frozen=True)
class FileDigest:
    """Size and SHA-256 of a written file."""

    size: int
    sha256: str


def file_digest(path: Path) -> FileDigest:
    """Size and SHA-256 of ``path``."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return FileDigest(size, digest.hexdigest())


def stale_temporaries(target: Path) -> list[Path]:
    """Temporary files of ``target`` left behind by processes that are gone.

    A temporary file is named ``.<name>.<pid>.<random>.part`` after the process writing it;
    one whose process still runs (another job writing the same output) is not stale. Names
    without a PID (older versions) count as stale.
    """
    prefix = f".{target.name}."
    try:
        found = sorted(target.parent.glob(f"{_glob_escape(prefix)}*{TEMP_SUFFIX}"))
    except OSError:
        return []
    stale = []
    for path in found:
        owner = path.name[len(prefix) :].split(".", 1)[0]
        pid = int(owner) if owner.isdigit() else 0
        if pid == os.getpid() and path in _live_temporaries:
            continue
        if pid != os.getpid() and pid_alive(pid):
            continue
        stale.append(path)
    return stale


# Temporary files this process is writing: removed by remove_live_temporaries() when the
# process must exit at once (a second SIGINT/SIGTERM), since no cleanup code runs then.
_live_temporaries: set[Path] = set()
_live_lock = threading.Lock()


def remove_live_temporaries(then: Callable[[], object] | None = None) -> None:
    """Delete every temporary output file this process has open, then call ``then`` (e.g.
    ``os._exit``) while still holding the registry's lock, so no writer can create a new
    temporary file in between."""
    with _live_lock:
        for path in _live_temporaries:
            with contextlib.suppress(OSError):
                path.unlink()
        if then is not None:
            then()


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def appeared_meanwhile(target: Path) -> str:
    """The failure of an output whose target name was taken while the job ran."""
    return (
        f"{target}: a file appeared there while this job ran; it was left as it is and this "
        "output was not written (use --overwrite to replace it)"
    )


class ImageWriter(ABC):
    """Rows in, one atomic output file out.

    Usage: :meth:`write_rows` (in order, ``(n, width, channels)`` samples of ``bit_depth``),
    then :meth:`finish` (data complete and on disk under a temporary name; returns its
    digest), then :meth:`publish` (rename onto the target). :meth:`abort` (or leaving the
    ``with`` block without publishing) removes the temporary file.
    """

    def __init__(
        self,
        target: Path,
        height: int,
        width: int,
        channels: int,
        bit_depth: int,
        *,
        overwrite: bool,
        metadata: ImageMetadata | None = None,
    ) -> None:
        self.target = target
        self.height = height
        self.width = width
        self.channels = channels
        self.bit_depth = bit_depth
        self.overwrite = overwrite
        self._metadata = metadata or ImageMetadata()
        self.notes: list[str] = []
        self.rows_written = 0
        self._published = False
        self._finished = False
        if target.exists() and not overwrite:
            raise ImageWriteError(f"{target}: already exists (use --overwrite to replace it)")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with _live_lock:
                descriptor, name = tempfile.mkstemp(
                    prefix=f".{target.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
                )
                _live_temporaries.add(Path(name))
        except OSError as error:
            raise ImageWriteError(f"{target}: cannot write ({error.strerror or error})") from error
        self.temporary = Path(name)
        self._handle: IO[bytes] | None = os.fdopen(descriptor, "wb")

    @property
    def dtype(self) -> type[np.unsignedinteger[Any]]:
        return np.uint16 if self.bit_depth == 16 else np.uint8

    def write_rows(self, rows: Samples) -> None:
        """Append ``rows`` ``(n, width, channels)`` below the rows written so far."""
        if self._finished:
            raise ImageWriteError(f"{self.target}: rows written after finish()")
        if (
            rows.ndim != 3
            or rows.shape[1:] != (self.width, self.channels)
            or rows.dtype != self.dtype
        ):
            raise ImageWriteError(
                f"{self.target}: expected rows of shape (n, {self.width}, {self.channels}) "
                f"{np.dtype(self.dtype).name}, got {rows.shape} {rows.dtype}"
            )
        if self.rows_written + rows.shape[0] > self.height:
            raise ImageWriteError(f"{self.target}: more than {self.height} rows written")
        self._guard(self._write_rows, rows)
        self.rows_written += rows.shape[0]
        fault_point("write")

    def finish(self) -> FileDigest:
        """Complete the file under its temporary name, fsync it, return its size and hash."""
        if self.rows_written != self.height:
            raise ImageWriteError(
                f"{self.target}: {self.rows_written} of {self.height} rows written"
            )
        self._guard(self._finish)
        fault_point("finish")
        handle = self._require_handle()

        def close() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.chmod(self.temporary, 0o666 & ~_umask())

        self._guard(close)
        self._handle = None
        self._finished = True
        try:
            return file_digest(self.temporary)
        except OSError as error:  # e.g. removed by someone else meanwhile
            self.abort()
            raise ImageWriteError(
                f"{self.target}: cannot write (its temporary file {self.temporary.name}: "
                f"{error.strerror or error})"
            ) from error

    def publish(self) -> Path:
        """Rename the finished file onto the target; unless ``overwrite``, a file at the
        target (one that appeared after this writer was made included) is never replaced:
        :class:`ImageWriteError` instead, and the temporary file is removed."""
        if not self._finished:
            raise ImageWriteError(f"{self.target}: publish() before finish()")
        fault_point("rename")

        def move() -> None:
            try:
                move_into_place(self.temporary, self.target, replace=self.overwrite)
            except FileExistsError:
                raise ImageWriteError(appeared_meanwhile(self.target)) from None
            self._forget_temporary()

        self._guard(move)
        self._published = True
        fault_point("renamed")
        return self.target

    def abort(self) -> None:
        """Drop the temporary file (no-op once published)."""
        if self._published:
            return
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None
        self.temporary.unlink(missing_ok=True)
        self._forget_temporary()

    def _forget_temporary(self) -> None:
        with _live_lock:
            _live_temporaries.discard(self.temporary)

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._published:
            self.abort()

    def _require_handle(self) -> IO[bytes]:
        if self._handle is None:
            raise ImageWriteError(f"{self.target}: writer is closed")
        return self._handle

    def _guard(self, function: Any, *args: Any) -> None:
        try:
            function(*args)
        except ImageWriteError:
            self.abort()
            raise
        except OSError as error:
            self.abort()
            raise ImageWriteError(
                f"{self.target}: cannot write ({error.strerror or error})"
            ) from error
        except BaseException:
            self.abort()
            raise

    @abstractmethod
    def _write_rows(self, rows: Samples) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
