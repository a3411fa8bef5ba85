"""Tiny clips made with PyAV for the video tests (no files checked in, nothing downloaded).

:func:`make_clip` writes an odd-sized clip with variable frame timing, an audio track, a
subtitle track, chapters, container and stream metadata, colour tags and a rotation: every
thing a video job must keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

MS = Fraction(1, 1000)


@dataclass(frozen=True)
class Clip:
    path: Path
    pts: list[int]  # video timestamps in ms


def smooth_frame(rng: np.random.Generator, height: int, width: int, index: int) -> np.ndarray:
    """RGB with structure (gradients, a moving square, a little noise): like a picture, so
    lossy codecs and the network see something other than pure noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + yy + 8 * index) % 256], axis=2)
    top, left = (3 * index) % max(height - 6, 1), (5 * index) % max(width - 6, 1)
    rgb[top : top + 6, left : left + 6] = (250, 30, 60)
    rgb = rgb + rng.normal(0, 6, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_clip(
    path: Path,
    *,
    width: int = 33,
    height: int = 25,
    frames: int = 12,
    pix_fmt: str = "yuv420p",
    codec: str = "ffv1",
    gop: int = 4,
    audio: bool = True,
    subtitles: bool = True,
    seed: int = 0,
) -> Clip:
    """An mkv (or whatever the suffix says) clip: frames 40 or 60 ms apart (VFR), BT.709 tags,
    rotation 90, a FLAC audio track, an SRT subtitle track, a chapter and a title."""
    rng = np.random.default_rng(seed)
    output = av.open(str(path), "w")
    video = output.add_stream(codec, rate=24)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.time_base = MS
    context = video.codec_context
    context.time_base = MS
    context.gop_size = gop
    context.color_primaries, context.color_trc, context.colorspace = 1, 1, 1  # BT.709
    video.metadata["title"] = "the picture"
    video.set_display_rotation(90)
    sound = output.add_stream("flac", rate=8000, layout="mono") if audio else None
    text = output.add_mux_stream("subrip") if subtitles else None
    if text is not None:
        text.metadata["language"] = "fra"
    output.metadata["title"] = "tiny clip"
    output.set_chapters([{"id": 1, "start": 0, "end": 200, "time_base": MS, "metadata": {"title": "one"}}])
    pts: list[int] = []
    stamp = 0
    for index in range(frames):
        rgb = smooth_frame(rng, height, width, index)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt, dst_colorspace=1)
        frame.pts, frame.time_base = stamp, MS
        pts.append(stamp)
        stamp += 40 if index % 3 else 60
        for packet in video.encode(frame):
            output.mux(packet)
    for packet in video.encode(None):
        output.mux(packet)
    if sound is not None:
        for index in range(max(1, stamp // 250)):
            samples = (rng.standard_normal((1, 2000)) * 0.1).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 8000, index * 2000
            for packet in sound.encode(chunk):
                output.mux(packet)
        for packet in sound.encode(None):
            output.mux(packet)
    if text is not None:
        for start, words in ((100, b"bonjour"), (300, b"au revoir")):
            packet = av.Packet(words)
            packet.stream = text
            packet.pts = packet.dts = start
            packet.duration = 150
            packet.time_base = MS
            output.mux(packet)
    output.close()
    return Clip(path, pts)


def video_pts(path: Path) -> list[int]:
    """Presentation timestamps of the decoded video frames, in ms."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [int(frame.pts * stream.time_base * 1000) for frame in container.decode(stream)]


def packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    """``(pts in ms, bytes)`` of every packet of the streams of ``kind``."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        found = []
        for packet in container.demux(*streams):
            if packet.size:
                stamp = None if packet.pts is None else int(packet.pts * packet.time_base * 1000)
                found.append((stamp, bytes(packet)))
        return found
