"""``--precision auto`` on the CPU measures instead of guessing: how fast each eligible path
runs on this machine, timed once and cached.

:func:`speed_table` times each path on one representative input (:data:`SPEED_TILE` square,
batch 1) for about :data:`SECONDS_PER_PATH` each after a warm-up call, in two interleaved
rounds (the best round counts: a neighbour's burst of load hits one round, not the figure),
and caches the table in the cache folder as JSON, keyed by what the speeds depend on
(:func:`speed_key`: CPU model and flags, the cores this process may use, the threads asked
for, every runtime's version, the network and the INT8 recipe). A later run with the same
key reads it in milliseconds; a damaged record, or one with another key, is measured again.
``vdsr cache --clear`` removes it (its name starts with ``vdsr-``).

The decision itself (fastest eligible path, with its ratios) is
:func:`vdsr_deploy.precision.decision.choose_cpu_path`'s; this module only measures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vdsr_deploy.environment import cpu_flags, cpu_model
from vdsr_deploy.errors import VdsrError
from vdsr_deploy.fileops import atomic_write_bytes
from vdsr_deploy.precision.decision import CpuPath, SpeedTable
from vdsr_deploy.runner import Runner

LOG = logging.getLogger(__name__)
SPEED_TILE = 256
"""Side (pixels) of the input each path is timed on: the size of a tile or a small photo's
plane; big enough that per-call overhead does not decide, small enough to time in 1 s."""
SECONDS_PER_PATH = 1.0
ROUNDS = 2
RECORD_VERSION = 1

OpenPath = Callable[[CpuPath], Runner]
"""Opens an inactive runner for a path (the artifacts it needs built or found first)."""


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def speed_key(
    *, network: str, threads: int, int8_recipe: Mapping[str, Any], versions: Mapping[str, str | None]
) -> dict[str, Any]:
    """Everything the measured speeds depend on; equal keys reuse the table.

    ``network``: the weights digest (depth and width decide the speed; the digest names
    them); ``threads``: ``--threads`` (0: the runtimes' defaults); ``int8_recipe``: which
    convolutions stay float changes the INT8 graph's speed; ``versions``: every runtime's.
    JSON types only (tuples become lists), so a key read back from its record compares equal."""
    key = {
        "record": RECORD_VERSION,
        "cpu": cpu_model(),
        "flags": sorted(cpu_flags()),
        "cores": usable_cores(),
        "machine": os.uname().machine,
        "threads": threads,
        "network": network,
        "int8_recipe": dict(int8_recipe),
        "versions": dict(versions),
        "tile": SPEED_TILE,
    }
    loaded: dict[str, Any] = json.loads(json.dumps(key))
    return loaded


def record_path(directory: Path, key: Mapping[str, Any]) -> Path:
    """Where the table for ``key`` is kept in the cache folder ``directory``."""
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:12]
    return Path(directory) / f"vdsr-cpu-speed-{digest}.json"


def read_record(record: Path, key: Mapping[str, Any]) -> tuple[dict[str, float], str] | None:
    """The speeds (Mpx/s by path key) and the date of ``record`` when it holds ``key``; None
    when it is missing, damaged or for another key (it is then measured again)."""
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(stored, dict) or stored.get("key") != dict(key):
            return None
        speeds = {str(name): float(value) for name, value in stored["mpx_per_s"].items()}
        return speeds, str(stored.get("measured_at", "an earlier run"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        LOG.warning("%s: unreadable speed record (%s); measuring again", record, error)
        return None


def time_paths(
    paths: Sequence[CpuPath],
    open_path: OpenPath,
    *,
    seconds: float | None = None,
    rounds: int = ROUNDS,
    side: int = SPEED_TILE,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[str, float], dict[str, str]]:
    """Output megapixels per second of each path on one ``side`` x ``side`` input, and why
    each path that could not be timed failed (its runner would not open or run).

    Each runner is opened and warmed up (one call, not counted) first; then ``rounds``
    rounds give each path ``seconds / rounds`` of calls in turn (at least one call), and the
    best round counts (``seconds`` None: :data:`SECONDS_PER_PATH`)."""
    seconds = seconds or SECONDS_PER_PATH
    plane = np.random.default_rng(0).random((1, 1, side, side), dtype=np.float32)
    runners: dict[str, Runner] = {}
    failed: dict[str, str] = {}
    best: dict[str, float] = {}
    try:
        for path in paths:
            try:
                runner = open_path(path)
                runner.__enter__()
                runners[path.key] = runner
                runner.infer(plane)
            except Exception as error:  # any runtime's failure only leaves this path out
                failed[path.key] = str(error) or type(error).__name__
                runners.pop(path.key, None)
        for _ in range(rounds):
            for key, runner in runners.items():
                calls, started = 0, clock()
                while True:
                    runner.infer(plane)
                    calls += 1
                    elapsed = clock() - started
                    if elapsed >= seconds / rounds:
                        break
                rate = calls * side * side / max(elapsed, 1e-9) / 1e6
                best[key] = max(best.get(key, 0.0), rate)
    finally:
        for runner in runners.values():
            runner.__exit__(None, None, None)
    return best, failed


def speed_table(
    paths: Sequence[CpuPath],
    open_path: OpenPath,
    directory: Path,
    key: Mapping[str, Any],
    *,
    seconds: float | None = None,
) -> SpeedTable:
    """The measured speed of ``paths`` on this machine: from the record for ``key`` in
    ``directory`` when it has them all, else timed now (:func:`time_paths`) and recorded
    (atomically, merged with the paths the record already had)."""
    record = record_path(directory, key)
    stored = read_record(record, key)
    wanted = [p.key for p in paths]
    if stored is not None and all(name in stored[0] for name in wanted):
        speeds, when = stored
        return SpeedTable(
            {name: speeds[name] for name in wanted},
            f"measured on this machine on {when}, read from {record} (vdsr cache --clear measures again)",
        )
    started = time.perf_counter()
    measured, failed = time_paths(paths, open_path, seconds=seconds or SECONDS_PER_PATH)
    elapsed = time.perf_counter() - started
    if not measured:
        raise VdsrError(f"no path could be timed: {'; '.join(f'{k}: {v}' for k, v in failed.items())}")
    merged = {**(stored[0] if stored else {}), **measured}
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    document = {"key": dict(key), "mpx_per_s": merged, "measured_at": now, "seconds": round(elapsed, 2)}
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(record, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii"))
        kept = f"cached in {record}"
    except OSError as error:
        kept = f"not cached ({record}: {error.strerror or error})"
    note = (
        f"measured now: {len(measured)} paths timed in {elapsed:.1f} s on a {SPEED_TILE}x{SPEED_TILE} input "
        f"(once per machine and versions), {kept}"
    )
    if failed:
        note += "; could not time " + "; ".join(f"{name} ({why})" for name, why in failed.items())
    return SpeedTable({name: measured.get(name, math.nan) for name in wanted}, note)
