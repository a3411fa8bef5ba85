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
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from vdsr_deploy.backends.base import Runner, RunnerInfo
from vdsr_deploy.backends.torch import TorchRunner
from vdsr_deploy.batch import JobConfig, plan_outputs, run_job, stop_on_signals
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.imageio import quantize, read_image, write_image
from vdsr_deploy.manifest import MANIFEST_NAME
from vdsr_deploy.model import VDSR
from vdsr_deploy.pipeline import PipelineConfig, upscale_pixels
from vdsr_deploy.tiling import TileConfig
from vdsr_deploy.weights import save_weights

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
    class Recording(Runner):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        @property
        def info(self) -> RunnerInfo:
            return RunnerInfo("recording", "cpu", "fp32")

        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            self.sizes.append(int(batch.shape[0]))
            time.sleep(0.03)  # a busy accelerator: the producer gets ahead
            return runner.infer(batch)

    for index in range(12):
        Image.fromarray(smooth(15, 17, 3) + index).save(tmp_path / f"small{index:02d}.png")
    recording = Recording()
    with recording:
        summary = run_job(job([tmp_path], tmp_path / "out", batch=4), recording)
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
        original = Path.open

        def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
            if self.name == "secret.png":
                raise PermissionError(13, "Permission denied", str(self))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refuse)
    summary = run_job(job([tmp_path / "ok.png", tmp_path / "secret.png"], tmp_path / "out"), runner)
    assert [i.source.name for i in summary.done] == ["ok.png"]
    assert [(f.source.name, f.reason) for f in summary.failed] == [
        ("secret.png", "cannot read (permission denied)")
    ]


def test_unwritable_output_folder(tmp_path: Path, runner: Runner) -> None:
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "a.png")
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "b.png")
    blocked = tmp_path / "out"
    blocked.write_text("a file, not a folder")
    summary = run_job(job([tmp_path / "a.png", tmp_path / "b.png"], blocked), runner)
    assert not summary.done
    assert sorted(f.source.name for f in summary.failed) == ["a.png", "b.png"]
    assert all("cannot write" in f.reason for f in summary.failed)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path: Path, runner: Runner) -> None:
    Image.fromarray(smooth(9, 11, 3)).save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        summary = run_job(job([tmp_path / "a.png"], out), runner)
    finally:
        out.chmod(0o700)
    assert [f.source.name for f in summary.failed] == ["a.png"]


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


def test_stop_request_ends_cleanly_and_resume_finishes(tmp_path: Path, runner: Runner) -> None:
    _many_images(tmp_path / "in")
    out = tmp_path / "out"
    stop = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "done":
            stop.set()

    summary = run_job(job([tmp_path / "in"], out), runner, on_event, stop=stop)
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
    with stop_on_signals() as request:

        def on_event(event: dict[str, Any]) -> None:
            if event["event"] == "done" and not request.event.is_set():
                os.kill(os.getpid(), signum)

        summary = run_job(
            job([tmp_path / "in"], tmp_path / "out"), runner, on_event, stop=request.event
        )
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


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_exit_codes_on_signals(tmp_path: Path, model: VDSR, signum: int, code: int) -> None:
    _many_images(tmp_path / "in", count=40)
    out = tmp_path / "out"
    process = _cli(_cli_args(model, tmp_path, tmp_path / "in", out))
    assert process.stderr is not None
    line = process.stderr.readline()  # "runtime ..." is printed once the handlers are in place
    assert "runtime" in line, line
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and report["exit_code"] == code
    assert len(report["done"]) + len(report["unfinished"]) == 40
    assert not temporaries(out)
