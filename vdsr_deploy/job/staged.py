"""A job whose inputs or output are URIs (``s3://...``), on this machine without Ray:
:func:`run_staged_job` stages a few inputs at a time through local scratch files, with the
same bookkeeping as a cluster job (:class:`~vdsr_deploy.job.ledger.JobLedger` records each
output and moves it into place; :class:`~vdsr_deploy.job.worker.UpscaleWorker` runs the local
job on the staged files). :func:`job_lock` is the lock both take."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque

from vdsr_deploy.job.config import JobConfig
from vdsr_deploy.job.ledger import JobLedger
from vdsr_deploy.job.lock import JobLock
from vdsr_deploy.job.manifest import MANIFEST_NAME
from vdsr_deploy.job.plan import manifest_folder
from vdsr_deploy.job.remote import manifest_path
from vdsr_deploy.job.report import EventSink, JobSummary
from vdsr_deploy.job.worker import UpscaleWorker
from vdsr_deploy.runner import Runner


def job_lock(job: JobConfig) -> JobLock:
    """The lock that makes ``job`` the only one writing its outputs: for a local output, the
    output folder's (the lock a single-machine ``vdsr upscale`` takes, so the two exclude each
    other); for a URI output, its state folder's on this machine (where its manifest lives)."""
    return JobLock(manifest_path(manifest_folder(job), MANIFEST_NAME).parent)


def run_staged_job(
    job: JobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
) -> JobSummary:
    """A job with URI inputs or outputs on this machine, without Ray (:func:`~vdsr_deploy.job.run.run_job`
    hands it here): one in-process :class:`UpscaleWorker` on the open ``runner`` stages a few inputs at
    a time (downloads), runs ``run_job`` on them, uploads each output to a temporary key, and
    this driver records it and moves it into place, exactly as on a cluster."""
    with job_lock(job):
        return _run_staged(job, runner, on_event, stop)


def _run_staged(
    job: JobConfig, runner: Runner, on_event: EventSink | None, stop: threading.Event | None
) -> JobSummary:
    stop = stop or threading.Event()
    ledger = JobLedger(job, on_event or (lambda event: None))
    worker = UpscaleWorker(0, job, lambda: runner, stop=stop)
    worker.adopt(runner)
    queue = deque(ledger.plan(runner.info.label))
    ledger.emit({"event": "start", "total": len(ledger.pending), "skipped": len(ledger.summary.skipped)})
    ledger.started = time.perf_counter()
    try:
        while queue and not stop.is_set():
            ledger.collect(worker.process(ledger.tasks(queue.popleft())))
    except KeyboardInterrupt:
        stop.set()
    finally:
        ledger.close(stop.is_set())
    summary = ledger.summary
    ledger.emit({"event": "finished", **JobSummary.to_dict(summary)})
    return JobSummary(**{f.name: getattr(summary, f.name) for f in dataclasses.fields(JobSummary)})


