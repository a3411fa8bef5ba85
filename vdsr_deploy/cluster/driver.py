"""The driver of a cluster job: holds the job lock, starts a pool of Ray actors and hands
them work; :func:`run_cluster_job` is its entry point (the same bookkeeping without Ray, in
process, is :func:`vdsr_deploy.job.staged.run_staged_job`).

Ray places the workers (one per GPU with ``num_gpus=1``; on CPU-only clusters several with a
fraction of a CPU each), restarts one whose process dies, and moves results. The driver:

- holds the job lock for the whole job (:func:`~vdsr_deploy.job.staged.job_lock`: the output folder's, the one a
  single-machine job takes), so it is the only job writing there; its workers name their
  temporaries after the driver's PID, so other jobs leave them alone while it runs;
- plans, records outputs in the manifest and renames them into place through
  :class:`~vdsr_deploy.job.ledger.JobLedger` (the single-machine rules and order);
- hands each idle worker the next few items (:class:`~vdsr_deploy.cluster.pool.WorkerPool`),
  so a call lost with its worker is retried image by image, at most ``retries`` times, then
  reported by name with the reason;
- on a stop request asks the workers to stop, waits a bounded time, kills the rest, and
  removes every temporary of an unfinished output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.cluster.placement import (
    ClusterConfig,
    ClusterError,
    Placement,
    check_fits,
    connect,
    describe_resources,
    plan_placement,
)
from vdsr_deploy.cluster.pool import POLL_SECONDS, Calls, WorkerPool, error_text, kill_calls
from vdsr_deploy.cluster.report import Startup, cluster_report
from vdsr_deploy.errors import BackendUnavailableError
from vdsr_deploy.job import EventSink, JobConfig
from vdsr_deploy.job.ledger import ClusterSummary, JobLedger
from vdsr_deploy.job.remote import registered_filesystems
from vdsr_deploy.job.staged import job_lock
from vdsr_deploy.job.worker import RunnerFactory, UpscaleWorker


class _ClusterRun:
    """One job on Ray: place and start the workers, hand them calls, stop them."""

    def __init__(
        self,
        job: JobConfig,
        cluster: ClusterConfig,
        open_runner: Callable[[Placement], RunnerFactory],
        emit: EventSink,
        stop: threading.Event,
        device: str,
    ) -> None:
        self.job = job
        self.cluster = cluster
        self.open_runner = open_runner
        self.stop = stop
        self.device = device
        self.ledger = JobLedger(job, emit, retries=cluster.retries, chunk=cluster.chunk)

    def run(self) -> ClusterSummary:
        import ray

        connect_seconds = connect(self.cluster)
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}  # type: ignore[no-untyped-call]
        placement = plan_placement(self.cluster, resources, self.device)
        remote = ray.remote(UpscaleWorker).options(  # type: ignore[attr-defined]
            num_cpus=placement.cpus,
            num_gpus=placement.gpus,
            max_concurrency=2,  # process() and stop() run side by side
            max_restarts=-1,  # a dead worker comes back; images are retried a bounded number of times
            max_task_retries=0,
        )
        if self.cluster.address == "local":  # no autoscaler: what is missing never comes
            check_fits(placement, resources)
        factory = self.open_runner(placement)
        filesystems = registered_filesystems()
        owner = os.getpid()  # named in the workers' temporaries: this job's, while it runs
        handles: list[Any] = [
            remote.remote(i, self.job, factory, filesystems, owner=owner) for i in range(placement.actors)
        ]
        try:
            ready_started = time.perf_counter()
            label = self._start(handles, placement, resources)
            startup = Startup(
                self.cluster.address, resources, placement, connect_seconds, time.perf_counter() - ready_started, label
            )
            return self._run_with(handles, startup)
        finally:
            for handle in handles:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)

    def _start(self, handles: list[Any], placement: Placement, resources: dict[str, float]) -> str:
        """Wait (bounded) until every worker is placed and has opened its runner; the
        runner's label, the same on every worker."""
        import ray

        ready = [h.ready.remote() for h in handles]
        done, waiting = ray.wait(ready, num_returns=len(ready), timeout=self.cluster.start_timeout)
        if waiting:
            raise ClusterError(
                f"{len(waiting)} of {len(handles)} workers were not placed within "
                f"{self.cluster.start_timeout:g} s: each asks for {placement.cpus:g} CPU and "
                f"{placement.gpus:g} GPU, and the cluster has {describe_resources(resources)} "
                "(lower --actors, or add nodes)"
            )
        for info in ray.get(done):
            self.ledger.workers[info.worker] = info
        try:
            labels = set(ray.get([h.open.remote() for h in handles]))
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, Exception) else error
            raise ClusterError(f"a worker cannot open its runner: {cause}") from error
        if len(labels) != 1:
            raise ClusterError(
                f"workers opened different runtimes ({', '.join(sorted(labels))}); "
                "pin --backend and --device so every node runs the same one"
            )
        return str(labels.pop())

    def _run_with(self, handles: list[Any], startup: Startup) -> ClusterSummary:
        ledger, placement = self.ledger, startup.placement
        queue: deque[list[int]] = deque(ledger.plan(startup.runner, placement.actors))
        ledger.emit(
            {
                "event": "start",
                "total": len(ledger.pending),
                "skipped": len(ledger.summary.skipped),
                "runner": startup.runner,
                "workers": placement.actors,
                "worker_resources": {"CPU": placement.cpus, "GPU": placement.gpus},
            }
        )
        ledger.started = time.perf_counter()
        pool = WorkerPool(handles, self.cluster.start_timeout)
        try:
            self._dispatch(queue, pool)
            if self.stop.is_set():
                self._stop_workers(pool.busy)
            for indices in queue if not (pool.alive() or self.stop.is_set()) else ():
                ledger.give_up(indices, "no worker left: every worker died and none restarted")
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            self.stop.set()
        finally:
            kill_calls(pool.busy)
            ledger.close(self.stop.is_set())
        summary = ledger.summary
        summary.cluster = cluster_report(startup, summary.seconds, ledger.retried, ledger.nodes, ledger.workers)
        ledger.emit({"event": "finished", **summary.to_dict()})
        return summary

    def _dispatch(self, queue: deque[list[int]], pool: WorkerPool) -> None:
        """Hand calls to idle workers and take their results until the work is done, every
        worker is gone, or a stop is requested; a lost call's images go back to the queue."""
        import ray

        while (queue or pool.busy) and pool.alive() and not self.stop.is_set():
            while queue and (handle := pool.idle_worker()) is not None:
                indices = queue.popleft()
                pool.submit(handle, handle.process.remote(self.ledger.tasks(indices)), indices)
            for ref, handle, indices in pool.wait():
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as error:
                    pool.recover(handle)
                    queue.extendleft(reversed(self.ledger.lost(indices, error_text(error))))
                else:
                    pool.release(handle)
                    self.ledger.collect(result)

    def _stop_workers(self, busy: Calls) -> None:
        """Ask busy workers to stop; keep what they finished; kill those that do not answer."""
        import ray

        for handle, _ in busy.values():
            handle.stop.remote()
        deadline = time.perf_counter() + self.cluster.stop_timeout
        while busy and time.perf_counter() < deadline:
            finished, _ = ray.wait(list(busy), num_returns=1, timeout=POLL_SECONDS)
            for ref in finished:
                busy.pop(ref)
                with contextlib.suppress(ray.exceptions.RayError):
                    self.ledger.collect(ray.get(ref))
        kill_calls(busy)


