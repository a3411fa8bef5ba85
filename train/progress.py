"""A run's progress record: every entry goes to ``log.jsonl`` (one JSON object a line,
appended, so a resumed run continues its log) and to the caller's event callback, and the
training loss is averaged over the steps between two ``train`` entries.

The loop prints nothing; the CLI renders the events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EventSink = Callable[[dict[str, Any]], None]


class RunLog:
    """Appends entries to ``path`` (flushed at once) and passes each to ``emit``; use it
    with :func:`contextlib.closing`."""

    def __init__(self, path: Path, emit: EventSink) -> None:
        self._file = path.open("a")
        self._emit = emit

    def record(self, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()
        self._emit(entry)

    def close(self) -> None:
        self._file.close()


class LossWindow:
    """The mean loss and seconds per step since the last ``train`` entry. Time spent
    validating is left out by :meth:`restart_clock`."""

    def __init__(self) -> None:
        self._loss, self._steps, self._start = 0.0, 0, time.time()

    def add(self, loss: float) -> None:
        self._loss += loss
        self._steps += 1

    def restart_clock(self) -> None:
        self._start = time.time()

    def entry(self, step: int, lr: float, *, bf16: bool) -> dict[str, Any]:
        """The ``train`` entry for the steps so far; the window then starts again."""
        seconds = time.time() - self._start
        entry = {
            "event": "train",
            "step": step,
            "loss": self._loss / self._steps,
            "lr": lr,
            "seconds_per_iter": seconds / self._steps,
            "bf16": bf16,
        }
        self._loss, self._steps, self._start = 0.0, 0, time.time()
        return entry
