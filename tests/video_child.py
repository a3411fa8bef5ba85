"""A video job in a process of its own, for tests that kill or signal it.

    python tests/video_child.py SOURCE TARGET [SEGMENT_SECONDS]

Runs :func:`vdsr_deploy.job.video.run_video_job` like ``vdsr upscale`` does (signals, exit
codes 0 / 1 / 130 / 143, ``error: ...`` on stderr) with the numpy stand-in network of
``job_child.py`` (no torch import) and FFV1 (lossless, so reruns give the same bytes).
Fault injection comes from ``$VDSR_FAULT`` (:mod:`vdsr_deploy.faults`). Prints the summary
as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from job_child import TILING, BoxRunner

from vdsr_deploy.errors import VdsrError
from vdsr_deploy.job import stop_on_signals
from vdsr_deploy.job.video import VideoJobConfig, run_video_job
from vdsr_deploy.planes.pipeline import PipelineConfig


def main(argv: list[str]) -> int:
    source, target, *rest = argv
    with stop_on_signals() as stop:
        try:
            config = VideoJobConfig(
                source=Path(source),
                target=Path(target),
                pipeline=PipelineConfig(scale=2.0, tiling=TILING, batch=2),
                codec="ffv1",
                segment_seconds=float(rest[0]) if rest else 0.1,
                model="box",
            )
            with BoxRunner() as runner:
                summary = run_video_job(config, runner, stop=stop.event)
        except VdsrError as error:
            sys.stderr.write(f"error: {error}\n")
            return 1
    result = {"upscaled": summary.upscaled, "reused": summary.reused, "segments": summary.segments}
    sys.stdout.write(json.dumps(result | {"interrupted": summary.interrupted}) + "\n")
    return stop.exit_code if summary.interrupted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
