"""Batch jobs: exact outputs, shared batches, bad input, resume, interrupts, naming, CLI.

A tiny seeded VDSR (depth 3, 4 channels: receptive-field radius 3) on the PyTorch CPU
runner keeps every job to a fraction of a second; fixtures are generated with Pillow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import ConfigError, ImageWriteError
from vdsr_deploy.imageio import quantize, read_image, write_image
from vdsr_deploy.job import JobConfig, plan_outputs, run_job, stop_on_signals
from vdsr_deploy.job.budget import MemoryBudget
from vdsr_deploy.job.manifest import MANIFEST_NAME
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo

TILING = TileConfig(tile=40, halo=3)
RNG = np.random.default_rng(11)


@pytest.fixture
def model() -> VDSR:
    torch.manual_seed(0)
    return VDSR(depth=3, channels=4).eval()


@pytest.fixture
def runner(model: VDSR) -> Any:
    with TorchRunner(model, channels_last=False) as active:
        yield active


def noise(shape: tuple[int, ...], dtype: type = np.uint8) -> NDArray[Any]:
    high = 65536 if dtype == np.uint16 else 256
    return RNG.integers(0, high, shape).astype(dtype)


def smooth(height: int, width: int, channels: int) -> NDArray[np.uint8]:
    """Compressible content (gradients), so files behave like photos."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [((x * (3 + c) + y * (5 - c)) % 256) for c in range(channels)]
    return np.stack(planes, axis=2).astype(np.uint8)


def job(
    inputs: list[Path] | list[str],
    output: Path,
    *,
    scale: float = 2.0,
    batch: int = 1,
    **options: Any,
) -> JobConfig:
    pipeline = PipelineConfig(scale=scale, tiling=options.pop("tiling", TILING), batch=batch)
    return JobConfig(
        inputs=tuple(str(i) for i in inputs), output=output, pipeline=pipeline, **options
    )


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def expected_output(runner: Runner, source: Path, scale: float = 2.0) -> NDArray[Any]:
    decoded = read_image(source)
    pixels = upscale_pixels(
        decoded.pixels, runner, PipelineConfig(scale=scale, tiling=TILING, batch=1)
    )
    return quantize(pixels, decoded.bit_depth)


# --- results ------------------------------------------------------------------------------


def test_outputs_equal_the_single_image_pipeline(tmp_path: Path, runner: Runner) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(noise((61, 75, 3))).save(src / "rgb.png")  # many bands at x2 with tile 40
    Image.fromarray(noise((29, 31, 4)), mode="RGBA").save(src / "rgba.png")
    Image.fromarray(noise((41, 23))).save(src / "gray.png")
    Image.fromarray(noise((17, 19, 2)), mode="LA").save(src / "la.png")
    write_image(src / "rgb16.png", noise((27, 33, 3), np.uint16) / 65535.0, bit_depth=16)
    for scale in (2.0, 3.0, 2.5):
        out = tmp_path / f"out{scale}"
        summary = run_job(job([src], out, scale=scale), runner)
        assert not summary.failed and len(summary.done) == 5
        for source in sorted(src.iterdir()):
            produced = read_image(out / source.name)
            np.testing.assert_array_equal(produced.samples, expected_output(runner, source, scale))
        assert read_image(out / "rgb16.png").bit_depth == 16


def test_tiles_of_several_images_share_a_batch(tmp_path: Path, runner: Runner) -> None:
    """The first runner call is held until the producer has filled the band queue (seen
    through the job's own ``begin`` events), so the next batch is full by construction."""
    begun = threading.Semaphore(0)

    class Recording(Runner):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("recording", "cpu", "fp32")

        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            if not self.sizes:  # a busy accelerator: the producer gets ahead meanwhile
                # image k + 4 begins only once image k + 3's band is queued: with k images
                # in this call, the queue (size 4) then holds four more, all ready at once
                for _ in range(min(12, batch.shape[0] + 5)):
                    assert begun.acquire(timeout=120), "the producer stopped"
            self.sizes.append(int(batch.shape[0]))
            return runner.infer(batch)

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "begin":
            begun.release()

    for index in range(12):
        Image.fromarray(smooth(15, 17, 3) + index).save(tmp_path / f"small{index:02d}.png")
    recording = Recording()
    with recording:
        summary = run_job(job([tmp_path], tmp_path / "out", batch=4, queue_size=4), recording, on_event)
    assert len(summary.done) == 12
    assert sum(recording.sizes) == 12  # one 30x34 tile per image
    assert max(recording.sizes) == 4  # four different images in one runner call


