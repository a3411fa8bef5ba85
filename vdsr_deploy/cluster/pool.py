"""The workers as the driver sees them: idle, busy with a call (and the items it carries),
or recovering after a lost call; killing them; and a lost call's reason in words.

Like ``ray.util.ActorPool``, but it remembers which items each call carries, so a call lost
with its worker can be retried image by image. Ray is imported only where it is called.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

POLL_SECONDS = 0.2

Calls = dict[Any, tuple[Any, list[int]]]  # call ref -> (worker, plan indices)


class WorkerPool:
    """The workers' state on the driver: idle, busy with a call (and its items), or
    recovering after a lost call (idle again once ``ready`` answers: Ray fails calls sent
    to a worker that is still restarting, and those must not count against any image).
    A worker that does not come back within ``timeout`` seconds is dropped."""

    def __init__(self, handles: list[Any], timeout: float) -> None:
        self.idle = list(handles)
        self.busy: Calls = {}
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
        finished, _ = ray.wait(refs, num_returns=1, timeout=POLL_SECONDS)
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
                    time.sleep(POLL_SECONDS)  # still restarting: ask again shortly
                    self.recover(handle, since)
        return calls


def kill_calls(busy: Calls, timeout: float = 10.0) -> None:
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


def error_text(error: BaseException) -> str:
    """Why a call was lost, in words: the worker's exception, or that its process died."""
    import ray

    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return f"{type(error.cause).__name__}: {error.cause}"
    if isinstance(error, ray.exceptions.RayActorError):
        return "the worker process died"
    return type(error).__name__
