"""Video in, video out (issue 24): every stream kept, frame-exact, resumable, clear errors.

Clips are made here with PyAV (tests/video_clips.py): odd sizes, 12-30 frames, VFR
timestamps, FLAC audio, SRT subtitles, chapters, BT.709 tags, a rotation; 8- and 10-bit.
The network is a tiny seeded VDSR on the PyTorch CPU runner (or a numpy stand-in in the
processes that are killed), so a job takes well under a second.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from video_clips import MS, make_clip, packets, video_pts

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import ConfigError, VideoReadError
from vdsr_deploy.imageio import read_image, write_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.job.video import VideoJobConfig, plan_video_job, run_video_job
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes import luma
from vdsr_deploy.planes.pipeline import PipelineConfig, upscale_plane
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.videoio import frames as videoframes
from vdsr_deploy.videoio import probe_video

av = pytest.importorskip("av")

TILING = TileConfig(tile=24, halo=3)  # several tiles per frame: the tiles of frames share batches
PIPELINE = PipelineConfig(scale=2.0, tiling=TILING, batch=3)
CHILD = Path(__file__).resolve().parents[1] / "video_child.py"


@pytest.fixture
def runner() -> Any:
    torch.manual_seed(0)
    with TorchRunner(VDSR(depth=3, channels=4).eval(), channels_last=False) as active:
        yield active


def config(source: Path, target: Path, **changes: Any) -> VideoJobConfig:
    settings: dict[str, Any] = {"pipeline": PIPELINE, "codec": "ffv1", "segment_seconds": 0.15, "model": "tiny"}
    settings.update(changes)
    return VideoJobConfig(source=source, target=target, **settings)


def decoded(path: Path) -> list[Any]:
    with av.open(str(path)) as container:
        return list(container.decode(container.streams.video[0]))


@pytest.mark.parametrize("frames_path", ["luma", "rgb"])
def test_everything_but_the_pixels_is_kept(tmp_path: Path, runner: Any, frames_path: str) -> None:
    clip = make_clip(tmp_path / "in clip.mkv", frames=14)
    target = tmp_path / "out.mkv"
    summary = run_video_job(config(clip.path, target, frames=frames_path), runner)
    assert (summary.frames, summary.upscaled, summary.written) == (14, 14, 14)
    assert summary.segments > 2  # keyframes every 4 frames, segments >= 0.15 s
    assert video_pts(target) == clip.pts  # frame count and VFR timestamps
    for kind in ("audio", "subtitle"):
        assert packets(target, kind) == packets(clip.path, kind) != []  # copied bit for bit
    with av.open(str(target)) as out, av.open(str(clip.path)) as source:
        assert out.metadata["title"] == "tiny clip"
        assert [c["metadata"] for c in out.chapters()] == [c["metadata"] for c in source.chapters()]
        assert out.streams.video[0].time_base == source.streams.video[0].time_base == MS
        assert out.streams.video[0].metadata.get("title") == "the picture"
        assert out.streams.subtitles[0].metadata.get("language") == "fra"
        frame = next(out.decode(video=0))
        assert (frame.width, frame.height, frame.format.name) == (66, 50, "yuv420p")
        assert (frame.color_primaries, frame.color_trc, frame.colorspace) == (1, 1, 1)
        assert frame.rotation == 90
    assert not list(tmp_path.glob(".*"))  # work folder and temporaries gone


@pytest.mark.parametrize("frames_path", ["luma", "rgb"])
def test_ten_bit_stays_ten_bit(tmp_path: Path, runner: Any, frames_path: str) -> None:
    clip = make_clip(tmp_path / "in.mkv", pix_fmt="yuv420p10le", frames=10, audio=False, subtitles=False)
    target = tmp_path / "out.mkv"
    run_video_job(config(clip.path, target, frames=frames_path), runner)
    frames = decoded(target)
    assert len(frames) == 10 and frames[0].format.name == "yuv420p10le"
    y = videoframes.frame_planes(frames[0], 10)[0]
    assert y.dtype == np.uint16 and y.max() > 255  # 10-bit values
    assert len(np.unique(y % 4)) > 1  # not 8-bit values shifted left (rgb: through 16-bit RGB)


def test_rgb_frames_equal_the_image_path(tmp_path: Path, runner: Any) -> None:
    """Each output frame (FFV1: lossless) is the image job's output on the decoded frame's
    RGB, converted to the video's pixel format the same way."""
    clip = make_clip(tmp_path / "in.mkv", frames=6, audio=False, subtitles=False)
    target = tmp_path / "out.mkv"
    run_video_job(config(clip.path, target, frames="rgb"), runner)
    info = probe_video(clip.path)
    pngs = tmp_path / "png"
    pngs.mkdir()
    for index, frame in enumerate(decoded(clip.path)):
        write_image(pngs / f"{index:03d}.png", videoframes.frame_rgb(frame, 8) / 255.0)
    job = JobConfig(inputs=(str(pngs),), output=tmp_path / "png_x2", pipeline=PIPELINE, model="tiny")
    assert len(run_job(job, runner).done) == 6
    for index, frame in enumerate(decoded(target)):
        image = read_image(tmp_path / "png_x2" / f"{index:03d}.png").samples
        expected = videoframes.rgb_frame(image, info.pix_fmt, info.colour)
        for got, want in zip(videoframes.frame_planes(frame, 8), videoframes.frame_planes(expected, 8), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("pix_fmt", "bits"), [("yuv420p", 8), ("yuv420p10le", 10), ("yuv444p", 8)])
