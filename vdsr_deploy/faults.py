"""Fault injection for crash tests: stop this process at a named step of a batch job.

``VDSR_FAULT=<step>:<n>:kill`` sends SIGKILL to this process the ``n``-th time it reaches
``<step>``; ``VDSR_FAULT=<step>:<n>:pause:<path>`` creates ``<path>.reached`` there and waits
until ``<path>`` exists (a test holds a job at a known point, e.g. to start a second one).
Unset (always, outside tests) a fault point costs one environment lookup.

Steps, in the order one output passes them (see :mod:`vdsr_deploy.imageio`,
:mod:`vdsr_deploy.job.manifest`):

- ``write``: a band's rows were appended to the temporary output file;
- ``finish``: the data is complete, not yet fsynced;
- ``manifest``: half of the output's manifest line is written (a torn line if killed here);
- ``rename``: the record is fsynced, the temporary file not yet renamed onto the target;
- ``renamed``: the output is in place.

A video job (:mod:`vdsr_deploy.job.video`) has its own: ``video-segment`` (a segment file is
complete, not yet recorded), ``video-recorded`` (recorded, not yet renamed), ``video-join``
(the joined output is complete, not yet renamed into place).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ENV = "VDSR_FAULT"
STEPS = ("write", "finish", "manifest", "rename", "renamed", "video-segment", "video-recorded", "video-join")

_counts: dict[str, int] = {}
_lock = threading.Lock()


def fault_point(step: str) -> None:
    """Kill or pause here when ``$VDSR_FAULT`` names this step and occurrence."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != step:
        return
    count_text, _, action = rest.partition(":")
    with _lock:
        _counts[step] = _counts.get(step, 0) + 1
        reached = _counts[step] == int(count_text or "1")
    if not reached:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("pause:"):
        release = Path(action[len("pause:") :])
        Path(f"{release}.reached").touch()
        while not release.exists():
            time.sleep(0.01)
