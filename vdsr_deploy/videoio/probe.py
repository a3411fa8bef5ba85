"""What a video file holds, read before any frame is upscaled: :func:`probe_video` demuxes the
whole file once (packets only, no decoding) for the video stream's frame count and keyframe
timestamps, and decodes its first frame to prove the codec can be decoded and to read the
frame's pixel format, colour tags and rotation."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import VideoReadError
from vdsr_deploy.fileops import regular_file_problem
from vdsr_deploy.videoio.library import av_error_types, require_av

VIDEO_SUFFIXES = frozenset(
    {".mkv", ".mp4", ".m4v", ".mov", ".webm", ".avi", ".nut", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".flv", ".ogv"}
)
"""Inputs and outputs with these suffixes are videos (the rest of ``vdsr upscale`` is images)."""

MUXERS = {
    ".mkv": "matroska",
    ".mp4": "mp4",
    ".m4v": "mp4",
    ".mov": "mov",
    ".webm": "webm",
    ".avi": "avi",
    ".nut": "nut",
    ".ts": "mpegts",
    ".mts": "mpegts",
    ".m2ts": "mpegts",
    ".mpg": "mpeg",
    ".mpeg": "mpeg",
    ".flv": "flv",
    ".ogv": "ogg",
}
"""FFmpeg's muxer for each output suffix (the output container comes from the suffix)."""


def is_video_path(path: str | Path) -> bool:
    """Whether ``path`` names a video by its suffix (case-insensitive)."""
    return Path(str(path)).suffix.lower() in VIDEO_SUFFIXES


def muxer_for(path: Path) -> str:
    """FFmpeg's muxer name for an output path's suffix."""
    suffix = path.suffix.lower()
    if suffix not in MUXERS:
        raise VideoReadError(f"{path}: expected a video suffix ({', '.join(sorted(MUXERS))}), got {suffix or 'none'!r}")
    return MUXERS[suffix]


@dataclass(frozen=True)
class ColourTags:
    """FFmpeg's colour enums of the video: primaries, transfer, matrix (colorspace), range."""

    primaries: int
    transfer: int
    matrix: int
    range: int


@dataclass(frozen=True)
class OtherStream:
    """A stream that is copied as it is (audio, subtitles, data, attachments)."""

    index: int
    kind: str
    codec: str


@dataclass(frozen=True)
class VideoInfo:
    """The video stream of ``path`` and what must survive the upscale.

    ``time_base``: of the video stream; ``frames``: its packets that carry a timestamp (one
    frame each); ``keyframes``: the presentation timestamps of its keyframe packets, sorted;
    ``first_pts``: the smallest timestamp; ``bit_depth``: of the decoded samples (8, 10, 12,
    16); ``rotation``: the display rotation in degrees (counter-clockwise).
    """

    path: Path
    container: str
    stream_index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    time_base: Fraction
    rate: Fraction | None
    frames: int
    keyframes: tuple[int, ...]
    first_pts: int
    last_pts: int
    colour: ColourTags
    rotation: float
    others: tuple[OtherStream, ...]

    @property
    def duration_seconds(self) -> float:
        return float((self.last_pts - self.first_pts) * self.time_base)


def pixel_bit_depth(pix_fmt: Any) -> int:
    """Bits per sample of a PyAV ``VideoFormat`` (its first component)."""
    components = list(pix_fmt.components)
    return int(components[0].bits) if components else 8


def probe_video(path: Path) -> VideoInfo:
    """Read ``path``'s streams and video packets; :class:`VideoReadError` naming the file when
    it is not a video, has no video stream, or its codec cannot be decoded here."""
    av = require_av()
    problem = regular_file_problem(path, "a video file")
    if problem is not None:
        raise VideoReadError(f"{path}: {problem}")
    try:
        container = av.open(str(path))
    except av_error_types() as error:
        raise VideoReadError(f"{path}: not a video FFmpeg can read ({_reason(error)})") from error
    with container:
        videos = [s for s in container.streams if s.type == "video" and not _is_cover_art(s)]
        if not videos:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise VideoReadError(f"{path}: expected a video stream, got none (streams: {kinds})")
        video = videos[0]
        codec_name = video.codec_context.name
        try:
            av.codec.Codec(codec_name, "r")
        except av_error_types() as error:
            raise VideoReadError(f"{path}: the video codec {codec_name!r} cannot be decoded here") from error
        keyframes: list[int] = []
        frames = 0
        first: int | None = None
        last: int | None = None
        try:
            for packet in container.demux(video):
                if packet.pts is None or packet.size == 0:
                    continue
                frames += 1
                first = packet.pts if first is None else min(first, packet.pts)
                last = packet.pts if last is None else max(last, packet.pts)
                if packet.is_keyframe:
                    keyframes.append(int(packet.pts))
        except av_error_types() as error:
            raise VideoReadError(f"{path}: cannot read the file's packets ({_reason(error)})") from error
        if frames == 0 or first is None or last is None:
            raise VideoReadError(f"{path}: expected video frames with timestamps, got none")
        frame = _first_frame(container, video, path)
        chapter_track = _quicktime_chapter_track(container)
        others = tuple(
            OtherStream(s.index, s.type, _codec_name(s))
            for s in container.streams
            if s.index not in (video.index, chapter_track)
        )
        return VideoInfo(
            path=path,
            container=container.format.name,
            stream_index=video.index,
            codec=codec_name,
            width=int(frame.width),
            height=int(frame.height),
            pix_fmt=frame.format.name,
            bit_depth=pixel_bit_depth(frame.format),
            time_base=Fraction(video.time_base),
            rate=Fraction(video.average_rate) if video.average_rate else None,
            frames=frames,
            keyframes=tuple(sorted(set(keyframes))) or (int(first),),
            first_pts=int(first),
            last_pts=int(last),
            colour=ColourTags(
                int(frame.color_primaries), int(frame.color_trc), int(frame.colorspace), int(frame.color_range)
            ),
            rotation=float(frame.rotation or 0.0),
            others=others,
        )


def _first_frame(container: Any, video: Any, path: Path) -> Any:
    container.seek(0)
    try:
        for packet in container.demux(video):
            try:
                for frame in packet.decode():
                    return frame
            except av_error_types():
                continue  # a corrupt packet: the decode pass reports it with its time
    except av_error_types() as error:
        raise VideoReadError(f"{path}: cannot decode the video ({_reason(error)})") from error
    raise VideoReadError(f"{path}: the video stream has no decodable frame")


def _quicktime_chapter_track(container: Any) -> int | None:
    """The index of the text track an MP4/MOV file stores its chapters in (FFmpeg shows it as
    a codec-less data stream): the chapters are kept as chapters, so it is not copied."""
    if ("mp4" not in container.format.name and "mov" not in container.format.name) or not container.chapters():
        return None
    for stream in container.streams:
        if stream.type == "data" and getattr(stream, "codec_context", None) is None:
            return int(stream.index)
    return None


def _is_cover_art(stream: Any) -> bool:
    disposition = getattr(stream, "disposition", 0)
    return bool(int(disposition) & 0x400)  # AV_DISPOSITION_ATTACHED_PIC


def _codec_name(stream: Any) -> str:
    try:
        return str(stream.codec_context.name)
    except (AttributeError, TypeError):
        return str(getattr(stream, "codec_tag", "") or stream.type)


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip().rstrip(".")