def with_model_identity(job: JobConfig, open_runner: Callable[[Placement], RunnerFactory]) -> JobConfig:
    """``job`` with the model identity its resume check records: its own ``model`` when set,
    else (like :func:`vdsr_deploy.job.run_job`) that of the model files the project's
    :class:`OpenRunner` names; a custom factory's job keeps ``model`` as given."""
    if job.model or not isinstance(open_runner, OpenRunner):
        return job

    return dataclasses.replace(job, model=open_runner.spec.model_identity())


@dataclass(frozen=True)
class OpenRunner:
    """The project's runner factory for a worker: :func:`vdsr_deploy.runtime.prepare.open_runner` with
    ``spec`` (its thread count set from the placement when it is 0). Picklable. The spec's
    file paths are made absolute here, on the driver: workers may start in other folders."""

    spec: Any  # RunnerSpec
    tiling: Any  # TileConfig
    batch: int

    def __post_init__(self) -> None:
        paths = ("weights", "onnx", "engine", "engines_dir")
        absolute = {k: Path(v).absolute() for k in paths if (v := getattr(self.spec, k, None))}
        if absolute:
            object.__setattr__(self, "spec", dataclasses.replace(self.spec, **absolute))

    def __call__(self, placement: Placement) -> RunnerFactory:
        spec = self.spec
        if spec.threads == 0 and placement.threads:
            spec = dataclasses.replace(spec, threads=placement.threads)
        return _RunnerFromSpec(spec, self.tiling, self.batch)


@dataclass(frozen=True)
class _RunnerFromSpec:
    spec: Any
    tiling: Any
    batch: int

    def __call__(self) -> Any:
        from vdsr_deploy.runtime.prepare import open_runner

        return open_runner(self.spec, tiling=self.tiling, batch=self.batch)


def run_cluster_job(
    job: JobConfig,
    cluster: ClusterConfig,
    open_runner: Callable[[Placement], RunnerFactory],
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
    device: str = "auto",
) -> ClusterSummary:
    """Run ``job`` on a Ray cluster: same outputs, names, resume and reports as :func:`run_job`.

    ``open_runner(placement)`` returns the zero-argument factory each worker calls once to
    get its (inactive) runner; it is pickled to the workers. ``device``: ``cpu`` never asks
    for GPUs. Events are those of :func:`vdsr_deploy.job.run_job` plus ``retry``; they
    arrive per finished call. ``stop`` ends the job cleanly (``summary.interrupted``).
    """
    if importlib.util.find_spec("ray") is None:
        raise BackendUnavailableError("--cluster needs Ray here and on every node: pip install 'vdsr-deploy[cluster]'")
    job = with_model_identity(job, open_runner)
    run = _ClusterRun(job, cluster, open_runner, on_event or (lambda event: None), stop or threading.Event(), device)
    with job_lock(job):  # before Ray starts: a refused job costs nothing
        return run.run()
