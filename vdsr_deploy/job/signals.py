"""Stop requests from the operating system: :func:`stop_on_signals` turns SIGINT/SIGTERM
into a :class:`StopRequest` a job polls, and a second signal ends the process at once
(:func:`exit_at_once`) without leaving temporary files or job locks behind."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from vdsr_deploy.imageio import remove_live_temporaries
from vdsr_deploy.job.lock import release_all


@dataclass
class StopRequest:
    """Set by :func:`stop_on_signals`; ``signum`` is the first signal received."""

    event: threading.Event = field(default_factory=threading.Event)
    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """The shell convention 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + (self.signum or signal.SIGINT)


def exit_at_once(signum: int) -> None:
    """End the process now: remove this process's temporary output files, release its job
    locks, exit with 128 + ``signum``. Completed outputs and their manifest records stay."""

    def release_and_exit() -> None:
        release_all()
        os._exit(128 + signum)

    remove_live_temporaries(then=release_and_exit)


class _SignalWatcher:
    """Counts signals on a thread of its own, woken by :func:`signal.set_wakeup_fd`.

    The wake-up byte is written by the C-level handler the moment a signal arrives, so the
    watcher acts even while the main thread is inside a long runner, decode or encode call
    (Python-level handlers only run between the main thread's bytecodes).
    """

    def __init__(self, request: StopRequest, signals: tuple[int, ...]) -> None:
        self.request = request
        self.signals = signals
        self.count = 0
        self._lock = threading.Lock()
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._thread = threading.Thread(target=self._watch, name="vdsr-signals", daemon=True)

    def __enter__(self) -> _SignalWatcher:
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        self._writer.close()
        self._thread.join()
        self._reader.close()

    def received(self, signum: int) -> None:
        if signum not in self.signals:
            return
        with self._lock:
            self.count += 1
            first = self.count == 1
            if first:
                self.request.signum = signum
        if first:
            self.request.event.set()
        else:
            exit_at_once(self.request.signum or signum)

    def _watch(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                self.received(signum)


@contextmanager
def stop_on_signals(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into a stop request for :func:`run_job` (pass ``request.event``).

    The first signal sets the request at once (from a watcher thread, whatever the main
    thread is doing); the job then stops, interrupting the runner call in flight where the
    runtime allows it (:meth:`Runner.interrupt`). A second signal exits the process at once
    (:func:`exit_at_once`: temporary files removed, locks released, exit code 128 + the
    first signal; no summary). Handlers are restored on exit. Outside the main thread no
    handler can be installed and the request is only set by hand.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        """Nothing to do here: the watcher thread acts on the wake-up byte."""

    with _SignalWatcher(request, signals):
        previous = {number: signal.signal(number, handler) for number in signals}
        try:
            yield request
        finally:
            for number, old in previous.items():
                signal.signal(number, old)

