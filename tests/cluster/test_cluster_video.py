"""``--cluster`` for a video: keyframe segments as Ray work items give the same file as a
local run (FFV1, tiny seeded weights on the PyTorch CPU runner, one thread everywhere so
the arithmetic is the same in every process), and a rerun reuses what the cluster finished."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from video_clips import make_clip

from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.job.video import VideoJobConfig, run_video_job
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime.prepare import open_runner

ray = pytest.importorskip("ray")
pytest.importorskip("av")

from vdsr_deploy.cluster import ClusterConfig, OpenRunner, local_runtime_env  # noqa: E402 - after the skip
from vdsr_deploy.cluster.video import run_cluster_video_job  # noqa: E402

TILING = TileConfig(tile=24, halo=6)
PIPELINE = PipelineConfig(scale=2.0, tiling=TILING, batch=3)


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError("test ran past 180 s (a Ray wait that never ends?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(180)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    yield
    ray.shutdown()


def test_cluster_local_gives_the_same_file_as_a_local_run(
    tmp_path: Path, tiny_weights: Path, local_ray: None
) -> None:
    clip = make_clip(tmp_path / "in.mkv", frames=16)
    spec = RunnerSpec(backend="torch", device="cpu", weights=tiny_weights, threads=1)

    def job(target: Path) -> VideoJobConfig:
        return VideoJobConfig(clip.path, target, pipeline=PIPELINE, codec="ffv1", segment_seconds=0.15, model="tiny")

    with open_runner(spec, tiling=TILING, batch=3) as runner:
        local = run_video_job(job(tmp_path / "local.mkv"), runner)
    cluster = ClusterConfig(address="auto", retries=1)
    events: list[dict[str, Any]] = []
    summary = run_cluster_video_job(
        job(tmp_path / "cluster.mkv"), cluster, OpenRunner(spec, TILING, 3), events.append, device="cpu"
    )
    assert summary.segments == local.segments >= 3 and summary.upscaled == 16 and summary.written == 16
    assert (tmp_path / "cluster.mkv").read_bytes() == (tmp_path / "local.mkv").read_bytes()
    assert sum(e["event"] == "segment" for e in events) == summary.segments
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
