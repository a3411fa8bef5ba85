"""The driver's record of one job, apart from how the work is run (Ray or in process).

:class:`JobLedger` plans with :func:`vdsr_deploy.job.plan_resume` (the single-machine rules:
names, formats, resume verdicts against the manifest, so a cluster run and a local run resume
each other), cuts the work into calls, and takes each call's results: it records a finished
output in the manifest and only then renames its temporary into place (the order one process
uses, so a re-run skips exactly the complete outputs), reports failures and notes by name,
decides which images of a lost call are retried, and at the end removes every temporary an
unfinished output left behind. Every outcome is also emitted as an event.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import VdsrError
from vdsr_deploy.imageio import FileDigest, appeared_meanwhile, output_format, stale_temporaries
from vdsr_deploy.job.config import JobConfig, WorkItem
from vdsr_deploy.job.manifest import Manifest
from vdsr_deploy.job.plan import plan_resume
from vdsr_deploy.job.remote import location, name_for_worker
from vdsr_deploy.job.remote import replace as replace_target
from vdsr_deploy.job.report import EventSink, Failure, JobSummary, Note, Skipped
from vdsr_deploy.job.worker import ChunkResult, ItemResult, WorkerInfo, WorkerTask


@dataclass
class ClusterSummary(JobSummary):
    """A :class:`JobSummary` plus where the work ran: ``cluster`` holds the address, the
    workers' resources, start-up seconds, retries, and per-node and per-worker throughput."""

    cluster: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "cluster": self.cluster}


@dataclass
class NodeStats:
    """One node's share of the job: its workers, the outputs they published, busy seconds."""

    node_ip: str
    workers: set[int] = field(default_factory=set)
    images: int = 0
    megapixels: float = 0.0
    busy_seconds: float = 0.0


@dataclass
class _Pending:
    item: WorkItem
    replace: bool
    fmt: str
    attempts: int = 0


class JobLedger:
    """Pending items by plan index, the summary, and per-node/per-worker figures of one job.

    ``retries``: times an image of a lost call is tried again; ``chunk``: images per call
    (0: about a quarter of a worker's share, at most 8)."""

    def __init__(self, job: JobConfig, emit: EventSink, *, retries: int = 2, chunk: int = 0) -> None:
        self.job = job
        self.emit = emit
        self.retries = retries
        self.chunk = chunk
        self.summary = ClusterSummary()
        self.pending: dict[int, _Pending] = {}
        self.manifest: Manifest | None = None
        self.settings = ""
        self.nodes: dict[str, NodeStats] = {}
        self.workers: dict[int, WorkerInfo] = {}
        self.retried: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    # -- planning ----------------------------------------------------------------------------

    def plan(self, runner_label: str, workers: int = 1) -> list[list[int]]:
        """Plan the job for ``runner_label``; the pending items' indices, cut into calls for
        ``workers`` workers. Skips, failures and notes of the plan are reported here."""
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
        indices = list(self.pending)
        size = self.chunk_size(len(indices), workers)
        return [indices[i : i + size] for i in range(0, len(indices), size)]

    def chunk_size(self, count: int, workers: int) -> int:
        if self.chunk:
            return self.chunk
        return max(1, min(8, math.ceil(count / (4 * max(1, workers)))))

    def tasks(self, indices: list[int]) -> list[WorkerTask]:
        """What a worker is sent for these pending items."""
        return [
            WorkerTask(
                index,
                name_for_worker(self.pending[index].item.source),
                name_for_worker(self.pending[index].item.target),
                self.pending[index].fmt,
            )
            for index in indices
        ]

    # -- outcomes ----------------------------------------------------------------------------

    def fail(self, source: Path, reason: str) -> None:
        self.summary.failed.append(Failure(source, reason))
        self.emit({"event": "failed", "file": str(source), "reason": reason})

    def note(self, source: Path, message: str) -> None:
        self.summary.notes.append(Note(source, message))
        self.emit({"event": "note", "file": str(source), "note": message})

    def collect(self, chunk: ChunkResult) -> None:
        """Take one call's results: publish the finished outputs, report the failed ones;
        stopped items stay pending."""
        stats = self.nodes.setdefault(chunk.worker.node_id, NodeStats(chunk.worker.node_ip))
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
        overwrite = entry.replace or self.job.overwrite
        try:
            digest = FileDigest(result.size, result.sha256)
            settled = self.manifest.settle(target, digest)
            self.manifest.record(target, digest, entry.item.source, self.settings)
            if not settled.publish:
                temporary.unlink(missing_ok=True)  # the identical file in place is kept
            else:
                try:
                    replace_target(temporary, target, overwrite=overwrite)
                except FileExistsError:
                    self.manifest.retract(target)  # recorded only what this job published
                    raise VdsrError(appeared_meanwhile(target)) from None
            if settled.note:
                self.note(entry.item.source, settled.note)
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

    def lost(self, indices: list[int], reason: str) -> list[list[int]]:
        """A call failed for ``reason`` (its worker died, or raised): its images to retry one
        by one; those tried ``retries`` times already are reported failed instead."""
        retry: list[list[int]] = []
        for index in indices:
            entry = self.pending[index]
            entry.attempts += 1
            if entry.attempts > self.retries:
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

    def give_up(self, indices: list[int], reason: str) -> None:
        """These pending items will not run (no worker is left): reported failed."""
        for index in indices:
            entry = self.pending.pop(index)
            self.fail(entry.item.source, reason)

    def close(self, interrupted: bool) -> None:
        """End the job's record: what is unfinished, the seconds, and no temporary left
        behind (a killed worker may have left one)."""
        self.summary.interrupted = interrupted
        self.summary.unfinished = [entry.item for entry in self.pending.values()]
        self.summary.seconds = time.perf_counter() - self.started
        for entry in [*self.pending.values()]:
            for stale in stale_temporaries(entry.item.target):
                stale.unlink(missing_ok=True)
        for item in self.summary.done:
            for stale in stale_temporaries(item.target):
                stale.unlink(missing_ok=True)
        if self.manifest is not None and not interrupted:
            self.manifest.compact()  # a damaged manifest, healed: only when nothing is left open


def _skipped_event(skipped: Skipped) -> dict[str, Any]:
    return {
        "event": "skipped",
        "file": str(skipped.source),
        "target": None if skipped.target is None else str(skipped.target),
        "reason": skipped.reason,
    }
