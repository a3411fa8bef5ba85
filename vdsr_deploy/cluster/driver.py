"""The driver of a cluster job: plans, hands work to a pool of Ray actors, owns the manifest.

Ray places the workers (one per GPU with ``num_gpus=1``; on CPU-only clusters several with a
fraction of a CPU each), restarts one whose process dies, and moves results. The driver:

- holds the job lock for the whole job (:func:`job_lock`: the output folder's, the one a
  single-machine job takes), so it is the only job writing there; its workers name their
  temporaries after the driver's PID, so other jobs leave them alone while it runs;
- plans with :func:`vdsr_deploy.job.plan_resume`, the single-machine rules (names, formats,
  resume verdicts against the manifest), so a cluster run and a local run resume each other;
- hands each idle worker the next few items (like ``ray.util.ActorPool``, but remembering
  which items each call carries, so a call lost with its worker is retried image by image,
  at most ``retries`` times, then reported by name with the reason);
- records each finished output in the manifest and only then renames its temporary into
  place (the order one process uses), so a re-run skips exactly the complete outputs;
- on a stop request asks the workers to stop, waits a bounded time, kills the rest, and
  removes every temporary of an unfinished output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.base import Runner
from vdsr_deploy.cluster.worker import (
    ChunkResult,
    ItemResult,
    RunnerFactory,
    UpscaleWorker,
    WorkerInfo,
    WorkerTask,
)
from vdsr_deploy.errors import BackendUnavailableError, ConfigError, VdsrError
from vdsr_deploy.imageio import FileDigest, output_format, stale_temporaries
from vdsr_deploy.job import (
    EventSink,
    Failure,
    JobConfig,
    JobSummary,
    Note,
    Skipped,
    WorkItem,
    manifest_folder,
    plan_resume,
)
from vdsr_deploy.joblock import JobLock
from vdsr_deploy.manifest import MANIFEST_NAME, Manifest
from vdsr_deploy.remote import location, manifest_path, name_for_worker, registered_filesystems
from vdsr_deploy.remote import replace as replace_target

_POLL = 0.2


class ClusterError(VdsrError):
    """The cluster cannot be reached, or cannot place or start the workers."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how wide a job runs.

    ``address``: ``local`` (start Ray on this machine), ``auto`` (the cluster this machine
    belongs to), ``ray://host:port`` or ``host:port``. ``actors``: workers (0: one per GPU,
    else one per two CPUs). ``gpus_per_actor``/``cpus_per_actor``: what each asks Ray for
    (None: 1 GPU + 1 CPU on GPU clusters; half its share of the CPUs on CPU-only ones, so
    Ray's own tasks keep a core). ``retries``: times an image is retried after its worker
    died or failed. ``chunk``: images per call (0: about a quarter of a worker's share, at
    most 8). ``start_timeout``: seconds for the workers to be placed (Ray waits forever for
    resources a cluster lacks). ``stop_timeout``: seconds stopped workers get to finish.
    ``local_cpus``/``local_gpus``: resources declared by a ``local`` start (None: detected).
    """

    address: str = "local"
    actors: int = 0
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    retries: int = 2
    chunk: int = 0
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    local_cpus: int | None = None
    local_gpus: int | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError("cluster address: expected local, auto, ray://host:port or host:port")
        for name in ("actors", "retries", "chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("cpus_per_actor", "gpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name}: expected >= 0, got {value}")
        if self.start_timeout <= 0 or self.stop_timeout < 0:
            raise ConfigError("start_timeout must be > 0 and stop_timeout >= 0")


@dataclass
class ClusterSummary(JobSummary):
    """A :class:`JobSummary` plus where the work ran: ``cluster`` holds the address, the
    workers' resources, start-up seconds, retries, and per-node and per-worker throughput."""

    cluster: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cluster": self.cluster}


# ---------------------------------------------------------------------------------------------
# Connecting and placing workers


def connect(config: ClusterConfig) -> float:
    """Join or start Ray (reusing an instance this process already holds); returns seconds."""
    import logging

    import ray

    started = time.perf_counter()
    if ray.is_initialized():
        return 0.0
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if config.address == "local":
            ray.init(
                address="local",
                runtime_env=local_runtime_env(),
                num_cpus=config.local_cpus,
                num_gpus=config.local_gpus,
                include_dashboard=False,
                **options,
            )
        else:
            ray.init(address=config.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"cannot reach the Ray cluster at {config.address}: {error}") from error
    return time.perf_counter() - started


def local_runtime_env() -> dict[str, Any]:
    """Workers of a ``local`` instance import the same vdsr_deploy as this process (so a
    checkout runs without being installed): its folder leads their PYTHONPATH."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


@dataclass(frozen=True)
class Placement:
    actors: int
    cpus: float
    gpus: float
    threads: int


def plan_placement(config: ClusterConfig, resources: dict[str, float], device: str) -> Placement:
    """How many workers, and what each asks for, given the cluster's total resources."""
    total_cpus = float(resources.get("CPU", 0.0))
    total_gpus = float(resources.get("GPU", 0.0)) if device != "cpu" else 0.0
    if total_gpus >= 1 and (config.gpus_per_actor is None or config.gpus_per_actor > 0):
        gpus = config.gpus_per_actor or 1.0
        actors = config.actors or max(1, int(total_gpus // gpus))
        share = total_cpus / actors if actors else 1.0
        cpus = config.cpus_per_actor if config.cpus_per_actor is not None else min(1.0, share)
        return Placement(actors, cpus, gpus, 0)
    actors = config.actors or max(1, int(total_cpus // 2))
    share = total_cpus / actors if total_cpus else 1.0
    cpus = config.cpus_per_actor if config.cpus_per_actor is not None else round(share / 2, 3)
    return Placement(actors, cpus, 0.0, max(1, round(share)))


def _check_fits(placement: Placement, resources: dict[str, float]) -> None:
    for name, each in (("CPU", placement.cpus), ("GPU", placement.gpus)):
        need, have = placement.actors * each, resources.get(name, 0.0)
        if need > have + 1e-9:
            raise ClusterError(
                f"{placement.actors} workers asking for {each:g} {name} each need {need:g} {name}; "
                f"this Ray instance has {have:g} (lower --actors)"
            )


def _describe(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"


# ---------------------------------------------------------------------------------------------
# The job


@dataclass
class _Pending:
    item: WorkItem
    replace: bool
    fmt: str
    attempts: int = 0


@dataclass
class _NodeStats:
    node_ip: str
    workers: set[int] = field(default_factory=set)
    images: int = 0
    megapixels: float = 0.0
    busy_seconds: float = 0.0


class _ClusterJob:
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
        self.emit = emit
        self.stop = stop
        self.device = device
        self.summary = ClusterSummary()
        self.pending: dict[int, _Pending] = {}
        self.manifest: Manifest | None = None
        self.settings = ""
        self.nodes: dict[str, _NodeStats] = {}
        self.workers: dict[int, WorkerInfo] = {}
        self.retried: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self.actors = 1

    # -- events and outcomes -----------------------------------------------------------------

    def fail(self, source: Path, reason: str) -> None:
        self.summary.failed.append(Failure(source, reason))
        self.emit({"event": "failed", "file": str(source), "reason": reason})

    def note(self, source: Path, message: str) -> None:
        self.summary.notes.append(Note(source, message))
        self.emit({"event": "note", "file": str(source), "note": message})

    def collect(self, chunk: ChunkResult) -> None:
        stats = self.nodes.setdefault(chunk.worker.node_id, _NodeStats(chunk.worker.node_ip))
        stats.workers.add(chunk.worker.worker)
        stats.busy_seconds += chunk.seconds
        self.workers[chunk.worker.worker] = chunk.worker
        for result in chunk.items:
            entry = self.pending.pop(result.index)
            for message in result.notes:
                self.note(entry.item.source, message)
            if result.state == "failed":
                self.fail(entry.item.source, result.reason)
            elif result.state == "done":
                if self.publish(entry, result, chunk.worker.node_ip):
                    stats.images += 1
                    stats.megapixels += result.megapixels
            else:
                self.pending[result.index] = entry  # stopped: stays unfinished

    def publish(self, entry: _Pending, result: ItemResult, node_ip: str) -> bool:
        """Record, then rename into place (what ImageWriter.publish does on one machine)."""
        target, temporary = entry.item.target, location(result.temporary)
        assert self.manifest is not None
        try:
            if not (entry.replace or self.job.overwrite) and target.exists():
                raise VdsrError(f"{target}: already exists (use --overwrite to replace it)")
            digest = FileDigest(result.size, result.sha256)
            self.manifest.record(target, digest, entry.item.source, self.settings)
            replace_target(temporary, target)  # os.replace; on a URI, the filesystem's move
        except OSError as error:
            temporary.unlink(missing_ok=True)
            self.fail(entry.item.source, f"{target}: cannot write ({error.strerror or error})")
            return False
        except VdsrError as error:
            temporary.unlink(missing_ok=True)
            self.fail(entry.item.source, str(error))
            return False
        self.summary.done.append(entry.item)
        self.summary.megapixels_out += result.megapixels
        elapsed = time.perf_counter() - self.started
        self.emit(
            {
                "event": "done",
                "file": str(entry.item.source),
                "target": str(target),
                "megapixels": result.megapixels,
                "megapixels_per_second": self.summary.megapixels_out / elapsed if elapsed else 0.0,
                "node": node_ip,
            }
        )
        return True

    def lost(self, indices: list[int], error: BaseException) -> list[list[int]]:
        """A call failed (its worker died, or raised): retry its images one by one, or give up."""
        reason = _error_text(error)
        retry: list[list[int]] = []
        for index in indices:
            entry = self.pending[index]
            entry.attempts += 1
            if entry.attempts > self.cluster.retries:
                del self.pending[index]
                self.fail(
                    entry.item.source,
                    f"its worker failed {entry.attempts} times while processing it ({reason})",
                )
                continue
            self.retried.append({"file": str(entry.item.source), "attempt": entry.attempts, "reason": reason})
            self.emit({"event": "retry", "file": str(entry.item.source), "reason": reason})
            retry.append([index])
        return retry

    # -- running -----------------------------------------------------------------------------

    def plan(self, runner_label: str) -> list[list[int]]:
        plan = plan_resume(self.job, runner_label)
        self.manifest, self.settings = plan.manifest, plan.settings
        for failure in plan.failed:
            self.fail(failure.source, failure.reason)
        for skipped in plan.skipped:
            self.summary.skipped.append(skipped)
            self.emit(_skipped_event(skipped))
        for note in plan.notes:
            self.note(note.source, note.message)
        for index, (item, replace) in enumerate(plan.todo):
            if item.note:
                self.note(item.source, item.note)
            try:
                fmt = output_format(item.target, self.job.fmt)
            except VdsrError as error:
                self.fail(item.source, str(error))
                continue
            self.pending[index] = _Pending(item, replace, fmt)
        return [list(c) for c in _chunks(list(self.pending), self.chunk_size(len(self.pending)))]

    def chunk_size(self, count: int) -> int:
        if self.cluster.chunk:
            return self.cluster.chunk
        return max(1, min(8, math.ceil(count / (4 * max(1, self.actors)))))

    def tasks(self, indices: list[int]) -> list[WorkerTask]:
        return [
            WorkerTask(
                index,
                name_for_worker(self.pending[index].item.source),
                name_for_worker(self.pending[index].item.target),
                self.pending[index].fmt,
            )
            for index in indices
        ]

    def run(self) -> ClusterSummary:
        import ray

        connect_seconds = connect(self.cluster)
        resources = {k: float(v) for k, v in ray.cluster_resources().items()}  # type: ignore[no-untyped-call]
        placement = plan_placement(self.cluster, resources, self.device)
        self.actors = placement.actors
        remote = ray.remote(UpscaleWorker).options(  # type: ignore[attr-defined]
            num_cpus=placement.cpus,
            num_gpus=placement.gpus,
            max_concurrency=2,  # process() and stop() run side by side
            max_restarts=-1,  # a dead worker comes back; images are retried a bounded number of times
            max_task_retries=0,
        )
        if self.cluster.address == "local":  # no autoscaler: what is missing never comes
            _check_fits(placement, resources)
        factory = self.open_runner(placement)
        filesystems = registered_filesystems()
        owner = os.getpid()  # named in the workers' temporaries: this job's, while it runs
        handles: list[Any] = [
            remote.remote(i, self.job, factory, filesystems, owner=owner) for i in range(placement.actors)
        ]
        try:
            summary = self._run_with(handles, placement, resources, connect_seconds)
        finally:
            for handle in handles:
                with contextlib.suppress(Exception):
                    ray.kill(handle, no_restart=True)
        return summary

    def _start(self, handles: list[Any], placement: Placement, resources: dict[str, float]) -> str:
        import ray

        ready = [h.ready.remote() for h in handles]
        done, waiting = ray.wait(ready, num_returns=len(ready), timeout=self.cluster.start_timeout)
        if waiting:
            raise ClusterError(
                f"{len(waiting)} of {len(handles)} workers were not placed within "
                f"{self.cluster.start_timeout:g} s: each asks for {placement.cpus:g} CPU and "
                f"{placement.gpus:g} GPU, and the cluster has {_describe(resources)} "
                "(lower --actors, or add nodes)"
            )
        for info in ray.get(done):
            self.workers[info.worker] = info
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

    def _run_with(
        self,
        handles: list[Any],
        placement: Placement,
        resources: dict[str, float],
        connect_seconds: float,
    ) -> ClusterSummary:
        import ray

        ready_started = time.perf_counter()
        label = self._start(handles, placement, resources)
        ready_seconds = time.perf_counter() - ready_started
        queue: deque[list[int]] = deque(self.plan(label))
        self.emit(
            {
                "event": "start",
                "total": len(self.pending),
                "skipped": len(self.summary.skipped),
                "runner": label,
                "workers": placement.actors,
                "worker_resources": {"CPU": placement.cpus, "GPU": placement.gpus},
            }
        )
        self.started = time.perf_counter()
        pool = _Pool(handles, self.cluster.start_timeout)
        try:
            while (queue or pool.busy) and pool.alive() and not self.stop.is_set():
                while queue and (handle := pool.idle_worker()) is not None:
                    indices = queue.popleft()
                    pool.submit(handle, handle.process.remote(self.tasks(indices)), indices)
                for ref, handle, indices in pool.wait():
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        pool.recover(handle)
                        queue.extendleft(reversed(self.lost(indices, error)))
                    else:
                        pool.release(handle)
                        self.collect(result)
            if self.stop.is_set():
                self._stop_workers(pool.busy)
            for indices in queue if not (pool.alive() or self.stop.is_set()) else ():
                for index in indices:
                    entry = self.pending.pop(index)
                    self.fail(entry.item.source, "no worker left: every worker died and none restarted")
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once
            self.stop.set()
        finally:
            _kill(pool.busy)
            self._close()
        self.summary.cluster = self._report(placement, resources, connect_seconds, ready_seconds, label)
        self.emit({"event": "finished", **self.summary.to_dict()})
        return self.summary

    def _stop_workers(self, busy: dict[Any, tuple[Any, list[int]]]) -> None:
        """Ask busy workers to stop; keep what they finished; kill those that do not answer."""
        import ray

        for handle, _ in busy.values():
            handle.stop.remote()
        deadline = time.perf_counter() + self.cluster.stop_timeout
        while busy and time.perf_counter() < deadline:
            finished, _ = ray.wait(list(busy), num_returns=1, timeout=_POLL)
            for ref in finished:
                busy.pop(ref)
                with contextlib.suppress(ray.exceptions.RayError):
                    self.collect(ray.get(ref))
        _kill(busy)

    def _close(self) -> None:
        """Unfinished items: no temporary left behind (a killed worker may have left one)."""
        self.summary.interrupted = self.stop.is_set()
        self.summary.unfinished = [entry.item for entry in self.pending.values()]
        self.summary.seconds = time.perf_counter() - self.started
        for entry in [*self.pending.values()]:
            for stale in stale_temporaries(entry.item.target):
                stale.unlink(missing_ok=True)
        for item in self.summary.done:
            for stale in stale_temporaries(item.target):
                stale.unlink(missing_ok=True)

    def _report(
        self,
        placement: Placement,
        resources: dict[str, float],
        connect_seconds: float,
        ready_seconds: float,
        label: str,
    ) -> dict[str, Any]:
        seconds = self.summary.seconds or 1e-9
        return {
            "address": self.cluster.address,
            "resources": resources,
            "runner": label,
            "workers": placement.actors,
            "worker_resources": {"CPU": placement.cpus, "GPU": placement.gpus},
            "startup_seconds": {"connect": round(connect_seconds, 3), "workers_ready": round(ready_seconds, 3)},
            "retries": self.retried,
            "nodes": [
                {
                    "node_id": node_id,
                    "node_ip": stats.node_ip,
                    "workers": sorted(stats.workers),
                    "images": stats.images,
                    "megapixels": round(stats.megapixels, 3),
                    "busy_seconds": round(stats.busy_seconds, 3),
                    "megapixels_per_second": round(stats.megapixels / seconds, 4),
                }
                for node_id, stats in sorted(self.nodes.items())
            ],
            "worker_placement": [
                {"worker": w.worker, "node_ip": w.node_ip, "pid": w.pid, "gpu_ids": list(w.gpu_ids)}
                for w in sorted(self.workers.values(), key=lambda w: w.worker)
            ],
        }


def _kill(busy: dict[Any, tuple[Any, list[int]]], timeout: float = 10.0) -> None:
    """Kill the workers of the calls in ``busy`` and wait (bounded) until they are gone, so
    none writes a temporary after the job has removed them."""
    import ray

    if not busy:
        return
    for handle, _ in busy.values():
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)
    with contextlib.suppress(Exception):
        ray.wait(list(busy), num_returns=len(busy), timeout=timeout)
    busy.clear()


class _Pool:
    """The workers' state on the driver: idle, busy with a call (and its items), or
    recovering after a lost call (idle again once ``ready`` answers: Ray fails calls sent
    to a worker that is still restarting, and those must not count against any image).
    A worker that does not come back within ``timeout`` seconds is dropped."""

    def __init__(self, handles: list[Any], timeout: float) -> None:
        self.idle = list(handles)
        self.busy: dict[Any, tuple[Any, list[int]]] = {}  # call ref -> (worker, items)
        self.recovering: dict[Any, tuple[Any, float]] = {}  # ready ref -> (worker, since)
        self.timeout = timeout

    def alive(self) -> bool:
        return bool(self.idle or self.busy or self.recovering)

    def idle_worker(self) -> Any | None:
        return self.idle.pop(0) if self.idle else None

    def submit(self, handle: Any, ref: Any, indices: list[int]) -> None:
        self.busy[ref] = (handle, indices)

    def release(self, handle: Any) -> None:
        self.idle.append(handle)

    def recover(self, handle: Any, since: float | None = None) -> None:
        """``handle`` lost a call: ask it for ``ready`` until it answers."""
        self.recovering[handle.ready.remote()] = (handle, since or time.perf_counter())

    def wait(self) -> list[tuple[Any, Any, list[int]]]:
        """Calls that finished (ref, worker, items); recovering workers are updated."""
        import ray

        refs = [*self.busy, *self.recovering]
        if not refs:
            return []
        finished, _ = ray.wait(refs, num_returns=1, timeout=_POLL)
        calls: list[tuple[Any, Any, list[int]]] = []
        for ref in finished:
            if ref in self.busy:
                handle, indices = self.busy.pop(ref)
                calls.append((ref, handle, indices))
                continue
            handle, since = self.recovering.pop(ref)
            try:
                ray.get(ref)
                self.idle.append(handle)
            except ray.exceptions.RayError:
                if time.perf_counter() - since < self.timeout:
                    time.sleep(_POLL)  # still restarting: ask again shortly
                    self.recover(handle, since)
        return calls


def _skipped_event(skipped: Skipped) -> dict[str, Any]:
    return {
        "event": "skipped",
        "file": str(skipped.source),
        "target": None if skipped.target is None else str(skipped.target),
        "reason": skipped.reason,
    }


def _chunks(values: list[int], size: int) -> list[list[int]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _error_text(error: BaseException) -> str:
    import ray

    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return f"{type(error.cause).__name__}: {error.cause}"
    if isinstance(error, ray.exceptions.RayActorError):
        return "the worker process died"
    return type(error).__name__


@dataclass(frozen=True)
class OpenRunner:
    """The project's runner factory for a worker: :func:`vdsr_deploy.backends.factory.open_runner` with
    ``spec`` (its thread count set from the placement when it is 0). Picklable."""

    spec: Any  # RunnerSpec
    tiling: Any  # TileConfig
    batch: int

    def __call__(self, placement: Placement) -> RunnerFactory:
        import dataclasses

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
        from vdsr_deploy.backends.factory import open_runner

        return open_runner(self.spec, tiling=self.tiling, batch=self.batch)


def run_staged_job(
    job: JobConfig,
    runner: Runner,
    on_event: EventSink | None = None,
    *,
    stop: threading.Event | None = None,
) -> JobSummary:
    """A job with URI inputs or outputs on this machine, without Ray (``run_job`` hands it
    here): one in-process :class:`UpscaleWorker` on the open ``runner`` stages a few inputs at
    a time (downloads), runs ``run_job`` on them, uploads each output to a temporary key, and
    this driver records it and moves it into place, exactly as on a cluster."""
    with job_lock(job):
        return _run_staged(job, runner, on_event, stop)


def job_lock(job: JobConfig) -> JobLock:
    """The lock that makes ``job`` the only one writing its outputs: for a local output, the
    output folder's (the lock a single-machine ``vdsr upscale`` takes, so the two exclude each
    other); for a URI output, its state folder's on this machine (where its manifest lives)."""
    return JobLock(manifest_path(manifest_folder(job), MANIFEST_NAME).parent)


def _run_staged(
    job: JobConfig, runner: Runner, on_event: EventSink | None, stop: threading.Event | None
) -> JobSummary:
    stop = stop or threading.Event()
    sink = on_event or (lambda event: None)
    job_state = _ClusterJob(job, ClusterConfig(), lambda placement: lambda: runner, sink, stop, "auto")
    worker = UpscaleWorker(0, job, lambda: runner, stop=stop)
    worker.adopt(runner)
    queue = deque(job_state.plan(runner.info.label))
    job_state.emit({"event": "start", "total": len(job_state.pending), "skipped": len(job_state.summary.skipped)})
    job_state.started = time.perf_counter()
    try:
        while queue and not stop.is_set():
            job_state.collect(worker.process(job_state.tasks(queue.popleft())))
    except KeyboardInterrupt:
        stop.set()
    finally:
        job_state._close()
    summary = job_state.summary
    job_state.emit({"event": "finished", **JobSummary.to_dict(summary)})
    return JobSummary(**{f.name: getattr(summary, f.name) for f in dataclasses.fields(JobSummary)})


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
    runner = _ClusterJob(job, cluster, open_runner, on_event or (lambda event: None), stop or threading.Event(), device)
    with job_lock(job):  # before Ray starts: a refused job costs nothing
        return runner.run()
