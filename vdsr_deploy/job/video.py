"""A video job: one video in, one video out, resumable by keyframe segments.

Stages overlap like an image job's (:mod:`vdsr_deploy.job`), connected by bounded queues:

1. *decode* (one thread): demuxes and decodes the video stream in order; a packet that
   cannot be decoded is counted with its time and skipped (the rest goes on); each frame is
   prepared for the network (its bicubic planes, through RGB or as its decoded planes,
   :data:`FRAME_PATHS`) unless its segment is already done.
2. *infer* (the calling thread): :func:`~vdsr_deploy.planes.pipeline.upscale_planes` batches
   tiles across frames, exactly as across images.
3. *encode* (one thread): frames back in order, colour recombined, quantized to the output's
   pixel format, encoded into the current segment's file.

The video is cut at keyframes into segments (:mod:`vdsr_deploy.videoio.segments`). Each
finished segment is a committed file in the work folder ``.<output name>.vdsr-video/`` next to
the output, recorded (size, SHA-256, frames) in its ``manifest.jsonl`` after the data is
complete and before it is renamed into place; the first line of the manifest holds the
settings and the source's size and mtime, so a rerun with other settings or a changed source
starts over. A rerun of the same command decodes the video again but upscales and encodes
only the segments not recorded. Once every segment is in, the output is the segments' video
packets joined by stream copy with every other stream of the source
(:func:`~vdsr_deploy.videoio.write.join_segments`), written to a temporary name and renamed
into place; then the work folder is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vdsr_deploy.errors import ConfigError, VideoReadError, VideoWriteError
from vdsr_deploy.faults import fault_point
from vdsr_deploy.fileops import file_sha256, move_into_place, pid_alive, temporary_path
from vdsr_deploy.imageio.write import quantize
from vdsr_deploy.job.halt import END, Halt, StopCheckingRunner, Stopped
from vdsr_deploy.job.lock import JobLock
from vdsr_deploy.job.manifest import SourceStamp, settings_key
from vdsr_deploy.job.report import EventSink
from vdsr_deploy.planes import colour, luma
from vdsr_deploy.planes.ensemble import planes_upscaler
from vdsr_deploy.planes.pipeline import F32, FLUSH, Flush, PipelineConfig
from vdsr_deploy.runner import Runner
from vdsr_deploy.videoio import frames as videoframes
from vdsr_deploy.videoio.library import av_error_types, require_av
from vdsr_deploy.videoio.probe import VideoInfo, probe_video
from vdsr_deploy.videoio.segments import Segment, cut_points, plan_segments, segment_of
from vdsr_deploy.videoio.write import (
    EncodeSettings,
    SegmentWriter,
    check_encoder,
    encode_settings,
    join_segments,
    segment_format,
)

FRAME_PATHS = ("luma", "rgb")
"""How frames reach the network: ``luma``, the decoded Y plane as it is (chroma planes resized
beside it, no colour conversion); ``rgb``, through RGB like an image (each frame exactly the
image path on the decoded frame's RGB). docs/video.md has the measurements."""

MANIFEST = "manifest.jsonl"
WORK_SUFFIX = ".vdsr-video"


@dataclass(frozen=True)
class VideoJobConfig:
    """``codec``/``crf``/``preset``/``encoder_options``: see
    :func:`~vdsr_deploy.videoio.write.encode_settings`; ``frames``: one of
    :data:`FRAME_PATHS`; ``segment_seconds``: the shortest segment (resume unit; 0 = one);
    ``queue_size``: prepared frames waiting for the runner; ``model``: the model identity (resume)."""

    source: Path
    target: Path
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    encoder_options: tuple[tuple[str, str], ...] = ()
    frames: str = "luma"
    segment_seconds: float = 4.0
    overwrite: bool = False
    queue_size: int = 4
    model: str = ""

    def __post_init__(self) -> None:
        if self.frames not in FRAME_PATHS:
            raise ConfigError(f"--frames: expected one of {', '.join(FRAME_PATHS)}, got {self.frames!r}")
        if not self.segment_seconds >= 0:
            raise ConfigError(f"--segment-seconds: expected >= 0, got {self.segment_seconds}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size: expected >= 1, got {self.queue_size}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ConfigError(f"--crf: expected 0..63, got {self.crf}")


@dataclass(frozen=True)
class CorruptPacket:
    """A packet that could not be decoded: its time in seconds and FFmpeg's reason."""

    seconds: float
    reason: str


@dataclass
class VideoSummary:
    """What a video job did. ``frames``: in the source; ``upscaled``: frames upscaled by this
    run; ``reused``: segments finished by an earlier run; ``skipped``: why nothing was done."""

    source: Path
    target: Path
    encode: str = ""
    frames: int = 0
    upscaled: int = 0
    segments: int = 0
    reused: int = 0
    corrupt: list[CorruptPacket] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    skipped: str | None = None
    written: int = 0  # video frames in the output

    @property
    def frames_per_second(self) -> float:
        return self.upscaled / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class VideoPlan:
    """What :func:`plan_video_job` found: the source, the encoder, the frame path actually
    used (``luma`` falls back to ``rgb`` for formats without a Y plane) and why."""

    info: VideoInfo
    settings: EncodeSettings
    frames_path: str
    notes: tuple[str, ...] = ()


def plan_video_job(config: VideoJobConfig) -> VideoPlan:
    """Every check that needs no runner, before any work: the output does not overwrite the
    input, the input is a decodable video, the encoder takes its pixel format and the output
    container holds every stream. Raises :class:`~vdsr_deploy.errors.VdsrError` naming the file."""
    source, target = Path(config.source), Path(config.target)
    _refuse_overwriting_input(source, target)
    info = probe_video(source)
    settings = encode_settings(info, target, config.codec, config.crf, config.preset, config.encoder_options)
    height, width = colour.output_shape(info.height, info.width, config.pipeline.scale)
    check_encoder(settings, info, width, height)
    if config.frames == "luma" and not videoframes.has_luma_planes(info.pix_fmt):
        note = f"{info.pix_fmt} has no separate Y plane: frames go through RGB"
        return VideoPlan(info, settings, "rgb", (note,))
    return VideoPlan(info, settings, config.frames)


def run_video_job(
    config: VideoJobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
    plan: VideoPlan | None = None,
) -> VideoSummary:
    """Upscale ``config.source`` into ``config.target``; the runner must be active.

    ``on_event`` receives dicts (``start``, ``frame``, ``segment``, ``corrupt``, ``note``,
    ``skipped``, ``finished``). Setting ``stop`` or Ctrl-C ends the job within a runner call
    with ``summary.interrupted``; finished segments stay and the same call resumes. Problems
    with the input or the settings raise :class:`~vdsr_deploy.errors.VdsrError` naming the
    file before any work starts (``plan``: from :func:`plan_video_job`, else made here).
    """
    emit = on_event or (lambda event: None)
    halt = Halt(stop or threading.Event())
    started = time.perf_counter()
    source, target = Path(config.source), Path(config.target)
    plan = plan or plan_video_job(config)
    summary = VideoSummary(source, target, encode=plan.settings.describe(), frames=plan.info.frames)
    if not config.model:
        config = dataclasses.replace(config, model=runner.model_identity)
    for note in plan.notes:
        _note(summary, emit, source, note)
    if target.exists() and not config.overwrite:
        # a job killed between publishing (a hard link) and removing the temporary name
        remove_stale_temporaries(target.parent, f".{glob.escape(target.name)}.*.tmp")
        summary.skipped = "the output exists (use --overwrite to replace it)"
        emit({"event": "skipped", "file": str(source), "target": str(target), "reason": summary.skipped})
        return summary
    segments = video_segments(config, plan)
    summary.segments = len(segments)
    with JobLock(target.parent):
        work = open_work(config, plan, runner.info.label, summary, emit)
        done = work.finished(len(segments))
        job = _FrameJob(config, plan, segments, done, work.segment_path, work.commit, runner, halt, emit, summary)
        job.run()
        summary.interrupted = halt.stop.is_set()
        if not summary.interrupted and halt.error is None:
            try:
                finish(work, config, plan, summary)
            except OSError as error:  # disk full while joining: a sentence, the segments kept
                raise _cannot_write(target, error) from error
    summary.seconds = time.perf_counter() - started
    if halt.error is not None and not halt.stop.is_set():
        if isinstance(halt.error, OSError):
            raise _cannot_write(target, halt.error) from halt.error
        raise halt.error
    emit({"event": "finished", "file": str(source), "interrupted": summary.interrupted})
    return summary


def _cannot_write(target: Path, error: OSError) -> VideoWriteError:
    return VideoWriteError(
        f"{target}: cannot write ({error.strerror or error}); the finished segments are kept, "
        "run the same command again once there is room"
    )


def video_segments(config: VideoJobConfig, plan: VideoPlan) -> tuple[Segment, ...]:
    """The keyframe segments of ``plan``'s video for ``config.segment_seconds``."""
    return plan_segments(plan.info.keyframes, plan.info.time_base, config.segment_seconds)


def open_work(config: VideoJobConfig, plan: VideoPlan, runner: str, summary: VideoSummary, emit: EventSink) -> Work:
    """The job's work folder for these settings (``runner``: the runtime's label), an earlier
    run's segments kept when its settings match; emits ``start``. Hold the job lock."""
    segments = video_segments(config, plan)
    key = settings_key(
        {
            "scale": config.pipeline.scale,
            "ensemble": config.pipeline.ensemble,
            "model": config.model,
            "runner": runner,
            "frames": plan.frames_path,
            "encode": plan.settings.describe(),
            "segments": [s.start for s in segments],
        }
    )
    target = Path(config.target)
    work = Work(target, key, SourceStamp.of(Path(config.source)), segment_format(plan.settings, target)[1])
    if work.discarded:
        discarded = f"{work.discarded} segment(s) of an earlier run with other settings discarded"
        _note(summary, emit, summary.source, discarded)
    summary.reused = len(work.finished(len(segments)))
    emit(
        {
            "event": "start",
            "file": str(summary.source),
            "total": plan.info.frames,
            "segments": len(segments),
            "reused": summary.reused,
            "encode": plan.settings.describe(),
            "frames_path": plan.frames_path,
        }
    )
    return work


def finish(work: Work, config: VideoJobConfig, plan: VideoPlan, summary: VideoSummary) -> None:
    """Every segment in: join them into the output, then remove the work folder."""
    count = len(video_segments(config, plan))
    if len(work.finished(count)) != count:
        raise VideoWriteError(f"{config.target}: some segments were not written; run the same command again")
    summary.written = _publish(work, plan.info, Path(config.target), count, config.overwrite)
    work.remove()


def upscale_segment(
    config: VideoJobConfig,
    plan: VideoPlan,
    index: int,
    runner: Runner,
    *,
    stop: threading.Event | None = None,
    emit: EventSink | None = None,
) -> tuple[Path | None, int]:
    """Segment ``index`` alone (a cluster work item): decoded from its keyframe, upscaled and
    encoded into a temporary file in the work folder. Returns that file (None: the segment
    has no decodable frame) and its frame count; the caller records and renames it
    (:meth:`Work.commit`). The runner must be active."""
    segments = video_segments(config, plan)
    if not 0 <= index < len(segments):
        raise ConfigError(f"segment: expected 0..{len(segments) - 1}, got {index}")
    target = Path(config.target)
    folder = work_folder(target)
    suffix = segment_format(plan.settings, target)[1]
    done = set(range(len(segments))) - {index}
    result: list[tuple[Path | None, int]] = []
    halt = Halt(stop or threading.Event())
    summary = VideoSummary(Path(config.source), target)

    def keep(segment: int, temporary: Path | None, frames: int) -> None:
        result.append((temporary, frames))

    def path(segment: int) -> Path:
        return folder / f"segment-{segment:05d}{suffix}"

    job = _FrameJob(config, plan, segments, done, path, keep, runner, halt, emit or (lambda e: None), summary)
    job.run()
    if halt.error is not None:
        raise halt.error
    if halt.stop.is_set() or not result:
        raise Stopped
    return result[0]


def work_folder(target: Path) -> Path:
    """The work folder of the job writing ``target``."""
    return target.parent / f".{target.name}{WORK_SUFFIX}"


def _note(summary: VideoSummary, emit: EventSink, source: Path, message: str) -> None:
    summary.notes.append(message)
    emit({"event": "note", "file": str(source), "note": message})


def _refuse_overwriting_input(source: Path, target: Path) -> None:
    same = False
    with contextlib.suppress(OSError):
        same = target.exists() and os.path.samefile(source, target)
    if same or source.resolve() == target.resolve():
        raise ConfigError(f"{target}: the output would overwrite the input; choose another output")


# ---------------------------------------------------------------------------------------------
# The work folder: committed segment files and their manifest.


class Work:
    """``.<target name>.vdsr-video/`` beside the target: segment files and their records."""

    def __init__(self, target: Path, key: str, stamp: SourceStamp | None, suffix: str) -> None:
        self.target = target
        self.suffix = suffix
        self.folder = work_folder(target)
        self.manifest = self.folder / MANIFEST
        self.discarded = 0
        header = {"job": key, "source": dataclasses.asdict(stamp) if stamp else None}
        records = self._read()
        if records and records[0] != header:
            self.discarded = sum(1 for r in records if "segment" in r)
            self.remove()
            records = []
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries()
        if not records:
            self._append(header)
        self._records = {int(r["segment"]): r for r in records[1:] if "segment" in r}

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = self.manifest.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise VideoWriteError(f"{self.manifest}: cannot read ({error.strerror or error})") from error
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records  # a line torn by a crash is ignored

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        with self.manifest.open("a+", encoding="utf-8") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(handle.tell() - 1)
                if handle.read(1) != "\n":
                    handle.write("\n")  # after a torn line, the record starts on its own line
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _remove_stale_temporaries(self) -> None:
        remove_stale_temporaries(self.folder, ".segment-*.tmp")
        remove_stale_temporaries(self.target.parent, f".{glob.escape(self.target.name)}.*.tmp")

    def segment_path(self, index: int) -> Path:
        return self.folder / f"segment-{index:05d}{self.suffix}"

    def finished(self, count: int) -> set[int]:
        """Segments recorded whose file is there with the recorded size and SHA-256."""
        done = set()
        for index, record in self._records.items():
            if index >= count:
                continue
            if record.get("file") is None:
                done.add(index)  # a segment with no decodable frame: nothing to write
                continue
            path = self.folder / str(record["file"])
            try:
                if path.stat().st_size == record["size"] and file_sha256(path) == record["sha256"]:
                    done.add(index)
            except OSError:
                continue
        return done

    def commit(self, index: int, temporary: Path | None, frames: int) -> None:
        """Record segment ``index`` (its data complete in ``temporary``), then rename it into place."""
        if temporary is None:
            record: dict[str, Any] = {"segment": index, "file": None, "frames": 0}
            self._append(record)
            self._records[index] = record
            return
        fault_point("video-segment")
        path = self.segment_path(index)
        record = {
            "segment": index,
            "file": path.name,
            "size": temporary.stat().st_size,
            "sha256": file_sha256(temporary),
            "frames": frames,
        }
        self._append(record)
        self._records[index] = record
        fault_point("video-recorded")
        os.replace(temporary, path)

    def segment_files(self, count: int) -> list[Path]:
        return [
            self.folder / str(self._records[i]["file"]) for i in range(count) if self._records[i].get("file")
        ]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def remove_stale_temporaries(folder: Path, pattern: str) -> None:
    """Remove temporary files (:func:`~vdsr_deploy.fileops.temporary_path` names) matching
    ``pattern`` in ``folder`` whose process is gone (a killed job's)."""
    for path in folder.glob(pattern):
        parts = path.name.split(".")
        pid = parts[-2].split("-")[0] if len(parts) >= 3 else ""
        if not (pid.isdigit() and pid_alive(int(pid))):
            path.unlink(missing_ok=True)


def _publish(work: Work, info: VideoInfo, target: Path, count: int, overwrite: bool) -> int:
    temporary = temporary_path(target)
    try:
        written = join_segments(work.segment_files(count), info, target, temporary)
        fault_point("video-join")
        try:
            move_into_place(temporary, target, replace=overwrite)
        except FileExistsError as error:
            raise VideoWriteError(
                f"{target}: a file appeared there while this job ran; it was left as it is and the output "
                f"was not written (the segments are kept: use --overwrite to replace it)"
            ) from error
    finally:
        temporary.unlink(missing_ok=True)
    return written


# ---------------------------------------------------------------------------------------------
# Decode | infer | encode.


@dataclass
class _Frame:
    segment: int
    pts: int
    duration: int | None
    prepared: Any  # colour.PreparedImage (rgb) or the chroma planes (luma)
    y: F32 | None = None


@dataclass(frozen=True)
class _SegmentEnd:
    segment: int


class _FrameJob:
    def __init__(
        self,
        config: VideoJobConfig,
        plan: VideoPlan,
        segments: tuple[Segment, ...],
        done: set[int],
        segment_path: Callable[[int], Path],
        commit: Callable[[int, Path | None, int], None],
        runner: Runner,
        halt: Halt,
        emit: EventSink,
        summary: VideoSummary,
    ) -> None:
        self.config = config
        self.info = info = plan.info
        self.settings = plan.settings
        self.segments = segments
        self.done = done
        self.segment_path = segment_path
        self.commit = commit
        self.target = Path(config.target)
        self.frames_path = frames_path = plan.frames_path
        # the first segment to do: decoding starts at its keyframe (a seek), not at the start
        todo = [i for i in range(len(segments)) if i not in done]
        self.first = todo[0] if todo else 0
        self.runner = runner
        self.halt = halt
        self.emit = emit
        self.summary = summary
        self.out_height, self.out_width = colour.output_shape(info.height, info.width, config.pipeline.scale)
        self.full_range = info.colour.range == videoframes.RANGE_FULL or info.pix_fmt.startswith("yuvj")
        if frames_path == "luma":
            self.out_planes = videoframes.plane_shapes(self.out_width, self.out_height, info.pix_fmt)
        self.decoded: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
        self.ordered: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)

    def run(self) -> None:
        if len(self.done) == len(self.segments):
            return
        threads = [
            threading.Thread(target=self._guard, args=(self._decode,), name="vdsr-video-decode", daemon=True),
            threading.Thread(target=self._guard, args=(self._encode,), name="vdsr-video-encode", daemon=True),
            threading.Thread(
                target=self.halt.interrupt_on_stop, args=(self.runner,), name="vdsr-interrupt", daemon=True
            ),
        ]
        fatal: BaseException | None = None
        try:
            for thread in threads:
                thread.start()
            self._infer()
        except Stopped:
            pass
        except KeyboardInterrupt:
            self.halt.stop.set()
        except BaseException as error:
            fatal = error
        finally:
            if fatal is not None or self.halt.halted():
                self.halt.end()
            for thread in threads[:2]:
                thread.join()
            self.halt.end()
            threads[2].join()
        if fatal is not None:
            raise fatal

    def _guard(self, body: Any) -> None:
        try:
            body()
        except Stopped:
            return
        except BaseException as error:
            self.halt.crash(error)

    # decode + prepare ------------------------------------------------------------------------

    def _decode(self) -> None:
        av = require_av()
        errors = av_error_types()
        cuts = cut_points(self.segments)
        current = -1
        with av.open(str(self.info.path)) as container:
            stream = container.streams[self.info.stream_index]
            # slice threads only: frame threads report a bad packet's error at a later packet
            stream.thread_type = "SLICE"
            if self.first > 0:  # to the keyframe that starts the first segment to do
                container.seek(self.segments[self.first].start, stream=stream, backward=True, any_frame=False)
            last = max((i for i in range(len(self.segments)) if i not in self.done), default=-1)
            packets = container.demux(stream)
            while current <= last:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except errors as error:
                    self._corrupt(None, error)
                    continue
                try:
                    decoded = packet.decode()
                except errors as error:
                    self._corrupt(packet, error)
                    continue
                for frame in decoded:
                    if self.halt.halted():
                        raise Stopped
                    if frame.is_corrupt:  # decoded with errors the decoder concealed: kept, reported
                        self._corrupt(packet, VideoReadError("the decoder concealed errors in this frame"))
                    if frame.pts is None:
                        raise VideoReadError(f"{self.info.path}: a frame without a timestamp; cannot keep timing")
                    index = segment_of(cuts, int(frame.pts))
                    if index < self.first:
                        continue  # decoded before the segment's keyframe (an earlier seek point)
                    if index < current:
                        raise VideoReadError(f"{self.info.path}: frame timestamps go backwards at {frame.time:.3f} s")
                    if index != current:
                        if current >= 0 and current not in self.done:
                            self._put(self.decoded, _SegmentEnd(current))
                        for skipped in range(current + 1, index):  # segments with no decodable frame
                            if skipped not in self.done:
                                self._put(self.decoded, _SegmentEnd(skipped))
                        current = index
                    if index in self.done:
                        continue
                    self._put(self.decoded, _Frame(index, int(frame.pts), frame.duration or None, self._prepare(frame)))
        if current >= 0 and current not in self.done:
            self._put(self.decoded, _SegmentEnd(current))
        for index in range(current + 1, len(self.segments)):  # at the end, with no decodable frame
            if index not in self.done:
                self._put(self.decoded, _SegmentEnd(index))
        self._put(self.decoded, END)

    def _corrupt(self, packet: Any, error: BaseException) -> None:
        when = float(packet.pts * packet.time_base) if packet is not None and packet.pts is not None else -1.0
        reason = str(getattr(error, "strerror", None) or error).strip()
        self.summary.corrupt.append(CorruptPacket(when, reason))
        self.emit({"event": "corrupt", "file": str(self.info.path), "seconds": when, "reason": reason})

    def _put(self, target: queue.Queue[object], entry: object) -> None:
        if not self.halt.put(target, entry):
            raise Stopped

    def _prepare(self, frame: Any) -> tuple[F32, Any]:
        scale = self.config.pipeline.scale
        bits = self.info.bit_depth
        if self.frames_path == "rgb":
            samples = videoframes.frame_rgb(frame, bits)
            peak = np.float32(255 if samples.dtype == np.uint8 else 65535)
            prepared = colour.prepare(samples.astype(np.float32) / peak, scale)
            return prepared.y, prepared
        planes = videoframes.frame_planes(frame, bits)
        y = luma.upscale_luma(planes[0], self.out_planes[0], bits, self.full_range)
        chroma = [luma.resize_chroma(p, shape, bits) for p, shape in zip(planes[1:], self.out_planes[1:], strict=True)]
        return y, chroma

    # infer -----------------------------------------------------------------------------------

    def _infer(self) -> None:
        entries: dict[int, object] = {}
        next_out = 0
        sequence = 0
        ended = threading.Event()
        checked = StopCheckingRunner(self.runner, self.halt.halted)

        def planes() -> Iterator[tuple[int, F32] | Flush]:
            nonlocal sequence
            while True:
                try:
                    entry = self.decoded.get(timeout=0.01)
                except queue.Empty:
                    if self.halt.halted():
                        raise Stopped from None
                    yield FLUSH
                    continue
                if entry is END:
                    ended.set()
                    return
                key = sequence
                sequence += 1
                if isinstance(entry, _Frame):
                    y, entry.prepared = entry.prepared
                    entries[key] = entry
                    yield key, y
                else:
                    entries[key] = entry
                    drain()

        def drain() -> None:
            nonlocal next_out
            while next_out in entries:
                entry = entries[next_out]
                if isinstance(entry, _Frame) and entry.y is None:
                    return
                del entries[next_out]
                next_out += 1
                self._put(self.ordered, entry)

        pipeline = self.config.pipeline
        upscale = planes_upscaler(pipeline.ensemble)
        for key, y in upscale(planes(), checked, pipeline.tiling, batch=pipeline.batch):
            frame = entries[key]
            assert isinstance(frame, _Frame)
            frame.y = y
            drain()
        drain()
        if self.halt.halted():
            raise Stopped
        self._put(self.ordered, END)

    # encode ----------------------------------------------------------------------------------

    def _encode(self) -> None:
        writer: SegmentWriter | None = None
        temporary: Path | None = None
        try:
            while True:
                entry = self.halt.get(self.ordered)
                if entry is None:
                    raise Stopped
                if entry is END:
                    return
                if isinstance(entry, _SegmentEnd):
                    frames = 0
                    if writer is not None:
                        writer.close()
                        frames = writer.frames
                    self.commit(entry.segment, temporary, frames)
                    writer, temporary = None, None
                    self.emit({"event": "segment", "file": str(self.info.path), "segment": entry.segment})
                    continue
                assert isinstance(entry, _Frame)
                if writer is None:
                    temporary = temporary_path(self.segment_path(entry.segment))
                    writer = SegmentWriter(
                        temporary, self.target, self.info, self.settings, self.out_width, self.out_height
                    )
                frame = self._finish(entry)
                frame.pts = entry.pts
                if entry.duration:
                    frame.duration = entry.duration
                frame.time_base = self.info.time_base
                writer.write(frame)
                self.summary.upscaled += 1
                self.emit({"event": "frame", "file": str(self.info.path)})
        finally:
            if writer is not None:
                writer.abort()

    def _finish(self, entry: _Frame) -> Any:
        assert entry.y is not None
        bits = self.info.bit_depth
        if self.frames_path == "rgb":
            pixels = colour.finish(entry.prepared, entry.y)
            samples = quantize(pixels, 8 if bits <= 8 else 16)
            return videoframes.rgb_frame(samples, self.info.pix_fmt, self.info.colour)
        planes = [luma.luma_out(entry.y, bits, self.full_range), *entry.prepared]
        return videoframes.planes_frame(planes, self.out_width, self.out_height, self.info.pix_fmt, self.info.colour)
