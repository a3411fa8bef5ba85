"""``vdsr upscale film.mkv -o out.mkv --cluster ...``: a video's keyframe segments as Ray work
items, so one film spreads over every worker of a cluster.

The driver holds the job lock and the work folder (:mod:`vdsr_deploy.job.video`): it plans
the segments, skips those an earlier run (local or on the cluster) finished, and submits one
Ray task per missing segment. A task opens its runner, decodes its segment from the keyframe
that starts it, upscales and encodes it into a temporary file in the work folder
(:func:`~vdsr_deploy.job.video.upscale_segment`; the folder must be shared by the nodes, as
for image jobs with local paths) and returns the file's name. The driver records each
returned segment and renames it into place in any order, then joins them into the output by
stream copy exactly as a local job does, so the file is the same. A task lost with its worker
is retried by Ray (``retries`` times); a stop request cancels the tasks in flight.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vdsr_deploy.cluster.placement import ClusterConfig, Placement, connect, plan_placement
from vdsr_deploy.cluster.pool import POLL_SECONDS, error_text
from vdsr_deploy.errors import BackendUnavailableError, VideoWriteError
from vdsr_deploy.job.lock import JobLock
from vdsr_deploy.job.report import EventSink
from vdsr_deploy.job.video import (
    VideoJobConfig,
    VideoPlan,
    VideoSummary,
    finish,
    open_work,
    plan_video_job,
    upscale_segment,
    video_segments,
)
from vdsr_deploy.job.worker import RunnerFactory


def run_cluster_video_job(
    config: VideoJobConfig,
    cluster: ClusterConfig,
    open_runner: Callable[[Placement], RunnerFactory],
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
    device: str = "auto",
    plan: VideoPlan | None = None,
) -> VideoSummary:
    """:func:`~vdsr_deploy.job.video.run_video_job` with the segments run as Ray tasks.

    ``open_runner(placement)`` returns the zero-argument factory a task calls for its
    (inactive) runner; it is pickled to the workers. Events as for a local video job
    (``frame`` arrive a segment at a time). ``stop`` cancels the tasks in flight; finished
    segments stay recorded and the same call resumes.
    """
    if importlib.util.find_spec("ray") is None:
        raise BackendUnavailableError("--cluster needs Ray here and on every node: pip install 'vdsr-deploy[cluster]'")
    import ray

    emit = on_event or (lambda event: None)
    stop = stop or threading.Event()
    started = time.perf_counter()
    plan = plan or plan_video_job(config)
    target = Path(config.target)
    summary = VideoSummary(Path(config.source), target, encode=plan.settings.describe(), frames=plan.info.frames)
    for note in plan.notes:
        summary.notes.append(note)
        emit({"event": "note", "file": str(config.source), "note": note})
    if target.exists() and not config.overwrite:
        summary.skipped = "the output exists (use --overwrite to replace it)"
        emit({"event": "skipped", "file": str(config.source), "target": str(target), "reason": summary.skipped})
        return summary
    segments = video_segments(config, plan)
    summary.segments = len(segments)
    with JobLock(target.parent):  # before Ray starts: a refused job costs nothing
        connect(cluster)
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}  # type: ignore[no-untyped-call]
        placement = plan_placement(cluster, resources, device)
        work = open_work(config, plan, f"cluster:{device}", summary, emit)
        done = work.finished(len(segments))
        task = ray.remote(_segment_task).options(  # type: ignore[attr-defined]
            num_cpus=placement.cpus, num_gpus=placement.gpus, max_retries=cluster.retries
        )
        factory = open_runner(placement)
        todo = [index for index in range(len(segments)) if index not in done]
        calls = {task.remote(config, plan, index, factory): index for index in todo}
        pending = list(calls)
        try:
            while pending and not stop.is_set():
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                for call in ready:
                    index = calls[call]
                    try:
                        temporary, frames = ray.get(call)
                    except ray.exceptions.RayError as error:
                        raise VideoWriteError(
                            f"{target}: segment {index} failed on the cluster ({error_text(error)}); "
                            "finished segments are kept: run the same command again"
                        ) from error
                    work.commit(index, Path(temporary) if temporary else None, frames)
                    summary.upscaled += frames
                    for _ in range(frames):
                        emit({"event": "frame", "file": str(config.source)})
                    emit({"event": "segment", "file": str(config.source), "segment": index})
        finally:
            for call in pending:
                ray.cancel(call, force=True)
        summary.interrupted = stop.is_set() and bool(pending)
        if not summary.interrupted:
            finish(work, config, plan, summary)
    summary.seconds = time.perf_counter() - started
    emit({"event": "finished", "file": str(config.source), "interrupted": summary.interrupted})
    return summary


def _segment_task(
    config: VideoJobConfig, plan: VideoPlan, index: int, factory: RunnerFactory
) -> tuple[str | None, int]:
    """One segment on a worker: its runner opened, the segment upscaled into a temporary file."""
    runner: Any = factory()
    with runner as active:
        temporary, frames = upscale_segment(config, plan, index, active)
    return (str(temporary) if temporary is not None else None, frames)
