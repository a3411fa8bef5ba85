"""Inputs and outputs named by filesystem URIs (``s3://``, ``gs://``, ``hdfs://``, ``file://``,
anything ``pyarrow.fs.FileSystem.from_uri`` understands).

A URI becomes a :class:`RemotePath`: a ``pathlib`` path (so the planner in
:mod:`vdsr_deploy.job` lists, names and resumes it with the same code and rules as a local
path) whose queries (``exists``, ``is_dir``, ``stat``, ``glob``, ``open("rb")``, ``unlink``)
go through the pyarrow filesystem. Pixels are never decoded from or encoded to a remote
file directly: a job with URIs stages each input in a local scratch folder
(:func:`download`), runs the usual pipeline there, and delivers each finished output with
:func:`upload_temporary` (the bytes in one ``open_output_stream``, under a hidden temporary
key next to the target) and then :func:`replace` (a move: ``rename`` on a local filesystem,
a server-side copy on object stores, so the final key only ever holds a complete object).

The resume manifest of a remote output folder cannot be appended in place (object stores
have no append), so it lives in a local state folder keyed by the output URI
(:func:`manifest_path`): ``$VDSR_STATE_DIR`` or ``$XDG_STATE_HOME/vdsr`` (default
``~/.local/state/vdsr``), ``manifests/<sha256 of the URI, 16 hex>/``.

pyarrow is imported only when a URI is used (``import vdsr_deploy`` stays free of it).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path, PosixPath
from typing import Any

from vdsr_deploy.errors import BackendUnavailableError, ConfigError, ImageReadError, ImageWriteError
from vdsr_deploy.fileops import move_into_place

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")  # two letters at least: C:/ is a drive
_TEMP_SUFFIX = ".part"  # as imageio.TEMP_SUFFIX: one pattern finds stale temporaries anywhere
_filesystems: dict[str, Any] = {}  # "scheme:/bucket" or "scheme:" -> pyarrow FileSystem
_lock = threading.Lock()


def is_uri(text: str | os.PathLike[str]) -> bool:
    """``scheme://...`` (also ``scheme:/...``, what ``Path`` makes of it); not ``C:/``."""
    return isinstance(text, RemotePath) or bool(_SCHEME.match(os.fspath(text)))


def location(text: str | os.PathLike[str]) -> Path:
    """A :class:`RemotePath` for a URI, else a plain ``Path``."""
    if isinstance(text, RemotePath):
        return text
    name = os.fspath(text)
    match = _SCHEME.match(name)
    if match is None:
        return Path(name)
    scheme = match.group(1).lower()
    rest = name[match.end() :].lstrip("/")
    return RemotePath(f"{scheme}:", *[part for part in rest.split("/") if part])


def register_filesystem(prefix: str, filesystem: Any) -> None:
    """Use ``filesystem`` (a ``pyarrow.fs.FileSystem``) for every URI under ``prefix``
    (``s3://bucket`` or ``s3://``) instead of ``FileSystem.from_uri``: for endpoints and
    credentials that a URI cannot carry (a private S3 endpoint, a test server)."""
    path = location(prefix)
    if not isinstance(path, RemotePath):
        raise ConfigError(f"{prefix}: not a URI (expected scheme://...)")
    with _lock:
        _filesystems[_key(path.parts[:2])] = filesystem


def registered_filesystems() -> dict[str, Any]:
    """The registered filesystems (picklable: cluster workers get the same ones)."""
    with _lock:
        return dict(_filesystems)


def use_filesystems(filesystems: dict[str, Any]) -> None:
    """Register what :func:`registered_filesystems` returned elsewhere (in a cluster worker)."""
    with _lock:
        _filesystems.update(filesystems)


def _key(parts: tuple[str, ...]) -> str:
    return "/".join(parts)


def _filesystem(path: RemotePath) -> Any:
    """The pyarrow filesystem of ``path``: a registered one, else ``from_uri`` (cached per
    scheme and bucket: S3 resolves a bucket's region once)."""
    with _lock:
        for key in (_key(path.parts[:2]), _key(path.parts[:1])):
            if key in _filesystems:
                return _filesystems[key]
    try:
        from pyarrow import fs  # type: ignore[import-untyped]
    except ImportError as error:
        raise BackendUnavailableError(
            f"{path}: URIs need pyarrow: pip install 'vdsr-deploy[cluster]' (or pyarrow)"
        ) from error
    try:
        filesystem, _ = fs.FileSystem.from_uri(str(path))
    except (ValueError, OSError, TypeError) as error:
        raise ConfigError(f"{path}: cannot open this filesystem ({error})") from error
    with _lock:
        _filesystems.setdefault(_key(path.parts[:2]), filesystem)
    return filesystem


