"""Issue 25: nothing of the user's is overwritten, one job per output tree, a damaged
manifest heals, odd names and links are inputs like any other.

Each test failed on main before issue 25 (the case number of the issue is in its name).
A numpy stand-in for the network keeps every job to a fraction of a second.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from job_child import BoxRunner  # the numpy stand-in for the network (tests/)
from PIL import Image

from vdsr_deploy.imageio import ImageWriter, file_digest
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.job.ledger import JobLedger
from vdsr_deploy.job.lock import LOCK_NAME, FolderInUseError, JobLock
from vdsr_deploy.job.manifest import MANIFEST_NAME, Manifest
from vdsr_deploy.job.worker import ChunkResult, ItemResult, WorkerInfo
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig

TILING = TileConfig(tile=40, halo=3)


def job(inputs: list[Path], output: Path, *, scale: float = 2.0, **options: Any) -> JobConfig:
    pipeline = PipelineConfig(scale=scale, tiling=TILING, batch=2)
    return JobConfig(
        inputs=tuple(str(i) for i in inputs), output=output, pipeline=pipeline, model="box",
        **options,
    )


def images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        y, x = np.mgrid[0 : 21 + index, 0:27]
        pixels = np.stack([(x * 5 + y * 3 + index * 40 + c * 7) % 256 for c in range(3)], axis=2)
        path = folder / f"img{index}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        made.append(path)
    return made


# --- 2: one lock per output tree --------------------------------------------------------------


def _hold_like_another_process(folder: Path) -> int:
    """Hold ``folder``'s lock file through a descriptor of its own, as another job would."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b'{"pid": 4242, "host": "elsewhere", "started": "then"}')
    return fd


@pytest.mark.parametrize("held, wanted", [("nest", "nest/sub"), ("nest/sub", "nest")])
def test_2_a_job_inside_or_above_a_live_job_is_refused(
    tmp_path: Path, held: str, wanted: str
) -> None:
    fd = _hold_like_another_process(tmp_path / held)
    try:
        with pytest.raises(FolderInUseError) as caught:
            JobLock(tmp_path / wanted).acquire()
        where = "above" if held == "nest" else "inside"
        assert f"a folder {where} this one" in str(caught.value)
        assert "PID 4242 on host elsewhere" in str(caught.value)
        assert not (tmp_path / wanted / LOCK_NAME).exists()  # its own lock was let go
    finally:
        os.close(fd)
    with JobLock(tmp_path / wanted):  # the other job ended: free
        pass


def test_2_the_whole_job_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    sources = images(tmp_path / "in")
    with JobLock(tmp_path / "nest"), BoxRunner() as runner, pytest.raises(FolderInUseError):
        run_job(job(sources, tmp_path / "nest" / "sub", scale=3.0), runner)  # nest: a live job
    assert not list((tmp_path / "nest").rglob("*.png"))


def test_2_stale_lock_files_in_the_tree_do_not_block(tmp_path: Path) -> None:
    (tmp_path / "nest" / "sub").mkdir(parents=True)
    (tmp_path / "nest" / "sub" / LOCK_NAME).write_text('{"pid": 1, "host": "x", "started": "y"}')
    with JobLock(tmp_path / "nest"):
        pass


