"""The benchmark's workload: the batches the pipeline forms for the test image."""

from __future__ import annotations

import numpy as np

from vdsr_deploy.bench import bench_image, make_workload
from vdsr_deploy.planes.tiling import TileConfig, plan_tiles


def test_workload_matches_the_pipeline_batching() -> None:
    lr = bench_image((70, 61), 2.0)
    assert lr.shape == (35, 30, 3) and lr.dtype == np.float32
    workload = make_workload(lr, 2.0, TileConfig(tile=32, halo=4), batch=3)
    planned = plan_tiles(70, 60, TileConfig(tile=32, halo=4))
    assert workload.output_shape == (70, 60)
    assert workload.tiles == len(planned)
    assert workload.network_pixels == sum(t.shape[0] * t.shape[1] for t in planned)
    assert all(b.shape[0] <= 3 and b.shape[1] == 1 for b in workload.batches)


def test_ensemble_workload_is_the_eight_transformed_planes() -> None:
    lr = bench_image((64, 64), 2.0)  # square: every rotation tiles alike
    tiling = TileConfig(tile=24, halo=4)
    single = make_workload(lr, 2.0, tiling, batch=4)
    ensemble = make_workload(lr, 2.0, tiling, batch=4, ensemble=True)
    assert ensemble.output_shape == single.output_shape == (64, 64)
    assert ensemble.tiles == 8 * single.tiles
    assert ensemble.network_pixels == 8 * single.network_pixels