def test_luma_frames_equal_the_plane_path(tmp_path: Path, runner: Any, pix_fmt: str, bits: int) -> None:
    """Luma path: the output's Y plane is the decoded Y plane through the library's plane
    pipeline, and its chroma planes are the decoded ones resized; exactly (FFV1), at 8 and
    10 bits and in 4:4:4."""
    clip = make_clip(tmp_path / "in.mkv", frames=5, pix_fmt=pix_fmt, audio=False, subtitles=False)
    target = tmp_path / "out.mkv"
    run_video_job(config(clip.path, target), runner)
    full = False  # the clips are limited range (full range: tests/videoio/test_segments.py)
    for source, frame in zip(decoded(clip.path), decoded(target), strict=True):
        assert frame.format.name == pix_fmt
        y, cb, cr = videoframes.frame_planes(source, bits)
        out = videoframes.frame_planes(frame, bits)
        network = upscale_plane(luma.upscale_luma(y, (50, 66), bits, full), runner, TILING, batch=1)
        np.testing.assert_array_equal(out[0], luma.luma_out(network, bits, full))
        for plane, resized in zip((cb, cr), out[1:], strict=True):
            np.testing.assert_array_equal(resized, luma.resize_chroma(plane, resized.shape, bits))
            assert resized.shape == ((50, 66) if pix_fmt == "yuv444p" else (25, 33))


def test_lossy_default_codec_and_options(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", width=32, height=24, frames=8, codec="libx264", subtitles=False)
    plan = plan_video_job(config(clip.path, tmp_path / "out.mkv", codec=None))
    assert plan.settings.describe() == "libx264 yuv420p (crf=18 preset=medium)"  # the input's family
    plan = plan_video_job(config(clip.path, tmp_path / "out.mkv", codec="libx265", crf=30, preset="fast"))
    assert dict(plan.settings.options) == {"crf": "30", "preset": "fast"}
    summary = run_video_job(config(clip.path, tmp_path / "out.mkv", codec=None), runner)
    assert summary.written == 8 and video_pts(tmp_path / "out.mkv") == clip.pts
    assert packets(tmp_path / "out.mkv", "audio") == packets(clip.path, "audio")


def test_bad_inputs_fail_before_any_work(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=4)
    with pytest.raises(ConfigError, match="would overwrite the input"):
        plan_video_job(config(clip.path, clip.path))
    with pytest.raises(ConfigError, match=r"\.mp4 file cannot hold the subtitle stream #2 \(srt\)"):
        plan_video_job(config(clip.path, tmp_path / "out.mp4"))
    with pytest.raises(ConfigError, match="libx264: cannot encode 99 x 75 yuv420p"):
        plan_video_job(config(clip.path, tmp_path / "out.mkv", codec="libx264", pipeline=PipelineConfig(scale=3.0)))
    with pytest.raises(ConfigError, match="libx264 has no option 'foo'"):
        plan_video_job(config(clip.path, tmp_path / "out.mkv", codec="libx264", encoder_options=(("foo", "1"),)))
    with pytest.raises(ConfigError, match="'nope' is not an encoder"):
        plan_video_job(config(clip.path, tmp_path / "out.mkv", codec="nope"))
    text = tmp_path / "notes.mkv"
    text.write_text("not a video")
    with pytest.raises(VideoReadError, match=r"notes\.mkv: not a video FFmpeg can read"):
        plan_video_job(config(text, tmp_path / "out.mkv"))
    sound = tmp_path / "sound.mka"
    with av.open(str(sound), "w", format="matroska") as output:
        stream = output.add_stream("flac", rate=8000, layout="mono")
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.float32), format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 8000, 0
        for packet in [*stream.encode(chunk), *stream.encode(None)]:
            output.mux(packet)
    with pytest.raises(VideoReadError, match=r"sound\.mka: expected a video stream, got none \(streams: audio\)"):
        plan_video_job(config(sound, tmp_path / "out.mkv"))
    assert not (tmp_path / "out.mkv").exists() and not (tmp_path / "out.mp4").exists()


