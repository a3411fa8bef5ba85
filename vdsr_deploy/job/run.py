"""The entry point of a job: :func:`run_job` runs it on local files
(:func:`~vdsr_deploy.job.local.run_local_job`) or, when inputs or output are URIs, staged
through local scratch files (:func:`~vdsr_deploy.job.staged.run_staged_job`)."""

from __future__ import annotations

import dataclasses
import threading

from vdsr_deploy.job.config import JobConfig
from vdsr_deploy.job.local import run_local_job
from vdsr_deploy.job.remote import uses_uris
from vdsr_deploy.job.report import EventSink, JobSummary
from vdsr_deploy.job.staged import run_staged_job
from vdsr_deploy.runner import Runner


def run_job(
    config: JobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
    device_path: bool | None = None,
) -> JobSummary:
    """Upscale every input; the runner must be active. Returns what was done, skipped and failed.

    ``on_event`` receives dicts (``start``, ``skipped``, ``note``, ``begin``, ``band``,
    ``done``, ``failed``, ``finished``), one at a time, possibly from worker threads. Setting
    ``stop`` (see :func:`~vdsr_deploy.job.signals.stop_on_signals`) or Ctrl-C ends the job
    cleanly with ``summary.interrupted``. ``device_path``: prepare, run and finish every band
    on the runner's device (:mod:`vdsr_deploy.planes.device_pipeline`); None picks it when the
    runner computes on CUDA. Per-file problems are failures in the summary; a runner error
    ends the job (after cleaning up) and is raised. Inputs or output named by URIs
    (``s3://...``) run staged through local scratch files (:mod:`vdsr_deploy.job.remote`).
    """
    if not config.model:  # the caller named no model: the files the runner was opened from
        config = dataclasses.replace(config, model=runner.model_identity)
    if uses_uris(config.inputs, config.output):
        return run_staged_job(config, runner, on_event, stop=stop)
    return run_local_job(config, runner, on_event, stop=stop, device_path=device_path)