class RemotePath(PosixPath):
    """A file or folder named by a URI; parts are ``("s3:", "bucket", "key", ...)``.

    Derived paths (``parent``, ``/``, ``with_suffix``, ``relative_to``) stay RemotePaths, and
    ``str()`` gives the URI back. Only the queries the planner and the manifest use are
    implemented; the others are refused rather than run on the local disk.
    """

    def __str__(self) -> str:
        parts = self.parts
        if not parts or not parts[0].endswith(":"):
            return super().__str__()  # a relative path (relative_to)
        scheme, rest = parts[0][:-1], "/".join(parts[1:])
        return f"{scheme}:///{rest}" if scheme == "file" else f"{scheme}://{rest}"

    def __fspath__(self) -> str:
        return str(self)

    @property
    def fs_path(self) -> str:
        """The path pyarrow's filesystem knows it by (``bucket/key``; ``/x/y`` for file://)."""
        rest = "/".join(self.parts[1:])
        return f"/{rest}" if self.parts[0] == "file:" else rest

    @property
    def filesystem(self) -> Any:
        return _filesystem(self)

    def _info(self) -> Any:
        cached = self.__dict__.get("_cached_info")
        return cached if cached is not None else self.filesystem.get_file_info(self.fs_path)

    def _type(self) -> str:
        return str(self._info().type.name)

    def resolve(self, strict: bool = False) -> RemotePath:
        return self

    def absolute(self) -> RemotePath:
        return self

    def exists(self, *, follow_symlinks: bool = True) -> bool:
        return self._type() != "NotFound"

    def is_dir(self) -> bool:
        return self._type() == "Directory"

    def is_file(self) -> bool:
        return self._type() == "File"

    def is_symlink(self) -> bool:
        return False  # object stores have no links; never ask the local disk

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        info = self._info()
        if info.type.name == "NotFound":
            raise FileNotFoundError(2, "no such file", str(self))
        mtime_ns = int(info.mtime_ns or 0)
        fields = (0o100644, 0, 0, 1, 0, 0, int(info.size or 0), 0, mtime_ns // 10**9, 0)
        return os.stat_result(fields, {"st_mtime_ns": mtime_ns})

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode != "rb":
            raise ImageWriteError(f"{self}: only reading is supported on a URI (got mode {mode!r})")
        return self.filesystem.open_input_stream(self.fs_path)

    def _list(self, recursive: bool) -> Iterator[RemotePath]:
        from pyarrow import fs  # type: ignore[import-untyped]

        selector = fs.FileSelector(self.fs_path, recursive=recursive, allow_not_found=True)
        prefix = self.fs_path.rstrip("/") + "/"
        for info in self.filesystem.get_file_info(selector):
            child = self.joinpath(*info.path[len(prefix) :].split("/"))
            child.__dict__["_cached_info"] = info
            yield child

    def glob(self, pattern: str) -> Iterator[RemotePath]:  # type: ignore[override]
        """One level: names matching ``pattern`` (fnmatch); ``**`` parts walk every level."""
        if pattern == "**/*" or pattern.startswith("**/"):
            yield from self.rglob(pattern[3:])
            return
        if "/" in pattern:
            raise ConfigError(f"{self}: glob {pattern!r} not supported on a URI")
        for child in self._list(recursive=False):
            if fnmatch.fnmatchcase(child.name, pattern):
                yield child

    def rglob(self, pattern: str) -> Iterator[RemotePath]:  # type: ignore[override]
        for child in self._list(recursive=True):
            if fnmatch.fnmatchcase(child.name, pattern):
                yield child

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        return None  # object stores have no folders; keys create their prefixes


def glob_files(spec: str) -> list[Path]:
    """Files matching a glob URI (``s3://b/scans/**/*.png``), with Python's ``glob`` rules
    (recursive=True): ``*``, ``?``, ``[...]`` within a name, ``**`` across folders, and names
    starting with a dot only matched by a pattern part that starts with one."""
    parts = location(spec).parts
    fixed = 0
    while fixed < len(parts) and not any(c in parts[fixed] for c in "*?["):
        fixed += 1
    base = RemotePath(*parts[:fixed])
    pattern = re.compile(_translate(parts[fixed:]))
    dotted = any(part.startswith(".") for part in parts[fixed:])
    matches: list[Path] = []
    for child in base._list(recursive=True):
        relative = child.parts[fixed:]
        if not child.is_file() or (not dotted and any(p.startswith(".") for p in relative)):
            continue
        if pattern.fullmatch("/".join(relative)):
            matches.append(child)
    return sorted(matches)


def _translate(parts: tuple[str, ...]) -> str:
    """A regular expression for glob ``parts`` matched against a ``/``-joined relative key."""
    pieces: list[str] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]+/)*")
            continue
        pieces.append(_name_pattern(part) + ("" if last else "/"))
    return "".join(pieces)


