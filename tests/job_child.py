"""A batch job in a process of its own, for tests that kill, pause or race real processes.

    python tests/job_child.py OUTPUT INPUT... [--format FMT]

Runs :func:`vdsr_deploy.job.run_job` like ``vdsr upscale`` does (signal handling, exit
codes 0 / 1 / 130 / 143, ``error: ...`` on stderr) with a numpy stand-in for the network,
so no torch import: a process starts in a fraction of a second. Fault injection comes from
``$VDSR_FAULT`` (:mod:`vdsr_deploy.faults`). Prints the summary as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import VdsrError
from vdsr_deploy.job import JobConfig, run_job, stop_on_signals
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo

TILING = TileConfig(tile=40, halo=3)


class BoxRunner(Runner):
    """Y + 0.1 * (3x3 mean - Y), zero-padded: a receptive-field radius of 1, like a tiny VDSR."""

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("box", "cpu", "fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        padded = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)))
        height, width = batch.shape[2:]
        total = sum(
            padded[:, :, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)
        )
        result: NDArray[np.float32] = (batch + 0.1 * (total / 9.0 - batch)).astype(np.float32)
        return result


def main(argv: list[str]) -> int:
    fmt = None
    if "--format" in argv:
        position = argv.index("--format")
        fmt = argv[position + 1]
        del argv[position : position + 2]
    output, *inputs = argv
    with stop_on_signals() as stop:
        try:
            config = JobConfig(
                inputs=tuple(inputs),
                output=Path(output),
                fmt=fmt,
                pipeline=PipelineConfig(scale=2.0, tiling=TILING, batch=2),
                model="box",
            )
            with BoxRunner() as runner:
                summary = run_job(config, runner, stop=stop.event)
        except VdsrError as error:
            sys.stderr.write(f"error: {error}\n")
            return 1
    sys.stdout.write(json.dumps(summary.to_dict()) + "\n")
    if summary.interrupted:
        return stop.exit_code
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
