"""Atomic writes and hashing: one home (vdsr_deploy.fileops)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.fileops import atomic_path, atomic_write_bytes, file_sha256, temporary_path


def test_temporary_names_are_unique_per_thread_and_call(tmp_path: Path) -> None:
    target = tmp_path / "engine.plan"
    names: list[Path] = []

    def take() -> None:
        names.append(temporary_path(target))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names += [temporary_path(target), temporary_path(target)]
    assert len(set(names)) == len(names)
    assert all(n.parent == tmp_path and n.name.startswith(".engine.plan.") for n in names)
    assert all(str(threading.get_ident()) in n.name for n in names[-2:])


def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 9000  # more than one 1 MiB chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(InvalidInputError, match="file not found"):
        file_sha256(tmp_path / "missing")