def _name_pattern(part: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(part):
        char = part[i]
        close = part.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif close != -1:
            body = part[i + 1 : close]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = close
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Moving bytes


def download(source: RemotePath, local: Path) -> None:
    """Copy ``source`` to the local file ``local``; ImageReadError with one sentence."""
    try:
        kind = source._type()
        if kind == "NotFound":
            raise ImageReadError(f"{source}: no such file")
        if kind == "Directory":
            raise ImageReadError(f"{source}: is a folder, not an image file")
        with source.filesystem.open_input_stream(source.fs_path) as stream, local.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
    except ImageReadError:
        raise
    except PermissionError as error:
        raise ImageReadError(f"{source}: cannot read (permission denied)") from error
    except (OSError, ValueError) as error:
        raise ImageReadError(f"{source}: cannot read ({error})") from error


def image_size(source: RemotePath) -> tuple[int, int] | None:
    """(height, width) from the header of a remote image (Pillow reads a few ranges of the
    object, not all of it); None when it cannot be read as an image."""
    from PIL import Image

    try:
        with source.filesystem.open_input_file(source.fs_path) as handle, Image.open(handle) as image:
            return image.height, image.width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def temporary_name(target: Path, owner: int) -> Path:
    """A hidden temporary name next to ``target`` (``.<name>.<owner>.<random>.part``; ``owner``:
    the PID of the job's driver, as in the single-machine writer's temporaries)."""
    return target.with_name(f".{target.name}.{owner}.{uuid.uuid4().hex[:12]}{_TEMP_SUFFIX}")


def upload_temporary(made: Path, target: RemotePath, owner: int) -> RemotePath:
    """Upload the finished local file ``made`` to a temporary key next to ``target`` in one
    output stream; the upload is complete when this returns (the stream's close succeeded)."""
    temporary = temporary_name(target, owner)
    assert isinstance(temporary, RemotePath)
    filesystem = target.filesystem
    try:
        if target.parts[0] == "file:":
            filesystem.create_dir(target.parent.fs_path, recursive=True)
        with made.open("rb") as data, filesystem.open_output_stream(temporary.fs_path) as out:
            shutil.copyfileobj(data, out, 1 << 20)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    return temporary


def replace(temporary: Path, target: Path, *, overwrite: bool) -> None:
    """Put the complete ``temporary`` in place of ``target``: for local paths
    :func:`~vdsr_deploy.fileops.move_into_place` (unless ``overwrite``, an existing target,
    even one that appeared a moment ago, raises ``FileExistsError``); on a URI the
    filesystem's move (a rename on local/HDFS filesystems; a server-side copy then a delete on
    S3/GCS, where the new object becomes visible only once complete), after an existence
    check when not ``overwrite`` (object stores have no rename that refuses to replace)."""
    if isinstance(target, RemotePath):
        if not isinstance(temporary, RemotePath):
            raise ImageWriteError(f"{target}: temporary {temporary} is not on the same filesystem")
        if not overwrite and target.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        target.filesystem.move(temporary.fs_path, target.fs_path)
    else:
        move_into_place(temporary, target, replace=overwrite)


def name_for_worker(path: Path) -> str:
    """What a worker on another node is told: the URI, or the absolute local path."""
    return str(path) if isinstance(path, RemotePath) else os.path.abspath(path)


# ---------------------------------------------------------------------------------------------
# Where state lives


def state_dir() -> Path:
    """``$VDSR_STATE_DIR``, else ``$XDG_STATE_HOME/vdsr``, else ``~/.local/state/vdsr``."""
    if os.environ.get("VDSR_STATE_DIR"):
        return Path(os.environ["VDSR_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "vdsr"


def manifest_path(folder: Path, name: str) -> Path:
    """The manifest of an output folder: in it when local; for a URI, a local state folder
    keyed by the URI (an object store cannot append): ``state_dir()/manifests/<hash>/name``."""
    if not isinstance(folder, RemotePath):
        return folder / name
    uri = str(folder).rstrip("/")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return state_dir() / "manifests" / digest / name


def uses_uris(inputs: tuple[str, ...], output: Path) -> bool:
    return isinstance(output, RemotePath) or any(is_uri(spec) for spec in inputs)
