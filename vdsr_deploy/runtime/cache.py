"""Where exported ONNX files, INT8 models, quality records and TensorRT engines are cached,
and what is there (``vdsr cache``).

The cache lives in the user's cache folder by the platform's convention (platformdirs:
``~/.cache/vdsr-deploy`` on Linux, ``~/Library/Caches/vdsr-deploy`` on macOS,
``%LOCALAPPDATA%\\vdsr-deploy\\Cache`` on Windows), never in the folder a command runs from.
``$VDSR_CACHE_DIR`` moves it; ``--engines-dir`` moves it for one command. Everything in it
can be made again: clearing it costs the next run the time to export or build.

Clearing removes only entries vdsr makes (:func:`is_cache_entry`: names that start with
``vdsr-``, ``timing_`` or ``ort-``, and their hidden temporaries), so a cache folder pointed
at a folder holding other files never loses them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR_ENV = "VDSR_CACHE_DIR"
APP_NAME = "vdsr-deploy"
_OUR_PREFIXES = ("vdsr-", "timing_", "ort-")


def default_cache_dir() -> Path:
    """``$VDSR_CACHE_DIR`` if set (and not empty), else the platform's user cache folder
    for vdsr-deploy. Nothing is created here."""
    override = os.environ.get(CACHE_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def cache_dir_source() -> str:
    """Where :func:`default_cache_dir` comes from, for ``vdsr info`` and ``vdsr cache``."""
    return f"${CACHE_DIR_ENV}" if os.environ.get(CACHE_DIR_ENV, "").strip() else "the platform's user cache folder"


def is_cache_entry(path: Path) -> bool:
    """Whether ``path`` (an entry of the cache folder) is something vdsr makes there."""
    return path.name.lstrip(".").startswith(_OUR_PREFIXES)


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    bytes: int
    ours: bool
    """Made by vdsr (cleared by :func:`clear_cache`); False: another file, always kept."""


def _size(path: Path) -> int:
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
        return sum(_size(child) for child in path.iterdir())
    except OSError:
        return 0


def cache_entries(directory: Path) -> list[CacheEntry]:
    """The entries of ``directory`` with their sizes (folders: everything inside), largest
    first; empty when the folder does not exist."""
    if not directory.is_dir():
        return []
    entries = [CacheEntry(p, _size(p), is_cache_entry(p)) for p in directory.iterdir()]
    return sorted(entries, key=lambda e: (-e.bytes, e.path.name))


@dataclass(frozen=True)
class Cleared:
    removed: int
    bytes: int
    kept: tuple[Path, ...]
    """Entries not made by vdsr, left in place."""


def clear_cache(directory: Path) -> Cleared:
    """Remove every entry vdsr made in ``directory`` (files and folders); other entries stay."""
    removed, freed, kept = 0, 0, []
    for entry in cache_entries(directory):
        if not entry.ours:
            kept.append(entry.path)
            continue
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            entry.path.unlink(missing_ok=True)
        removed, freed = removed + 1, freed + entry.bytes
    return Cleared(removed, freed, tuple(kept))


def human_bytes(count: int) -> str:
    """``5.3 MB``: decimal units, one decimal place."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"  # pragma: no cover - the loop returns
