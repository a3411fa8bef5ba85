"""The job's memory budget: ``memory_mb`` split in half between decoded inputs and row bands
in flight (:class:`JobMemory`), each half a :class:`MemoryBudget` that blocks a stage until
its next item fits, and the bytes one output row of a band holds (:func:`band_row_bytes`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

MIB = 1 << 20


class MemoryBudget:
    """Bytes that may be held at once; a request larger than the whole budget waits until
    nothing else is held, then runs alone (so any single image or band can be processed)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._condition = threading.Condition()

    def acquire(self, amount: int, halted: Callable[[], bool]) -> bool:
        """Hold ``amount`` bytes, waiting for room; False (nothing held) once ``halted()``."""
        with self._condition:
            while self.used and self.used + amount > self.capacity:
                if halted():
                    return False
                self._condition.wait(0.05)
            self.used += amount
            return True

    def release(self, amount: int) -> None:
        with self._condition:
            self.used -= amount
            self._condition.notify_all()


@dataclass(frozen=True)
class JobMemory:
    """``inputs``: decoded images waiting for bands; ``bands``: bands from preparation to
    their write; ``chunk_bytes``: the size of the bicubic and colour temporaries."""

    inputs: MemoryBudget
    bands: MemoryBudget
    chunk_bytes: int

    @classmethod
    def split(cls, memory_mb: int) -> JobMemory:
        memory = memory_mb * MIB
        return cls(MemoryBudget(memory // 2), MemoryBudget(memory // 2), max(4 * MIB, memory // 32))


def band_row_bytes(width: int, *, colour: bool, alpha: bool, channels: int, bit_depth: int) -> int:
    """Bytes one row of a host band holds: float32 Y in and out, float32 CbCr and alpha (when
    the image has them) and the quantized output row of ``channels`` samples at ``bit_depth``."""
    return width * (
        8 + (8 if colour else 0) + (4 if alpha else 0) + channels * (2 if bit_depth == 16 else 1)
    )