def test_corrupt_packets_are_reported_and_the_rest_goes_on(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", width=64, height=48, frames=12, audio=False, subtitles=False)
    data = bytearray(clip.path.read_bytes())
    with av.open(str(clip.path)) as container:  # garble the middle of the 6th frame's packet
        sixth = [p for p in container.demux(video=0) if p.size][5]
        offset, size = int(sixth.pos), int(sixth.size)
    data[offset + size // 4 : offset + size // 4 + 40] = bytes(range(40))
    damaged = tmp_path / "damaged.mkv"
    damaged.write_bytes(bytes(data))
    summary = run_video_job(config(damaged, tmp_path / "out.mkv"), runner)
    assert [round(c.seconds, 3) for c in summary.corrupt] == [clip.pts[5] / 1000]  # count and time
    assert "Invalid data" in summary.corrupt[0].reason
    assert summary.written == 11 and video_pts(tmp_path / "out.mkv") == clip.pts[:5] + clip.pts[6:]


def test_stop_keeps_finished_segments_and_the_rerun_finishes(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=20)
    reference = tmp_path / "reference.mkv"
    run_video_job(config(clip.path, reference), runner)
    stop = threading.Event()
    target = tmp_path / "out.mkv"

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "segment" and event["segment"] == 1:
            stop.set()

    first = run_video_job(config(clip.path, target), runner, on_event, stop=stop)
    assert first.interrupted and not target.exists()
    second = run_video_job(config(clip.path, target), runner)
    assert not second.interrupted and second.reused >= 2
    assert 0 < second.upscaled <= 20 - 8  # segments 0 and 1 (4 frames each at least) not redone
    assert target.read_bytes() == reference.read_bytes()


def test_other_settings_start_over_and_an_existing_output_is_kept(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=8)
    target = tmp_path / "out.mkv"
    target.write_bytes(b"the user's file")
    summary = run_video_job(config(clip.path, target), runner)
    assert summary.skipped and target.read_bytes() == b"the user's file"
    summary = run_video_job(config(clip.path, target, overwrite=True), runner)
    assert summary.written == 8 and video_pts(target) == clip.pts


def run_child(source: Path, target: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("VDSR_FAULT", None)
    if fault:
        env["VDSR_FAULT"] = fault
    return subprocess.run(
        [sys.executable, str(CHILD), str(source), str(target)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "fault", ["video-segment:1:kill", "video-recorded:2:kill", "video-segment:3:kill", "video-join:1:kill"]
)
def test_sigkill_then_resume_gives_the_same_file(tmp_path: Path, fault: str) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=16)
    reference = tmp_path / "reference.mkv"
    done = run_child(clip.path, reference)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "out.mkv"
    killed = run_child(clip.path, target, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not target.exists()
    resumed = run_child(clip.path, target)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    step, count = fault.split(":")[:2]
    # killed before the n-th record, or before its rename: n - 1 segments reused; at the join, all
    assert result["reused"] == (result["segments"] if step == "video-join" else int(count) - 1)
    assert target.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mkv", "out.mkv", "reference.mkv"]


def test_sigint_stops_within_two_seconds(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.mkv", width=301, height=201, frames=40, audio=False, subtitles=False)
    target = tmp_path / "out.mkv"
    process = subprocess.Popen(
        [sys.executable, str(CHILD), str(clip.path), str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    work = tmp_path / ".out.mkv.vdsr-video"
    import time

    deadline = time.monotonic() + 60
    while not list(work.glob(".segment-*")) and time.monotonic() < deadline:  # a segment is being encoded
        time.sleep(0.02)
    asked = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=30)
    took = time.monotonic() - asked
    assert code == 130, process.stderr.read() if process.stderr else ""
    assert took < 2.0
    assert not target.exists() and not list(work.glob(".*.tmp"))


def test_mp4_to_mp4_keeps_its_time_base_and_b_frames_join(tmp_path: Path, runner: Any) -> None:
    """x264 with B-frames in MP4 (time base 1/16000): segments keep decode timestamps, so
    they join; the chapter text track of the source becomes chapters again, not a data copy."""
    clip = make_clip(tmp_path / "in.mp4", width=32, height=24, frames=16, codec="libx264", subtitles=False)
    target = tmp_path / "out.mp4"
    summary = run_video_job(config(clip.path, target, codec=None), runner)
    assert summary.segments >= 3 and summary.written == 16
    with av.open(str(target)) as out, av.open(str(clip.path)) as source:
        assert out.streams.video[0].time_base == source.streams.video[0].time_base == Fraction(1, 16000)
        assert [c["metadata"] for c in out.chapters()] == [c["metadata"] for c in source.chapters()]
        assert next(out.decode(video=0)).rotation == 90
    assert video_pts(target) == clip.pts
    assert packets(target, "audio") == packets(clip.path, "audio")


def test_a_rerun_with_other_settings_starts_over(tmp_path: Path, runner: Any) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=16, audio=False, subtitles=False)
    stop = threading.Event()
    target = tmp_path / "out.mkv"

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "segment":
            stop.set()

    assert run_video_job(config(clip.path, target), runner, on_event, stop=stop).interrupted
    summary = run_video_job(config(clip.path, target, frames="rgb"), runner)
    assert summary.reused == 0 and summary.upscaled == 16
    assert any("of an earlier run with other settings discarded" in note for note in summary.notes)
    run_video_job(config(clip.path, tmp_path / "reference.mkv", frames="rgb"), runner)
    assert target.read_bytes() == (tmp_path / "reference.mkv").read_bytes()


def test_a_file_saved_at_the_output_name_during_the_job_is_left_alone(
    tmp_path: Path, runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user saves a file where the output goes while the segments are being joined: it is
    never replaced, the error says so, and the finished segments stay for a rerun."""
    import vdsr_deploy.job.video as video_job
    from vdsr_deploy.errors import VideoWriteError

    clip = make_clip(tmp_path / "clip.mkv", frames=12)
    target = tmp_path / "out.mkv"
    join = video_job.join_segments

    def user_saves_first(*args: Any, **kwargs: Any) -> Any:
        target.write_bytes(b"the user's own file")
        return join(*args, **kwargs)

    monkeypatch.setattr(video_job, "join_segments", user_saves_first)
    with pytest.raises(VideoWriteError, match="a file appeared there while this job ran"):
        run_video_job(config(clip.path, target), runner)
    monkeypatch.undo()
    assert target.read_bytes() == b"the user's own file"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left
    assert run_video_job(config(clip.path, target), runner).skipped  # still left alone
    assert target.read_bytes() == b"the user's own file"


@pytest.mark.parametrize("where", ["segment", "join"])
def test_disk_full_is_one_clear_error_and_loses_nothing(
    tmp_path: Path, runner: Any, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC while a segment is encoded or while the output is joined: a VdsrError naming
    the file and the reason (never a bare OSError), the input untouched, no output file, and
    a rerun with room finishes the job."""
    import errno

    import vdsr_deploy.job.video as video_job

    clip = make_clip(tmp_path / "clip.mkv", frames=12)
    before = clip.path.read_bytes()
    target = tmp_path / "out.mkv"

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if where == "join":
        monkeypatch.setattr(video_job, "join_segments", full)
    else:
        monkeypatch.setattr(video_job.Work, "commit", full)
    with pytest.raises(Exception) as caught:
        run_video_job(config(clip.path, target), runner)
    monkeypatch.undo()
    from vdsr_deploy.errors import VdsrError

    assert isinstance(caught.value, VdsrError), repr(caught.value)
    assert "No space left on device" in str(caught.value) and str(target.name) in str(caught.value)
    assert clip.path.read_bytes() == before and not target.exists()
    summary = run_video_job(config(clip.path, target), runner)
    assert not summary.interrupted and target.is_file()
