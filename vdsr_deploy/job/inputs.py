"""Finding a job's input files: one input spec (a file, a folder walked for image names, a
glob, or a URI listed through its filesystem) becomes the files it names, the root their
output names are relative to, and the image-named entries that are not regular files (with
the reason they are skipped)."""

from __future__ import annotations

import glob
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.imageio import IMAGE_SUFFIXES, not_regular_reason
from vdsr_deploy.job.remote import glob_files, is_uri, location


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
class Expanded:
    """The files of one input spec, the root their output names are relative to, and the
    image-named entries that are not inputs, with the reason."""

    root: Path
    files: list[Path]
    skipped: list[tuple[Path, str]]


def expand_spec(spec: str, recursive: bool, exclude: Path | None) -> Expanded | None:
    """Files of one input spec; None when nothing matches. ``exclude``: the resolved output
    folder; when it lies inside the input folder its files are never inputs. Image-named
    entries that are not regular files (FIFOs, devices, broken links) are ``skipped``. A URI
    (``s3://bucket/scans``) is listed through its filesystem (:mod:`vdsr_deploy.job.remote`)."""
    path = location(spec)
    if path.is_dir():
        skip = exclude if exclude is not None and path.resolve() in exclude.parents else None
        walker = path.rglob("*") if recursive else path.glob("*")
        candidates = sorted(p for p in walker if p.suffix.lower() in IMAGE_SUFFIXES)
        return _sort_entries(path, candidates, skip)
    if path.exists() or path.is_symlink() or not glob.has_magic(spec):
        exists = path.exists() or path.is_symlink()
        return Expanded(path.parent, [path], []) if exists else None
    root = _magic_root(spec)
    skip = exclude if exclude is not None and root.resolve() in exclude.parents else None
    matches = _glob(spec)
    expanded = _sort_entries(root, matches, skip)
    return expanded if expanded.files or expanded.skipped else None


def _sort_entries(root: Path, entries: list[Path], exclude: Path | None) -> Expanded:
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for entry in entries:
        reason = walk_skip_reason(entry)
        if reason is not None:
            skipped.append((entry, reason))
        elif entry.is_file() and not _inside(entry.resolve(), exclude):
            files.append(entry)
    return Expanded(root, files, skipped)


def check_inputs_exist(specs: Sequence[str]) -> None:
    """InvalidInputError (naming them) when no input spec names anything: the cheap check a
    job makes before a runtime loads or an output folder is created. Only existence is
    checked (a folder is not walked); URIs are left to the job, which lists them. When some
    specs exist, the job runs and reports the others by name."""
    if not specs or any(is_uri(spec) for spec in specs):
        return
    missing = [spec for spec in specs if not _names_something(spec)]
    if len(missing) == len(specs):
        raise InvalidInputError(f"{', '.join(missing)}: no such file, folder, or matching glob")


def _names_something(spec: str) -> bool:
    path = Path(spec)
    if path.exists() or path.is_symlink():
        return True
    return glob.has_magic(spec) and next(glob.iglob(spec, recursive=True), None) is not None
