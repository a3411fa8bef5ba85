"""Running a job on local files: :func:`run_local_job` plans it under the output folder's lock, then wires the
stages together with bounded queues and runs inference on the calling thread: decoding
(:mod:`~vdsr_deploy.job.decode`) and preparing (:mod:`~vdsr_deploy.job.prepare`) on threads
of their own, encoding (:mod:`~vdsr_deploy.job.encode`) on the save workers. It also
decides how the job ends: stopped, finished, or failed with the error that ended it."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import cast

from vdsr_deploy.job.budget import JobMemory
from vdsr_deploy.job.config import JobConfig
from vdsr_deploy.job.decode import feed
from vdsr_deploy.job.encode import Encoder
from vdsr_deploy.job.halt import END, Halt, StopCheckingRunner, Stopped
from vdsr_deploy.job.lock import JobLock
from vdsr_deploy.job.plan import ResumePlan, manifest_folder, plan_job, plan_resume
from vdsr_deploy.job.prepare import DevicePath, Preparer
from vdsr_deploy.job.report import EventSink, JobSummary, Recorder
from vdsr_deploy.job.task import F32, BandKey, BandsInFlight, Task
from vdsr_deploy.planes.ensemble import planes_upscaler
from vdsr_deploy.planes.pipeline import FLUSH, Flush
from vdsr_deploy.runner import Runner


def run_local_job(
    config: JobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
    device_path: bool | None = None,
) -> JobSummary:
    """:func:`~vdsr_deploy.job.run.run_job` for inputs and output on local paths (no URIs);
    the same contract."""
    recorder = Recorder(on_event or (lambda event: None))
    halt = Halt(stop or threading.Event())
    planned = plan_job(config)  # before the lock creates the output folder: no image, no folder
    with JobLock(manifest_folder(config)):  # one job per output folder
        plan = plan_resume(config, runner.info.label, halted=halt.halted, planned=planned)
        return _run_planned(config, plan, runner, device_path, recorder, halt)


def _run_planned(
    config: JobConfig,
    plan: ResumePlan,
    runner: Runner,
    device_path: bool | None,
    recorder: Recorder,
    halt: Halt,
) -> JobSummary:
    _record_plan(plan, recorder)
    todo = plan.todo
    recorder.start(len(todo))
    memory = JobMemory.split(config.memory_mb)
    # every runner call checks for a stop first: the tiles of one image take many calls
    checked = StopCheckingRunner(runner, halt.halted)
    decoded: queue.Queue[object] = queue.Queue(maxsize=config.load_threads + 1)
    ready: queue.Queue[object] = queue.Queue(maxsize=config.queue_size)
    bands = BandsInFlight(memory.bands)
    opened: list[Task] = []
    encoder = Encoder(
        manifest=plan.manifest,
        settings=plan.settings,
        budget=memory.bands,
        chunk_bytes=memory.chunk_bytes,
        recorder=recorder,
        halt=halt,
    )
    preparer = Preparer(
        config=config,
        memory=memory,
        bands=bands,
        ready=ready,
        opened=opened,
        encoder=encoder,
        device=DevicePath.select(checked, config, device_path),
        recorder=recorder,
        halt=halt,
    )
    decoders = ThreadPoolExecutor(config.load_threads, thread_name_prefix="vdsr-decode")
    savers = ThreadPoolExecutor(config.save_threads, thread_name_prefix="vdsr-save")
    threads = [
        threading.Thread(
            target=feed,
            args=(todo, decoders, decoded),
            kwargs={"budget": memory.inputs, "max_pixels": config.max_pixels, "halt": halt},
            name="vdsr-feed",
            daemon=True,
        ),
        threading.Thread(
            target=preparer.prepare_all, args=(decoded,), name="vdsr-prepare", daemon=True
        ),
        threading.Thread(
            target=halt.interrupt_on_stop, args=(runner,), name="vdsr-interrupt", daemon=True
        ),
    ]

    def infer() -> None:
        _infer_and_save(config, checked, ready, bands, encoder, savers, halt)

    fatal = _run_stages(threads, decoders, savers, infer, halt)
    _abort_unfinished(opened)
    recorder.finish([item for item, _ in todo], interrupted=halt.stop.is_set())
    if fatal is not None:
        raise fatal
    if halt.error is not None and not halt.stop.is_set():
        raise halt.error
    if not halt.stop.is_set():
        plan.manifest.compact()  # a damaged manifest, healed: only when nothing is left open
    return recorder.summary


def _run_stages(
    threads: list[threading.Thread],
    decoders: ThreadPoolExecutor,
    savers: ThreadPoolExecutor,
    infer: Callable[[], None],
    halt: Halt,
) -> BaseException | None:
    """Start the stage threads, run inference here, then wind every stage down, whatever
    happened. Returns the error that ended the job (None: finished or stopped; Ctrl-C is
    a stop)."""
    try:
        if halt.halted():
            raise Stopped
        for thread in threads:
            thread.start()
        infer()
    except Stopped:
        pass
    except KeyboardInterrupt:
        halt.stop.set()
    except BaseException as error:
        return error
    finally:
        halt.end()
        savers.shutdown(wait=True)
        for thread in threads:
            if thread.is_alive():
                thread.join()
        decoders.shutdown(wait=True, cancel_futures=True)
    return None


def _record_plan(plan: ResumePlan, recorder: Recorder) -> None:
    for failure in plan.failed:
        recorder.fail(failure.source, failure.reason)
    for skipped in plan.skipped:
        recorder.skip(skipped)
    for note in plan.notes:
        recorder.note(note.source, note.message)


def _infer_and_save(
    config: JobConfig,
    runner: Runner,
    ready: queue.Queue[object],
    bands: BandsInFlight,
    encoder: Encoder,
    savers: ThreadPoolExecutor,
    halt: Halt,
) -> None:
    """Stage 3 on the calling thread: :func:`vdsr_deploy.planes.pipeline.upscale_planes` fills
    batches with tiles of any bands and images; each upscaled band goes to a save worker
    (at most two per worker waiting)."""
    p = config.pipeline
    run_planes = planes_upscaler(p.ensemble)
    results = run_planes(
        _ready_planes(ready, bands, halt),
        runner,
        p.tiling,
        batch=p.batch,
        max_images_in_flight=p.max_images_in_flight,
    )
    writes: list[Future[None]] = []
    for key, y in results:
        writes.append(savers.submit(encoder.save, bands.take(key), y))
        while len(writes) > config.save_threads * 2:
            writes.pop(0).result()
        if halt.halted():
            raise Stopped
    for write in writes:
        write.result()


def _ready_planes(
    ready: queue.Queue[object], bands: BandsInFlight, halt: Halt
) -> Iterator[tuple[BandKey, F32] | Flush]:
    """The bands' network inputs as the preparer queues them. When none is ready, yields
    :data:`~vdsr_deploy.planes.pipeline.FLUSH` first, so the runner never waits for a full batch.
    Bands of failed images are dropped; a crashed worker's error is raised at the end."""
    while True:
        try:
            entry = ready.get_nowait()
        except queue.Empty:
            yield FLUSH  # nothing ready: run what waits for a full batch now
            entry = halt.get(ready)
            if entry is None:
                raise Stopped from None
        if entry is END:
            if halt.error is not None:
                raise halt.error
            return
        if halt.halted():
            raise Stopped
        key, plane = cast(tuple[BandKey, F32], entry)
        band = bands.get(key)
        if band is None or band.task.failed:
            bands.drop(key)
            continue
        yield key, plane


def _abort_unfinished(opened: list[Task]) -> None:
    """Abort the writers of outputs not finished (their temporary files removed)."""
    for task in opened:
        with task.lock:
            if not task.finished:
                task.writer.abort()
