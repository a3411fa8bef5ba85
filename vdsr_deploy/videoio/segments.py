"""Cutting a video into segments at keyframes (pure integer maths, no PyAV).

A segment is the frames whose presentation timestamp lies in ``[start, stop)``; each starts
at a keyframe of the source and lasts at least ``seconds`` (the last one may be shorter), so
a resumed job re-decodes from a keyframe and the segments' encoded frames can be joined by
stream copy. The cut points depend only on the file's keyframes and ``seconds``, so the same
file and settings always give the same segments.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from vdsr_deploy.errors import ConfigError


@dataclass(frozen=True)
class Segment:
    """Frames with ``start <= pts < stop`` (``stop`` None: to the end)."""

    index: int
    start: int
    stop: int | None


def plan_segments(keyframes: Sequence[int], time_base: Fraction, seconds: float) -> tuple[Segment, ...]:
    """Segments starting at ``keyframes`` (sorted pts), each at least ``seconds`` long.

    The first segment takes everything before the second cut, frames before the first
    keyframe included. ``seconds <= 0``: one segment.
    """
    if not keyframes:
        raise ConfigError("expected at least one keyframe, got none")
    if list(keyframes) != sorted(set(keyframes)):
        raise ConfigError("expected sorted, distinct keyframe timestamps")
    if time_base <= 0:
        raise ConfigError(f"expected a positive time base, got {time_base}")
    cuts = [keyframes[0]]
    if seconds > 0:
        step = Fraction(seconds) / time_base  # segment length in time-base ticks
        for pts in keyframes[1:]:
            if pts - cuts[-1] >= step:
                cuts.append(pts)
    starts: list[int | None] = [None, *cuts[1:]]  # the first segment starts at the beginning
    stops: list[int | None] = [*cuts[1:], None]
    return tuple(
        Segment(index, start if start is not None else _MIN_PTS, stop)
        for index, (start, stop) in enumerate(zip(starts, stops, strict=True))
    )


_MIN_PTS = -(1 << 62)


def cut_points(segments: Sequence[Segment]) -> list[int]:
    """The start of every segment but the first, for :func:`segment_of`."""
    return [segment.start for segment in segments[1:]]


def segment_of(cuts: Sequence[int], pts: int) -> int:
    """The index of the segment holding a frame with timestamp ``pts`` (``cuts``: from
    :func:`cut_points`)."""
    return bisect.bisect_right(cuts, pts)