def test_huge_image_memory_is_bounded(tmp_path: Path, runner: Runner) -> None:
    """A 360x360 image at x2 with a 16 MiB budget: traced peak far below whole-image planes.

    Whole-image preparation alone peaks at ~71 MiB here (float64 YCbCr planes of 720x720x3
    and their 6-tap gathers); bands keep the whole job under the budget plus small change.
    """
    Image.fromarray(smooth(360, 360, 3)).save(tmp_path / "big.png")
    tiling = TileConfig(tile=64, halo=3)
    tracemalloc.start()
    try:
        summary = run_job(
            job([tmp_path / "big.png"], tmp_path / "out", memory_mb=16, tiling=tiling, batch=8),
            runner,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(summary.done) == 1
    assert peak < 24 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    reference = upscale_pixels(
        read_image(tmp_path / "big.png").pixels,
        runner,
        PipelineConfig(scale=2, tiling=tiling, batch=1),
    )
    produced = read_image(tmp_path / "out" / "big.png").samples.astype(int)
    assert np.abs(produced - quantize(reference, 8).astype(int)).max() <= 1  # batch size may differ


def test_memory_budget_waits_for_room_and_runs_a_big_item_alone() -> None:
    """A request that does not fit waits (here: gives up at once, being halted) and holds
    nothing; one larger than the whole budget runs when nothing else is held."""
    budget = MemoryBudget(10)
    never, now = (lambda: False), (lambda: True)
    assert budget.acquire(6, never)
    assert not budget.acquire(5, now) and budget.used == 6  # would have to wait
    assert budget.acquire(4, now) and budget.used == 10  # fits: no wait, so not halted
    budget.release(10)
    assert budget.acquire(25, now) and budget.used == 25  # alone, larger than the budget
    assert not budget.acquire(1, now)
    budget.release(25)
    assert budget.used == 0


# --- bad input ----------------------------------------------------------------------------


def _bad_folder(root: Path) -> dict[str, str]:
    """Files of every awkward kind; returns name -> expected failure fragment ('' = succeeds)."""
    root.mkdir()
    expected: dict[str, str] = {}
    Image.fromarray(smooth(21, 27, 3)).save(root / "good.png")
    expected["good.png"] = ""
    (root / "empty.png").write_bytes(b"")
    expected["empty.png"] = "empty file (0 bytes)"
    (root / "text.jpg").write_text("not an image\n")
    expected["text.jpg"] = "not a recognised image format"
    (root / "corrupt.png").write_bytes(RNG.integers(0, 256, 3000).astype(np.uint8).tobytes())
    expected["corrupt.png"] = "not a recognised image format"
    Image.fromarray(noise((40, 40, 3))).save(root / "whole.png")
    data = (root / "whole.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "whole.png").unlink()
    expected["truncated.png"] = "corrupt or truncated"
    Image.fromarray(smooth(120, 130, 3)).save(root / "huge.png")
    expected["huge.png"] = "exceeds the limit of 10,000"
    Image.fromarray(noise((13, 15, 4)), mode="CMYK").save(root / "cmyk.jpg")
    expected["cmyk.jpg"] = ""
    palette = Image.fromarray((np.arange(11 * 9).reshape(11, 9) % 3).astype(np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.save(root / "palette.png", transparency=1)
    expected["palette.png"] = ""
    Image.fromarray(noise((9, 14, 2)), mode="LA").save(root / "la.png")
    expected["la.png"] = ""
    Image.fromarray(noise((13, 11), np.uint16)).save(root / "g16.png")
    expected["g16.png"] = ""
    write_image(root / "rgb16.png", noise((10, 12, 3), np.uint16) / 65535.0, bit_depth=16)
    expected["rgb16.png"] = ""
    Image.fromarray(noise((12, 9), np.uint16)).save(root / "g16.tif")
    expected["g16.tif"] = ""
    frames = [Image.fromarray(smooth(10, 12, 3) * (i + 1)) for i in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    expected["anim.gif"] = ""
    frames[0].save(
        root / "anim.webp", save_all=True, append_images=frames[1:], duration=50, lossless=True
    )
    expected["anim.webp"] = ""
    spaced = root / "dossier été" / "ça va 图.png"
    spaced.parent.mkdir()
    Image.fromarray(smooth(8, 9, 3)).save(spaced)
    expected["dossier été/ça va 图.png"] = ""
    return expected


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path: Path, runner: Runner) -> None:
    expected = _bad_folder(tmp_path / "in")
    events: list[dict[str, Any]] = []
    summary = run_job(
        job([tmp_path / "in"], tmp_path / "out", max_pixels=10_000), runner, events.append
    )
    failed = {f.source.relative_to(tmp_path / "in").as_posix(): f.reason for f in summary.failed}
    assert set(failed) == {name for name, fragment in expected.items() if fragment}
    for name, reason in failed.items():
        assert expected[name] in reason, (name, reason)
    done = {i.source.relative_to(tmp_path / "in").as_posix() for i in summary.done}
    assert done == {name for name, fragment in expected.items() if not fragment}
    out = tmp_path / "out"
    assert read_image(out / "cmyk.jpg").channels == 3
    assert read_image(out / "palette.png").channels == 4
    assert read_image(out / "la.png").channels == 2
    for name in ("g16.png", "rgb16.png", "g16.tif"):
        assert read_image(out / name).bit_depth == 16, name
    assert (out / "anim.png").is_file() and (out / "anim.png").stat().st_size > 0  # GIF -> PNG
    assert (out / "dossier été" / "ça va 图.png").is_file()
    notes = {(n.source.name, n.message) for n in summary.notes}
    assert ("anim.gif", "animated (3 frames): first frame only") in notes
    assert ("anim.webp", "animated (3 frames): first frame only") in notes
    assert any(name == "cmyk.jpg" and "CMYK" in message for name, message in notes)
    report = summary.to_dict()
    assert {Path(f["file"]).name for f in report["failed"]} == {Path(n).name for n in failed}
    assert all(f["reason"] for f in report["failed"])
    assert sum(e["event"] == "failed" for e in events) == len(failed)
    assert not temporaries(out)


def test_unreadable_file_is_a_failure(
    tmp_path: Path, runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image.fromarray(smooth(9, 9, 3)).save(tmp_path / "ok.png")
    Image.fromarray(smooth(9, 9, 3)).save(tmp_path / "secret.png")
    if os.geteuid() != 0:
        (tmp_path / "secret.png").chmod(0)
    else:  # root ignores permissions: simulate the refusal where the file is opened
        original = os.open

        def refuse(path: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(path).name == "secret.png":
                raise PermissionError(13, "Permission denied", str(path))
            return original(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    summary = run_job(job([tmp_path / "ok.png", tmp_path / "secret.png"], tmp_path / "out"), runner)
    assert [i.source.name for i in summary.done] == ["ok.png"]
    assert [(f.source.name, f.reason) for f in summary.failed] == [
        ("secret.png", "cannot read (permission denied)")
    ]


def test_output_folder_that_is_a_file(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (6): said "File exists" per file; now one sentence for the job."""
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "a.png")
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "b.png")
    blocked = tmp_path / "out"
    blocked.write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"out: is a file, expected a folder$"):
        run_job(job([tmp_path / "a.png", tmp_path / "b.png"], blocked), runner)
    with pytest.raises(ConfigError, match=r"out: is a file, expected a folder$"):
        run_job(job([tmp_path / "a.png", tmp_path / "b.png"], blocked / "deeper"), runner)
    assert blocked.read_text() == "a file, not a folder"


def test_unwritable_output_subfolder(tmp_path: Path, runner: Runner) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "in" / "a.png")
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "in" / "sub" / "b.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("a file, not a folder")
    summary = run_job(job([tmp_path / "in"], tmp_path / "out"), runner)
    assert [i.source.name for i in summary.done] == ["a.png"]
    assert [f.source.name for f in summary.failed] == ["b.png"]
    assert "cannot write" in summary.failed[0].reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path: Path, runner: Runner) -> None:
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError, match="cannot write in the output folder"):
            run_job(job([tmp_path / "a.png"], out), runner)
    finally:
        out.chmod(0o700)


# --- resume -------------------------------------------------------------------------------


def _three_images(folder: Path) -> None:
    folder.mkdir()
    for index, (h, w) in enumerate([(23, 31), (37, 19), (45, 45)]):
        Image.fromarray(smooth(h, w, 3) + index).save(folder / f"img{index}.png")


def test_resume_skips_complete_outputs_and_redoes_the_rest(tmp_path: Path, runner: Runner) -> None:
    _three_images(tmp_path / "in")
    out = tmp_path / "out"
    config = job([tmp_path / "in"], out)
    first = run_job(config, runner)
    assert len(first.done) == 3 and (out / MANIFEST_NAME).is_file()
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}

    again = run_job(config, runner)
    assert not again.done and len(again.skipped) == 3
    assert all("complete" in s.reason for s in again.skipped)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == stamps

    (out / "img0.png").write_bytes((out / "img0.png").read_bytes()[:100])  # damaged output
    (out / "img1.png").unlink()  # lost output
    (out / ".img2.png.abc123.part").write_bytes(b"left by a killed run")
    third = run_job(config, runner)
    assert sorted(i.target.name for i in third.done) == ["img0.png", "img1.png"]
    assert [s.target.name for s in third.skipped] == ["img2.png"]
    assert any("does not match its record" in n.message for n in third.notes)
    np.testing.assert_array_equal(
        read_image(out / "img0.png").samples, expected_output(runner, tmp_path / "in" / "img0.png")
    )

    Image.fromarray(smooth(23, 31, 3) + 9).save(tmp_path / "in" / "img0.png")  # input changed
    fourth = run_job(config, runner)
    assert [i.target.name for i in fourth.done] == ["img0.png"]

    overwrite = run_job(job([tmp_path / "in"], out, overwrite=True), runner)
    assert len(overwrite.done) == 3

    other = run_job(job([tmp_path / "in"], out, scale=3.0), runner)
    assert not other.done and all("other settings" in s.reason for s in other.skipped)


def test_existing_file_not_made_by_the_job_is_kept(tmp_path: Path, runner: Runner) -> None:
    _three_images(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "img1.png").write_bytes(b"the user's own file")
    summary = run_job(job([tmp_path / "in"], out), runner)
    assert len(summary.done) == 2
    assert [(s.target.name, "not made by this job" in s.reason) for s in summary.skipped] == [
        ("img1.png", True)
    ]
    assert (out / "img1.png").read_bytes() == b"the user's own file"


# --- stopping -----------------------------------------------------------------------------


def _many_images(folder: Path, count: int = 10) -> None:
    folder.mkdir()
    for index in range(count):
        Image.fromarray(smooth(50 + index, 47, 3)).save(folder / f"f{index:02d}.png")


def _assert_clean(out: Path, summary: Any) -> None:
    assert not temporaries(out)
    made = {p.name for p in out.glob("*.png")}
    assert made == {i.target.name for i in summary.done}
    for item in summary.done:
        read_image(item.target)  # complete and valid


class StopAfterFirstDone(Runner):
    """Wraps a runner; on its first call after an output was finished (``first_done``), it
    calls ``stop()``. Inference runs in the job's calling thread, so the stop lands at a
    fixed point of the job, never in a race with it: at least one output is complete, and
    the bounded queues leave most of the ten images unstarted."""

    def __init__(self, inner: Runner, stop: Callable[[], None]) -> None:
        super().__init__()
        self.inner = inner
        self.stop = stop
        self.first_done = threading.Event()
        self.stopped = False

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("stopping", "cpu", "fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.first_done.is_set() and not self.stopped:
            self.stopped = True
            self.stop()
        return self.inner.infer(batch)

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "done":
            self.first_done.set()


def test_stop_request_ends_cleanly_and_resume_finishes(tmp_path: Path, runner: Runner) -> None:
    _many_images(tmp_path / "in")
    out = tmp_path / "out"
    stop = threading.Event()
    with StopAfterFirstDone(runner, stop.set) as stopping:
        summary = run_job(job([tmp_path / "in"], out), stopping, stopping.on_event, stop=stop)
    assert stopping.stopped
    assert summary.interrupted and not summary.ok
    assert 1 <= len(summary.done) < 10
    assert len(summary.done) + len(summary.unfinished) == 10
    _assert_clean(out, summary)
    rest = run_job(job([tmp_path / "in"], out), runner)
    assert len(rest.skipped) == len(summary.done) and len(rest.done) == 10 - len(summary.done)


def test_ctrl_c_inside_the_runner_leaves_no_partial_file(tmp_path: Path, runner: Runner) -> None:
    class Interrupted(Runner):
        calls = 0

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("interrupting", "cpu", "fp32")

        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            Interrupted.calls += 1
            if Interrupted.calls == 6:
                raise KeyboardInterrupt
            return runner.infer(batch)

    _many_images(tmp_path / "in")
    with Interrupted() as interrupting:
        summary = run_job(job([tmp_path / "in"], tmp_path / "out"), interrupting)
    assert summary.interrupted
    _assert_clean(tmp_path / "out", summary)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_the_job(tmp_path: Path, runner: Runner, signum: int, code: int) -> None:
    _many_images(tmp_path / "in")
    # sent from the main thread (where inference runs): the handler runs right away
    stopping = StopAfterFirstDone(runner, lambda: os.kill(os.getpid(), signum))
    with stop_on_signals() as request, stopping:
        summary = run_job(
            job([tmp_path / "in"], tmp_path / "out"), stopping, stopping.on_event, stop=request.event
        )
    assert stopping.stopped and 1 <= len(summary.done) < 10
    assert summary.interrupted and request.signum == signum and request.exit_code == code
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    _assert_clean(tmp_path / "out", summary)


# --- naming -------------------------------------------------------------------------------


def test_names_never_collide_and_inputs_are_never_overwritten(tmp_path: Path) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        Image.fromarray(smooth(5, 5, 3)).save(tmp_path / folder / "a.png")
    Image.fromarray(smooth(5, 5, 3)).save(tmp_path / "x" / "a.jpg")
    items, failures = plan_outputs(
        job([tmp_path / "x", tmp_path / "y"], tmp_path / "out", fmt="png")
    )
    assert not failures
    targets = sorted(i.target.relative_to(tmp_path / "out").as_posix() for i in items)
    assert targets == ["x/a-jpg.png", "x/a.png", "y/a.png"]
    assert any(i.note and "renamed" in i.note for i in items)
    # one folder: its tree directly under the output
    items, _ = plan_outputs(job([tmp_path / "x"], tmp_path / "out"))
    assert sorted(i.target.name for i in items) == ["a.jpg", "a.png"]
    # output == input folder: refused per file, never overwritten
    items, failures = plan_outputs(job([tmp_path / "y"], tmp_path / "y"))
    assert not items and "would overwrite an input" in failures[0].reason
    # output inside the input folder: earlier outputs are not inputs
    (tmp_path / "x" / "up").mkdir()
    Image.fromarray(smooth(5, 5, 3)).save(tmp_path / "x" / "up" / "old.png")
    items, _ = plan_outputs(job([tmp_path / "x"], tmp_path / "x" / "up"))
    assert sorted(i.source.name for i in items) == ["a.jpg", "a.png"]
    # missing input
    _, failures = plan_outputs(job([tmp_path / "nothing*.png"], tmp_path / "out"))
    assert failures[0].reason == "no such file, folder, or matching glob"
    with pytest.raises(ConfigError, match="is a file name"):
        plan_outputs(job([tmp_path / "x"], tmp_path / "one.png"))


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        job([tmp_path], tmp_path / "out", memory_mb=1)
    with pytest.raises(ConfigError):
        job([tmp_path], tmp_path / "out", fmt="gif")
    with pytest.raises(ConfigError):
        job([tmp_path], tmp_path / "out", quality=0)


# --- the command line ---------------------------------------------------------------------


def _cli(args: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "vdsr_deploy.cli", "upscale", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal to it never reaches pytest's process group
        **kwargs,
    )


def _cli_args(model: VDSR, tmp_path: Path, source: Path, out: Path) -> list[str]:
    weights = save_weights(model, tmp_path / "tiny.safetensors")
    return [
        str(source),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "--backend",
        "torch",
        "--tile",
        "40",
        "--halo",
        "3",
        "--batch",
        "2",
        "--quiet",
        "--report",
        str(tmp_path / "r.json"),
    ]


def test_cli_reports_every_failure_without_traceback(tmp_path: Path, model: VDSR) -> None:
    _bad_folder(tmp_path / "in")
    process = _cli(
        [*_cli_args(model, tmp_path, tmp_path / "in", tmp_path / "out"), "--max-pixels", "10000"]
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr + stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["failed"]) == 5 and report["exit_code"] == 1
    for failure in report["failed"]:
        assert Path(failure["file"]).name in stderr and failure["reason"] in stderr.replace(
            "\n", " "
        )


# The CLI in a child process whose first inference result waits for a line on stdin; the
# test sends the signal, then that line: the signal always arrives while the job runs.
GATED_CLI = """
import sys
import vdsr_deploy.planes.ensemble as plane_choice  # the one ensemble-or-not selector
from vdsr_deploy.cli import main

real = plane_choice.upscale_planes

def gated(*args, **kwargs):
    for index, item in enumerate(real(*args, **kwargs)):
        if index == 0:
            print("first result", file=sys.stderr, flush=True)
            sys.stdin.readline()
        yield item

plane_choice.upscale_planes = gated
sys.argv = ["vdsr", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_exit_codes_on_signals(tmp_path: Path, model: VDSR, signum: int, code: int) -> None:
    _many_images(tmp_path / "in", count=40)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-c", GATED_CLI, "upscale", *_cli_args(model, tmp_path, tmp_path / "in", out)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal to it never reaches pytest's process group
    )
    assert process.stderr is not None and process.stdin is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "first result" in line:
            break
    assert any("runtime" in line for line in seen), seen
    process.send_signal(signum)
    _, stderr = process.communicate("go\n", timeout=300)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and report["exit_code"] == code
    assert len(report["done"]) + len(report["unfinished"]) == 40 and len(report["done"]) < 40
    assert not temporaries(out)


# --- jobs that survive each other, torn files and odd inputs (issue 14) --------------------

CHILD = Path(__file__).resolve().parents[1] / "job_child.py"
REPO = Path(__file__).resolve().parents[2]


def _child(out: Path, inputs: list[Path], *extra: str, fault: str | None = None) -> Any:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("VDSR_FAULT", None)
    if fault:
        env["VDSR_FAULT"] = fault
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(out), *map(str, inputs), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal to it never reaches pytest's process group
    )


def _finish(process: Any, timeout: float = 120) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def _wait_for(path: Path, process: Any, timeout: float = 60) -> None:
    """Wait until a paused child has reached its fault point (it creates ``path``)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _wait_delivered(pid: int, signum: int, timeout: float = 60) -> None:
    """Wait until a signal sent to ``pid`` is no longer pending (Linux /proc)."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("needs /proc to see pending signals")
    deadline = time.monotonic() + timeout
    while True:
        fields = dict(
            line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
        )
        if not int(fields["ShdPnd"].strip(), 16) >> (signum - 1) & 1:
            return
        assert time.monotonic() < deadline, "the signal was never delivered"
        time.sleep(0.01)


def _crash_inputs(folder: Path) -> list[Path]:
    """A multi-band PNG, two small ones and a JPEG (Pillow-encoded output)."""
    folder.mkdir()
    Image.fromarray(smooth(61, 75, 3)).save(folder / "big.png")
    Image.fromarray(smooth(23, 31, 3) + 7).save(folder / "small.png")
    Image.fromarray(smooth(37, 19, 4) + 3, mode="RGBA").save(folder / "alpha.png")
    Image.fromarray(smooth(45, 45, 3) + 1).save(folder / "photo.jpg", quality=90)
    return [folder]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_torn_manifest_line_loses_no_record(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (1), the reported repro. Failed before: the next record was appended onto the
    torn line, so new.png became "not made by this job" and kept its stale pixels."""
    _three_images(tmp_path / "in")
    out = tmp_path / "out"
    config = job([tmp_path / "in"], out)
    run_job(config, runner)
    with (out / MANIFEST_NAME).open("a") as manifest:
        manifest.write('{"output": "zz.png", "size": 1')  # a kill mid-append
    Image.fromarray(smooth(20, 22, 3)).save(tmp_path / "in" / "new.png")
    assert [i.target.name for i in run_job(config, runner).done] == ["new.png"]
    again = run_job(config, runner)
    assert not again.done and all("complete" in s.reason for s in again.skipped)
    Image.fromarray(smooth(20, 22, 3) + 50).save(tmp_path / "in" / "new.png")  # source changed
    changed = run_job(config, runner)
    assert [i.target.name for i in changed.done] == ["new.png"]
    np.testing.assert_array_equal(
        read_image(out / "new.png").samples, expected_output(runner, tmp_path / "in" / "new.png")
    )


def test_tiff_inputs_keep_no_stale_layout_tags(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (2). Failed before: every 8-bit TIFF (and multi-frame TIFF) failed with
    "codec configuration error", and TIFF -> JPEG wrote ImageWidth 64 on a 128-wide JPEG."""
    src = tmp_path / "in"
    src.mkdir()
    exif = Image.Exif()
    exif[271] = "Camera"  # Make: real metadata, kept
    Image.fromarray(smooth(48, 64, 3)).save(src / "t.tiff", exif=exif, dpi=(300, 300))
    Image.fromarray(smooth(20, 30, 1)[..., 0]).save(src / "gray.tif")
    frames = [Image.fromarray(smooth(24, 32, 3) + i) for i in range(2)]
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    summary = run_job(job([src], tmp_path / "out"), runner)
    assert not summary.failed, summary.failed
    assert sorted(i.target.name for i in summary.done) == ["gray.tif", "pages.tif", "t.tif"]
    with Image.open(tmp_path / "out" / "t.tif") as produced:
        assert produced.size == (128, 96) and produced.getexif()[271] == "Camera"
        assert produced.info["dpi"] == (300, 300)
    np.testing.assert_array_equal(
        read_image(tmp_path / "out" / "t.tif").samples, expected_output(runner, src / "t.tiff")
    )
    jpeg = run_job(job([src / "t.tiff"], tmp_path / "t.jpg"), runner)
    assert len(jpeg.done) == 1
    with Image.open(tmp_path / "t.jpg") as produced:
        tags = produced.getexif()
        assert produced.size == (128, 96) and tags[271] == "Camera"
        assert not {256, 257, 258, 273, 279} & set(tags), dict(tags)


def test_second_job_on_a_held_folder_is_refused(tmp_path: Path) -> None:
    """Issue 14 (3), two real processes. Failed before: the second job removed the first
    one's .part files (spurious "cannot write (FileNotFoundError(2, ...))" failures)."""
    big = _crash_inputs(tmp_path / "in")[0] / "big.png"  # one image: one .part at the pause
    reference = tmp_path / "reference"
    assert _finish(_child(reference, [big]))[0] == 0
    out = tmp_path / "out"
    release = tmp_path / "release"
    first = _child(out, [big], fault=f"write:1:pause:{release}")
    try:
        _wait_for(Path(f"{release}.reached"), first)
        [part] = temporaries(out)
        assert f".big.png.{first.pid}." in part.name
        code, _, stderr = _finish(_child(out, [tmp_path / "in"]))
        assert code == 1
        assert "another vdsr job is writing to this folder" in stderr
        assert f"PID {first.pid} on host" in stderr and "Traceback" not in stderr
        assert temporaries(out) == [part]  # the live job's file was left alone
    finally:
        release.touch()
    code, stdout, stderr = _finish(first)
    assert code == 0, stderr
    assert not json.loads(stdout)["failed"]
    assert _outputs(out) == _outputs(reference)
    assert not (out / ".vdsr-lock").exists() and not temporaries(out)


def test_lock_and_temporaries_of_a_dead_job_are_taken_over(tmp_path: Path) -> None:
    """Issue 14 (3): a job killed with SIGKILL leaves its lock file and a .part file; the
    next job takes the lock over and removes the dead job's temporary file."""
    inputs = _crash_inputs(tmp_path / "in")
    out = tmp_path / "out"
    killed = _child(out, inputs, fault="write:2:kill")
    assert _finish(killed)[0] == -signal.SIGKILL
    lock = json.loads((out / ".vdsr-lock").read_text())
    assert lock["pid"] == killed.pid
    assert temporaries(out)
    code, stdout, stderr = _finish(_child(out, inputs))
    assert code == 0, stderr
    assert len(json.loads(stdout)["done"]) == 4
    assert not temporaries(out) and not (out / ".vdsr-lock").exists()


@pytest.mark.parametrize("step", ["write", "finish", "manifest", "rename", "renamed"])
def test_sigkill_at_any_step_resumes_to_identical_outputs(tmp_path: Path, step: str) -> None:
    """Fault injection: SIGKILL at the 1st and 3rd time a job reaches ``step`` (a torn
    manifest line for "manifest"), then resume: outputs byte-identical to an uninterrupted
    run, no temporary file left, and a third run finds every output complete. The sweep of
    every occurrence is benchmarks/kill_resume.py."""
    inputs = _crash_inputs(tmp_path / "in")
    reference = tmp_path / "reference"
    assert _finish(_child(reference, inputs))[0] == 0
    for occurrence in (1, 3):
        out = tmp_path / f"out-{occurrence}"
        killed = _finish(_child(out, inputs, fault=f"{step}:{occurrence}:kill"))
        assert killed[0] == -signal.SIGKILL, killed
        code, _, stderr = _finish(_child(out, inputs))
        assert code == 0, stderr
        assert _outputs(out) == _outputs(reference)
        assert not temporaries(out)
        code, stdout, _ = _finish(_child(out, inputs))
        report = json.loads(stdout)
        assert code == 0 and not report["done"]
        assert [s["reason"] for s in report["skipped"]] == ["complete (matches the manifest)"] * 4


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    """Issue 14 (5): a save thread is held inside a write (as by a long encode); the first
    SIGINT cannot end the job, the second must end the process at once. Failed before: the
    second SIGINT raised KeyboardInterrupt in the main thread and the process then waited
    for the save thread forever."""
    inputs = _crash_inputs(tmp_path / "in")
    out = tmp_path / "out"
    release = tmp_path / "never"
    process = _child(out, inputs, fault=f"write:1:pause:{release}")
    _wait_for(Path(f"{release}.reached"), process)
    process.send_signal(signal.SIGINT)
    _wait_delivered(process.pid, signal.SIGINT)  # else the kernel merges the two signals
    process.send_signal(signal.SIGINT)
    code, _, stderr = _finish(process, timeout=60)
    assert code == 130, stderr
    assert "Traceback" not in stderr
    assert not temporaries(out)  # the held write's temporary file was removed


@pytest.mark.parametrize("device_path", [False, True])
def test_stop_is_checked_between_runner_calls(
    tmp_path: Path, runner: Runner, device_path: bool
) -> None:
    """Issue 14 (5), deterministic: the tiles of one band of a big image take many runner
    calls; a stop request during one of them means no further call. Failed before: the
    whole band (14 calls here) ran first."""

    class Stopping(Runner):
        calls = 0

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("stopping", "cpu", "fp32")

        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            Stopping.calls += 1
            if Stopping.calls == 2:
                stop.set()
            return runner.infer(batch)

    Image.fromarray(smooth(30, 240, 3)).save(tmp_path / "wide.png")
    stop = threading.Event()
    with Stopping() as stopping:
        summary = run_job(
            job([tmp_path / "wide.png"], tmp_path / "out"),
            stopping,
            stop=stop,
            device_path=device_path,
        )
    assert summary.interrupted and not summary.done and not summary.failed
    assert Stopping.calls == 2
    assert not temporaries(tmp_path / "out")


def test_fifo_device_and_socket_inputs(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (4) and (6). Failed before: the FIFO hung the job (it was opened for
    reading); when walking, such entries were skipped without a word."""
    import socket

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(smooth(9, 11, 3)).save(src / "good.png")
    os.mkfifo(src / "pipe.png")
    (src / "zero.png").symlink_to("/dev/zero")
    (src / "gone.png").symlink_to(src / "nothing-here.png")
    (src / "loop.png").symlink_to(src / "loop.png")
    server = socket.socket(socket.AF_UNIX)
    short = Path(f"/tmp/vdsr-{os.getpid()}-sock.png")  # AF_UNIX paths are short
    short.unlink(missing_ok=True)
    server.bind(str(short))
    try:
        walked = run_job(job([src], tmp_path / "out"), runner)
        assert [i.source.name for i in walked.done] == ["good.png"]
        assert not walked.failed
        reasons = {s.source.name: s.reason for s in walked.skipped}
        assert reasons == {
            "pipe.png": "is a FIFO (named pipe), not a regular file; not read",
            "zero.png": "is a character device, not a regular file; not read",
            "gone.png": "broken link (its target does not exist)",
            "loop.png": "link that cannot be followed (Too many levels of symbolic links)",
        }
        explicit = [src / "pipe.png", src / "zero.png", short, src / "gone.png"]
        given = run_job(job(explicit, tmp_path / "out2"), runner)
        assert {f.source.name: f.reason for f in given.failed} == {
            "pipe.png": "is a FIFO (named pipe), not a regular file; not read",
            "zero.png": "is a character device, not a regular file; not read",
            short.name: "is a socket, not a regular file; not read",
            "gone.png": "broken link (its target does not exist)",
        }
    finally:
        server.close()
        short.unlink(missing_ok=True)


def test_explicit_folder_named_like_an_image_is_walked(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (6): docs/batch.md said it fails; a folder given as input is walked whatever
    its name (as folders met while walking are), and the doc now says so."""
    folder = tmp_path / "album.png"
    folder.mkdir()
    Image.fromarray(smooth(9, 11, 3)).save(folder / "a.png")
    summary = run_job(job([folder], tmp_path / "out"), runner)
    assert [i.target.name for i in summary.done] == ["a.png"] and not summary.failed


def test_vanished_temporary_file_is_a_sentence(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (6): a temporary file removed under a running job (what a second job used to
    do) gave "cannot write (FileNotFoundError(2, 'No such file or directory'))"."""
    Image.fromarray(smooth(61, 75, 3)).save(tmp_path / "big.png")
    out = tmp_path / "out"

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "band" and event["band"] == 1:
            for part in temporaries(out):
                part.unlink()

    summary = run_job(job([tmp_path / "big.png"], out), runner, on_event)
    [failure] = summary.failed
    assert "Error(" not in failure.reason and "No such file or directory" in failure.reason
    assert "cannot write" in failure.reason, failure.reason


def test_onnxruntime_device_is_honoured_or_refused(tmp_path: Path) -> None:
    """Issue 14 (6): --device was ignored by the ONNX Runtime backend."""
    from vdsr_deploy.backends.onnxruntime import device_id
    from vdsr_deploy.backends.registry import RunnerSpec
    from vdsr_deploy.runtime.prepare import open_runner

    assert device_id("cuda:1", "cuda") == 1
    assert device_id("auto", "tensorrt") == 0
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"unused: refused before it is read")
    for device, provider in (("cuda", "cpu"), ("cuda:0", "cpu"), ("cpu", "cuda")):
        spec = RunnerSpec(backend="onnxruntime", device=device, provider=provider, onnx=onnx)
        with pytest.raises(ConfigError, match=f"--device {device}"):
            open_runner(spec, tiling=TILING, batch=1)


def test_recorded_output_replaced_by_a_fifo_is_not_opened(tmp_path: Path, runner: Runner) -> None:
    """Checking a recorded output hashes it; a FIFO in its place would block that read."""
    _three_images(tmp_path / "in")
    out = tmp_path / "out"
    run_job(job([tmp_path / "in"], out), runner)
    (out / "img1.png").unlink()
    os.mkfifo(out / "img1.png")
    again = run_job(job([tmp_path / "in"], out), runner)
    reasons = {s.target.name: s.reason for s in again.skipped if s.target is not None}
    assert reasons["img1.png"] == "exists and is not a regular file; left as it is"
    assert not again.done and not again.failed


def test_stop_interrupts_the_runner_call_in_flight(tmp_path: Path, runner: Runner) -> None:
    """Issue 14 (5): a runner call can take seconds (a batch of big tiles on a CPU). A stop
    request interrupts it (Runner.interrupt; ONNX Runtime: RunOptions.terminate) instead of
    waiting for it. Deterministic: the call waits for its interrupt (60 s at most)."""

    class Slow(Runner):
        interrupted = threading.Event()

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("slow", "cpu", "fp32")

        def interrupt(self) -> None:
            Slow.interrupted.set()

        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            stop.set()
            if Slow.interrupted.wait(60):
                raise RuntimeError("interrupted")
            return runner.infer(batch)

    Image.fromarray(smooth(30, 240, 3)).save(tmp_path / "wide.png")
    stop = threading.Event()
    with Slow() as slow:
        summary = run_job(job([tmp_path / "wide.png"], tmp_path / "out"), slow, stop=stop)
    assert Slow.interrupted.is_set()
    assert summary.interrupted and not summary.done and not summary.failed
    assert not temporaries(tmp_path / "out")
