"""``vdsr upscale clip.mkv -o out.mkv``: the command end to end, and its errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner
from video_clips import make_clip, packets, video_pts

from vdsr_deploy.cli import app

pytest.importorskip("av")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_upscale_a_video(tmp_path: Path, tiny_weights: Path) -> None:
    clip = make_clip(tmp_path / "clip.mkv", frames=10)
    out = tmp_path / "out.mkv"
    common = ["-w", str(tiny_weights), "--backend", "torch", "--device", "cpu", "--tile", "48", "--halo", "6"]
    video = ["--codec", "ffv1", "--segment-seconds", "0.1"]
    code, text = invoke("upscale", str(clip.path), "-o", str(out), *video, *common)
    assert code == 0, text
    assert "frames via luma, encoder ffv1 yuv420p" in text and "output:" in text
    assert video_pts(out) == clip.pts and packets(out, "audio") == packets(clip.path, "audio")
    code, text = invoke("upscale", str(clip.path), "-o", str(out), *common)
    assert code == 0 and "skipped" in text and "--overwrite" in text  # an existing output is kept
    x264 = ["--codec", "libx264", "--crf", "23", "--preset", "ultrafast", "--encoder-option", "g=12"]
    rgb = ["--frames", "rgb", "--segment-seconds", "0"]
    code, text = invoke("upscale", str(clip.path), "-o", str(tmp_path / "folder"), *x264, *rgb, *common)
    assert code == 0, text
    assert (tmp_path / "folder" / "clip.mkv").is_file()  # a folder output: the video keeps its name


@pytest.mark.parametrize(
    ("output", "extra", "message"),
    [
        ("clip.mkv", [], "clip.mkv: the output would overwrite the input; choose another output"),
        ("out.mp4", [], "a .mp4 file cannot hold the subtitle stream #2 (srt)"),
        ("out.mkv", ["--codec", "nope"], "--codec: 'nope' is not an encoder"),
        ("out.mkv", ["--frames", "yuv"], "--frames: expected one of luma, rgb, got 'yuv'"),
        ("out.mkv", ["--encoder-option", "crf"], "--encoder-option: expected KEY=VALUE, got 'crf'"),
        ("out.png", [], "expected a video output"),
        ("out.mkv", ["--format", "png"], "--format: not available for a video"),
    ],
)
def test_video_errors_are_one_line(
    tmp_path: Path, tiny_weights: Path, output: str, extra: list[str], message: str
) -> None:
    clip = make_clip(tmp_path / "clip.mkv", frames=4)
    before = sorted(tmp_path.iterdir())
    code, text = invoke("upscale", str(clip.path), "-o", str(tmp_path / output), "-w", str(tiny_weights), *extra)
    assert code == 2, text  # a usage error: exit 2, one line
    assert message in " ".join(text.split()) and "Traceback" not in text
    assert sorted(tmp_path.iterdir()) == before  # nothing written
