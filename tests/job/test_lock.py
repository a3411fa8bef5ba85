"""The job lock: flock when the file system has it, the recorded PID when it has not."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vdsr_deploy.job.lock import LOCK_NAME, FolderInUseError, JobLock


def _record(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00:00+0000"}
    (folder / LOCK_NAME).write_text(json.dumps(holder))


@pytest.fixture
def live_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _no_flock(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """The two ways flock is missing: a file system that refuses it (ENOLCK, as some NFS
    mounts do) and a platform without fcntl at all."""
    if how == "import":
        monkeypatch.setitem(sys.modules, "fcntl", None)
    else:
        import fcntl

        def refuse(fd: int, operation: int) -> None:
            raise OSError(errno.ENOLCK, "No locks available")

        monkeypatch.setattr(fcntl, "flock", refuse)


def test_flock_refuses_a_second_job_and_names_the_holder(tmp_path: Path) -> None:
    with JobLock(tmp_path / "out"), pytest.raises(FolderInUseError, match=f"PID {os.getpid()} on host"):
        JobLock(tmp_path / "out").acquire()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    with JobLock(tmp_path / "out"):  # released: free again
        pass


@pytest.mark.parametrize("how", ["errno", "import"])
def test_without_flock_a_live_holder_here_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_pid: int, how: str
) -> None:
    _no_flock(monkeypatch, how)
    _record(tmp_path / "out", live_pid)
    with pytest.raises(FolderInUseError, match=f"PID {live_pid} on host {socket.gethostname()}"):
        JobLock(tmp_path / "out").acquire()
    assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == live_pid  # untouched


@pytest.mark.parametrize("how", ["errno", "import"])
def test_without_flock_a_holder_on_another_host_is_refused_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _no_flock(monkeypatch, how)
    _record(tmp_path / "out", _dead_pid(), host="some-other-host")
    with pytest.raises(FolderInUseError, match=r"some-other-host.*delete .*\.vdsr-lock"):
        JobLock(tmp_path / "out").acquire()


@pytest.mark.parametrize("how", ["errno", "import"])
def test_without_flock_a_dead_holder_here_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _no_flock(monkeypatch, how)
    _record(tmp_path / "out", _dead_pid())
    with JobLock(tmp_path / "out") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / "out" / LOCK_NAME).exists()


@pytest.mark.parametrize("how", ["errno", "import"])
def test_without_flock_an_unreadable_lock_file_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    _no_flock(monkeypatch, how)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / LOCK_NAME).write_text("{torn")
    with JobLock(tmp_path / "out") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_an_unexpected_flock_error_is_one_sentence_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from vdsr_deploy.errors import ImageWriteError

    def broken(fd: int, operation: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "flock", broken)
    with pytest.raises(ImageWriteError, match=r"\.vdsr-lock: cannot lock the output folder \(Input/output error\)"):
        JobLock(tmp_path / "out").acquire()


def test_a_holder_whose_record_is_unreadable_is_still_refused_by_flock(tmp_path: Path) -> None:
    with JobLock(tmp_path / "out") as lock:
        lock.path.write_text("{torn")
        with pytest.raises(FolderInUseError, match=r"another vdsr job is writing to this folder \(holder unknown\)"):
            JobLock(tmp_path / "out").acquire()


def test_the_output_folder_and_its_parents_are_made_or_refused_in_one_sentence(tmp_path: Path) -> None:
    from vdsr_deploy.errors import ConfigError

    with JobLock(tmp_path / "a" / "b" / "c") as lock:  # missing parents are made
        assert lock.path.parent.is_dir()
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(ConfigError, match=r"file: is a file, expected a folder$"):
        JobLock(tmp_path / "file" / "deeper").acquire()
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"dangling: is a file, expected a folder$"):
        JobLock(tmp_path / "dangling" / "out").acquire()
