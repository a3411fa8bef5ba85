"""Encoding upscaled frames and assembling the output file.

- :func:`encode_settings` picks the codec (``--codec``, else the input's codec family where
  an encoder exists, else libx264), its quality options and the output pixel format (the
  input's, so 10-bit stays 10-bit).
- :class:`SegmentWriter` encodes one segment's frames into a file of its own
  (:func:`segment_format`), with the source's time base and colour tags; timestamps are the
  source frames'.
- :func:`join_segments` writes the output: the segments' video packets by stream copy, every
  other stream of the source (audio, subtitles, data, attachments) by stream copy, the
  container's metadata and chapters, the video stream's metadata and rotation.

Files are written with FFmpeg's ``bitexact`` flags, so the same frames give the same bytes.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ConfigError, VideoWriteError
from vdsr_deploy.videoio.library import av_error_types, require_av
from vdsr_deploy.videoio.probe import VideoInfo, muxer_for

DEFAULT_CODECS = {
    "h264": "libx264",
    "hevc": "libx265",
    "vp9": "libvpx-vp9",
    "vp8": "libvpx-vp9",
    "av1": "libsvtav1",
    "ffv1": "ffv1",
    "prores": "prores_ks",
    "mpeg4": "libx264",
}
"""Input codec -> the encoder used when ``--codec`` is not given (else libx264)."""

WEBM_CODEC = "libvpx-vp9"  # .webm holds VP8/VP9/AV1 only
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 24}
DEFAULT_PRESET = {"libx264": "medium", "libx265": "medium", "libsvtav1": "8"}
BITEXACT = {"fflags": "+bitexact"}
_DROPPED_STREAM_TAGS = {"DURATION", "ENCODER", "BPS", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "_STATISTICS_TAGS"}


@dataclass(frozen=True)
class EncodeSettings:
    """``codec``: an FFmpeg encoder name; ``options``: its private options (crf, preset, ...);
    ``pix_fmt``: the output pixel format."""

    codec: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def describe(self) -> str:
        opts = " ".join(f"{k}={v}" for k, v in self.options)
        return f"{self.codec} {self.pix_fmt}" + (f" ({opts})" if opts else "")


def encode_settings(
    info: VideoInfo,
    target: Path,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = None,
    options: Sequence[tuple[str, str]] = (),
) -> EncodeSettings:
    """The encoder for ``target``: checked here (it exists, takes the pixel format, and the
    container can hold it) so a job never fails after hours of upscaling."""
    av = require_av()
    muxer = muxer_for(target)
    name = codec or (WEBM_CODEC if muxer == "webm" else DEFAULT_CODECS.get(info.codec, "libx264"))
    try:
        encoder = av.codec.Codec(name, "w")
    except av_error_types() as error:
        raise ConfigError(f"--codec: {name!r} is not an encoder FFmpeg's libraries have here") from error
    if encoder.type != "video":
        raise ConfigError(f"--codec: expected a video encoder, got {name!r} ({encoder.type})")
    formats = [f.name for f in (encoder.video_formats or ())]
    if formats and info.pix_fmt not in formats:
        raise ConfigError(
            f"--codec {name}: cannot encode the input's pixel format {info.pix_fmt} (it takes "
            f"{', '.join(formats[:12])}{', ...' if len(formats) > 12 else ''}); choose another --codec, e.g. ffv1"
        )
    chosen: dict[str, str] = {}
    if crf is not None or name in DEFAULT_CRF:
        if name not in DEFAULT_CRF:
            raise ConfigError(f"--crf: {name} has no CRF mode (it takes {', '.join(sorted(DEFAULT_CRF))})")
        chosen["crf"] = str(DEFAULT_CRF[name] if crf is None else crf)
        if name == "libvpx-vp9":
            chosen["b"] = "0"  # constant quality
    if preset is not None or name in DEFAULT_PRESET:
        if name not in DEFAULT_PRESET:
            raise ConfigError(f"--preset: {name} has no preset (presets: {', '.join(sorted(DEFAULT_PRESET))})")
        chosen["preset"] = preset if preset is not None else DEFAULT_PRESET[name]
    for key, value in options:
        chosen[key] = value
    settings = EncodeSettings(name, info.pix_fmt, tuple(sorted(chosen.items())))
    check_container(info, target, settings)
    return settings


def check_container(info: VideoInfo, target: Path, settings: EncodeSettings) -> None:
    """Refuse, before any work, an output container that cannot hold the video codec or one
    of the streams copied from the source."""
    av = require_av()
    with av.open(io.BytesIO(), "w", format=muxer_for(target)) as probe:
        supported = set(probe.supported_codecs)
    wanted = [("video", av.codec.Codec(settings.codec, "w").name)]
    wanted += [(f"{o.kind} stream #{o.index}", o.codec) for o in info.others if o.kind != "attachment"]
    for what, codec in wanted:
        if codec not in supported:
            raise ConfigError(
                f"{target}: a {target.suffix} file cannot hold the {what} ({codec}); "
                "choose another output suffix (.mkv holds almost anything) or --codec"
            )


def check_encoder(settings: EncodeSettings, info: VideoInfo, width: int, height: int) -> None:
    """Open the encoder once for a ``width`` x ``height`` output: options it refuses or does
    not know, or a size it cannot encode (x264 wants even sizes in 4:2:0), fail here."""
    av = require_av()
    context = av.CodecContext.create(settings.codec, "w")
    context.width, context.height, context.pix_fmt = width, height, settings.pix_fmt
    context.time_base = info.time_base
    context.framerate = info.rate if info.rate else Fraction(25)
    context.options = dict(settings.options)
    try:
        context.open()
    except av_error_types() as error:
        raise ConfigError(
            f"--codec {settings.codec}: cannot encode {width} x {height} {settings.pix_fmt} with "
            f"{settings.describe()} ({_reason(error)}); choose another --codec (ffv1 takes any size) or --scale"
        ) from error
    unknown = sorted(dict(context.options))  # FFmpeg hands back the options nothing took
    if unknown:
        raise ConfigError(f"--encoder-option: {settings.codec} has no option {', '.join(map(repr, unknown))}")


def segment_format(settings: EncodeSettings, target: Path) -> tuple[str, str]:
    """Muxer and suffix of the segment files: QuickTime where it holds the codec (it stores
    decode timestamps, which Matroska drops and B-frames need to be joined again), else the
    output's own container (FFV1, intra-only, needs none)."""
    av = require_av()
    codec = av.codec.Codec(settings.codec, "w").name
    with av.open(io.BytesIO(), "w", format="mov") as probe:
        if codec in probe.supported_codecs:
            return "mov", ".mov"
    return muxer_for(target), target.suffix.lower()