def test_2_without_flock_the_recorded_pid_decides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nest" / "sub").mkdir(parents=True)
    lock = tmp_path / "nest" / "sub" / LOCK_NAME
    lock.write_text(f'{{"pid": {os.getpid()}, "host": "another-host", "started": "y"}}')
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` raises ImportError
    with pytest.raises(FolderInUseError, match="on host another-host"):
        JobLock(tmp_path / "nest").acquire()
    lock.unlink()
    with JobLock(tmp_path / "nest"):
        pass


# --- 1: publishing and recording are one decision ----------------------------------------------


def test_1_a_file_that_appears_before_the_publish_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user saves a file at an output's name after the job checked the name (plan,
    writer) and before it renames its result there. Before: the record was written anyway,
    and the rerun "redid" the output over the user's file."""
    sources = images(tmp_path / "in")
    out = tmp_path / "out"
    users = out / "img1.png"
    publish = ImageWriter.publish

    def user_saves_a_file_first(writer: ImageWriter) -> Path:
        if writer.target == users:
            users.write_bytes(b"the user's own file, saved while the job ran")
        return publish(writer)

    monkeypatch.setattr(ImageWriter, "publish", user_saves_a_file_first)
    with BoxRunner() as runner:
        summary = run_job(job(sources, out), runner)
    monkeypatch.undo()
    assert users.read_bytes() == b"the user's own file, saved while the job ran"
    assert [f.source.name for f in summary.failed] == ["img1.png"]
    assert "a file appeared there while this job ran" in summary.failed[0].reason
    assert sorted(i.target.name for i in summary.done) == ["img0.png", "img2.png"]
    assert not list(out.glob("*.part"))

    with BoxRunner() as runner:  # the rerun must not "redo" the user's file
        again = run_job(job(sources, out), runner)
    assert users.read_bytes() == b"the user's own file, saved while the job ran"
    assert not again.done and not again.failed
    reasons = {s.target.name: s.reason for s in again.skipped}
    assert "not made by this job" in reasons["img1.png"]
    assert "complete" in reasons["img0.png"]


def test_1_the_cluster_ledger_leaves_a_file_that_appeared_alone(tmp_path: Path) -> None:
    """The cluster driver publishes workers' results the same way (record, then a rename
    that never replaces, the record withdrawn when it could not)."""
    sources = images(tmp_path / "in", count=1)
    out = tmp_path / "out"
    ledger = JobLedger(job(sources, out), lambda event: None)
    [[index]] = ledger.plan("box:cpu:fp32")
    out.mkdir(exist_ok=True)
    temporary = out / ".img0.png.1.x.part"
    temporary.write_bytes(b"the job's result")
    (out / "img0.png").write_bytes(b"the user's own file")  # appeared after the plan
    digest = file_digest(temporary)
    worker = WorkerInfo(0, "node", "10.0.0.1", os.getpid(), ())
    result = ItemResult(index, "done", temporary=str(temporary), size=digest.size, sha256=digest.sha256)
    ledger.collect(ChunkResult(worker, (result,), 0.1))
    assert (out / "img0.png").read_bytes() == b"the user's own file"
    assert not temporary.exists()
    assert "a file appeared there while this job ran" in ledger.summary.failed[0].reason
    assert Manifest(out).get(out / "img0.png") is None  # the record was withdrawn


# --- 3: a damaged manifest heals ---------------------------------------------------------------


def _manifest_lines(out: Path) -> dict[str, str]:
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    return {json.loads(line)["output"]: line for line in lines}


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_3_records_replaced_by_garbage_are_rechecked_not_lost(tmp_path: Path) -> None:
    sources = images(tmp_path / "in")
    out = tmp_path / "out"
    with BoxRunner() as runner:
        assert len(run_job(job(sources, out), runner).done) == 3
    lines = _manifest_lines(out)
    (out / MANIFEST_NAME).write_text(
        "\x00\x17garbage\n" + "{also garbage, not json\n" + lines["img2.png"] + "\n"
    )
    _flip_a_byte(out / "img1.png")
    intact = (out / "img0.png").stat().st_mtime_ns
    damaged = (out / "img1.png").read_bytes()

    with BoxRunner() as runner:
        summary = run_job(job(sources, out), runner)
    # img0: made again, identical: recorded again, the file untouched
    assert (out / "img0.png").stat().st_mtime_ns == intact
    assert any("identical to this job's result" in n.message for n in summary.notes)
    # img1: differs and no damaged line names it: it may be the user's; left alone, reported
    assert [f.source.name for f in summary.failed] == ["img1.png"]
    assert "lost records (2 damaged line(s))" in summary.failed[0].reason
    assert (out / "img1.png").read_bytes() == damaged
    assert [s.target.name for s in summary.skipped] == ["img2.png"]

    with BoxRunner() as runner:  # never a silent "not made by this job": reported again
        again = run_job(job(sources, out), runner)
        assert [f.source.name for f in again.failed] == ["img1.png"]
        assert {s.target.name for s in again.skipped} == {"img0.png", "img2.png"}
        replaced = run_job(job(sources, out, overwrite=True), runner)
        assert len(replaced.done) == 3
        final = run_job(job(sources, out), runner)
    assert not final.failed and len(final.skipped) == 3
    assert set(_manifest_lines(out)) == {"img0.png", "img1.png", "img2.png"}  # healed


def test_3_a_torn_record_names_its_output_which_is_redone_if_damaged(tmp_path: Path) -> None:
    sources = images(tmp_path / "in")
    out = tmp_path / "out"
    with BoxRunner() as runner:
        run_job(job(sources, out), runner)
        reference = (out / "img1.png").read_bytes()
    lines = _manifest_lines(out)
    torn = lines["img1.png"][: len(lines["img1.png"]) // 2]
    (out / MANIFEST_NAME).write_text(
        lines["img0.png"] + "\n" + torn + "\n" + lines["img2.png"] + "\n"
    )
    _flip_a_byte(out / "img1.png")
    with BoxRunner() as runner:
        summary = run_job(job(sources, out), runner)
        assert not summary.failed
        assert any("its record was damaged; replaced" in n.message for n in summary.notes)
        assert (out / "img1.png").read_bytes() == reference
        assert set(_manifest_lines(out)) == {"img0.png", "img1.png", "img2.png"}  # compacted
        final = run_job(job(sources, out), runner)
    assert [s.reason for s in final.skipped] == ["complete (matches the manifest)"] * 3


def test_3_a_record_cut_inside_a_multibyte_character_is_rechecked(
    tmp_path: Path,
) -> None:
    """A record of a non-ASCII name cut inside a multi-byte character (manifests written
    before issue 25 stored names as raw UTF-8): the torn line is damage, not a crash, and the
    outputs it may have held are rechecked."""
    sources = images(tmp_path / "in", count=1)
    named = sources[0].with_name("café-ü.png")
    sources[0].rename(named)
    out = tmp_path / "out"
    with BoxRunner() as runner:
        run_job(job([named], out), runner)
    record = json.loads((out / MANIFEST_NAME).read_text())
    raw = json.dumps(record, ensure_ascii=False).encode()
    cut = raw.index("é".encode()) + 1  # inside the two bytes of é
    (out / MANIFEST_NAME).write_bytes(raw[:cut])
    with BoxRunner() as runner:
        summary = run_job(job([named], out), runner)
    assert not summary.failed and len(summary.done) == 1
    assert any("identical to this job's result" in n.message for n in summary.notes)


def test_1_fault_injection_a_job_paused_before_its_rename_leaves_the_users_file(
    tmp_path: Path,
) -> None:
    """The same race in a real process: the job is held at its ``rename`` fault point (the
    record fsynced, the rename not done), the user saves a file at the target, the job goes
    on. Then a rerun, as a user would."""
    child = Path(__file__).resolve().parents[1] / "job_child.py"
    repo = Path(__file__).resolve().parents[2]
    [source] = images(tmp_path / "in", count=1)
    out, release = tmp_path / "out", tmp_path / "release"
    env = {**os.environ, "PYTHONPATH": str(repo), "VDSR_FAULT": f"rename:1:pause:{release}"}
    command = [sys.executable, str(child), str(out), str(source)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not Path(f"{release}.reached").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)
    (out / "img0.png").write_bytes(b"saved by the user meanwhile")
    release.touch()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert (out / "img0.png").read_bytes() == b"saved by the user meanwhile"
    env.pop("VDSR_FAULT")
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "img0.png").read_bytes() == b"saved by the user meanwhile"
    assert "not made by this job" in json.loads(rerun.stdout)["skipped"][0]["reason"]


def test_a_temporary_name_left_beside_a_published_output_is_removed(tmp_path: Path) -> None:
    """Publishing is a hard link then removing the temporary name: a job killed between the
    two leaves that name beside a complete, recorded output (found by the SIGKILL sweep in
    CI). The rerun skips the output as complete and removes the dead job's name."""
    sources = images(tmp_path / "in", count=2)
    out = tmp_path / "out"
    with BoxRunner() as runner:
        run_job(job(sources, out), runner)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = out / f".img0.png.{int(gone.stdout)}.abc123.part"
    os.link(out / "img0.png", left)  # as the killed job left it
    with BoxRunner() as runner:
        again = run_job(job(sources, out), runner)
    assert [s.reason for s in again.skipped] == ["complete (matches the manifest)"] * 2
    assert not left.exists() and (out / "img0.png").is_file()