def _open_output(path: Path, target: Path, muxer: str | None = None) -> Any:
    av = require_av()
    try:
        return av.open(str(path), "w", format=muxer or muxer_for(target), options=dict(BITEXACT))
    except av_error_types() as error:
        raise VideoWriteError(f"{target}: cannot write ({_reason(error)})") from error


class SegmentWriter:
    """Encodes frames (timestamps in the source's time base) into ``path``, a file in the
    container of ``target``. ``close()`` flushes the encoder and finishes the file."""

    def __init__(
        self, path: Path, target: Path, info: VideoInfo, settings: EncodeSettings, width: int, height: int
    ) -> None:
        self.path = path
        self.frames = 0
        self._container = _open_output(path, target, segment_format(settings, target)[0])
        try:
            rate = info.rate if info.rate else Fraction(25)
            stream = self._container.add_stream(settings.codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, settings.pix_fmt
            stream.time_base = info.time_base
            context = stream.codec_context
            context.time_base = info.time_base
            context.color_primaries = info.colour.primaries
            context.color_trc = info.colour.transfer
            context.colorspace = info.colour.matrix
            context.color_range = info.colour.range
            context.flags |= 1 << 23  # AV_CODEC_FLAG_BITEXACT: no version strings in the stream
            context.options = dict(settings.options)
            self._stream = stream
        except av_error_types() as error:
            self._container.close()
            raise VideoWriteError(f"{target}: cannot set up the {settings.codec} encoder ({_reason(error)})") from error

    def write(self, frame: Any) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av_error_types() as error:
            raise VideoWriteError(f"{self.path}: cannot encode ({_reason(error)})") from error
        self.frames += 1

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        except av_error_types() as error:
            raise VideoWriteError(f"{self.path}: cannot finish the segment ({_reason(error)})") from error
        _fsync(self.path)

    def abort(self) -> None:
        try:
            self._container.close()
        except av_error_types():
            pass
        self.path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def join_segments(segments: Sequence[Path], info: VideoInfo, target: Path, path: Path) -> int:
    """Write ``path`` (a temporary name for ``target``): the video packets of ``segments`` in
    order, the source's other streams, metadata and chapters, all by stream copy. Returns the
    number of video packets written."""
    av = require_av()
    if not segments:
        raise VideoWriteError(f"{target}: no segments to join")
    output = _open_output(path, target)
    try:
        with av.open(str(info.path)) as source:
            first = av.open(str(segments[0]))
            try:
                video = output.add_stream_from_template(first.streams.video[0])
            finally:
                first.close()
            video.time_base = info.time_base
            source_video = source.streams[info.stream_index]
            _copy_tags(source_video, video)
            if info.rotation:
                video.set_display_rotation(info.rotation)
            copies: dict[int, Any] = {}
            for other in info.others:
                stream = source.streams[other.index]
                copied = output.add_stream_from_template(stream)
                _copy_tags(stream, copied)
                copies[other.index] = copied
            output.metadata.update({k: v for k, v in source.metadata.items() if k.upper() != "ENCODER"})
            chapters = source.chapters()
            if chapters:
                output.set_chapters(chapters)
            count = 0
            merged = heapq.merge(
                _video_packets(segments, av), _other_packets(source, copies), key=lambda item: item[0]
            )
            for _, packet, stream in merged:
                packet.stream = video if stream is None else stream
                output.mux(packet)
                count += stream is None
        output.close()
    except BaseException as error:
        try:
            output.close()
        except av_error_types():
            pass
        if isinstance(error, av_error_types()):
            raise VideoWriteError(f"{target}: cannot write ({_reason(error)})") from error
        raise
    _fsync(path)
    return count


def _video_packets(segments: Sequence[Path], av: Any) -> Iterator[tuple[Fraction, Any, Any]]:
    """Video packets of each segment in turn, keyed by decode time in seconds; the stream
    element is filled in by the caller (the output's video stream)."""
    for segment in segments:
        with av.open(str(segment)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                yield _when(packet, stream), packet, None


def _other_packets(source: Any, copies: dict[int, Any]) -> Iterator[tuple[Fraction, Any, Any]]:
    if not copies:
        return
    streams = [source.streams[index] for index in copies]
    for packet in source.demux(*streams):
        if packet.size == 0 and packet.pts is None:
            continue
        yield _when(packet, packet.stream), packet, copies[packet.stream.index]


def _when(packet: Any, stream: Any) -> Fraction:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return Fraction(stamp or 0) * Fraction(stream.time_base)


def _copy_tags(source: Any, target: Any) -> None:
    for key, value in source.metadata.items():
        if key.upper() not in _DROPPED_STREAM_TAGS and not key.upper().startswith("_STATISTICS"):
            target.metadata[key] = value
    with contextlib.suppress(AttributeError, TypeError, ValueError):
        target.disposition = source.disposition


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).strip().rstrip(".")
