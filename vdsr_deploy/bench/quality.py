"""The task quality of runners side by side, for pricing a fast path (e.g. INT8, bf16) in
PSNR: :func:`score_runners` scores active runners on a folder of HR images with the paper's
protocol (:mod:`vdsr_deploy.evaluation.run`), :func:`quality_costs` does it for benchmark settings
over several folders, :func:`worst_costs` gives each one's largest loss.

Not to be confused with :func:`vdsr_deploy.parity.task_psnr`, the PSNR of one output plane
against its HR image: here whole data sets are run through each runner and averaged."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.bench.config import CPU_BASELINE, BenchConfig, BenchSetting
from vdsr_deploy.bench.harness import open_bench_runner
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.planes.pipeline import upscale_plane
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner


def score_runners(
    folder: Path,
    scales: Sequence[int],
    runners: dict[str, Runner],
    *,
    tiling: TileConfig | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Mean PSNR/SSIM (paper protocol, :mod:`vdsr_deploy.evaluation.run`) of each runner (already
    active) on the HR images of ``folder``, per scale, and each runner's PSNR difference to
    the first one (``psnr_delta_vs_<first>``)."""
    from vdsr_deploy.evaluation.run import prepare_items, score
    from vdsr_deploy.imageio.folders import list_images

    if not runners:
        raise ConfigError("expected at least one runner to score")
    chosen = tiling or TileConfig(tile=0)
    items = prepare_items(list_images(folder), scales)
    table: dict[str, Any] = {}
    for name, runner in runners.items():

        def run(y: NDArray[np.float32], runner: Runner = runner) -> NDArray[np.float32]:
            return upscale_plane(y, runner, chosen, batch=batch)

        report = score(items, run, dataset=folder.name, backend=runner.info.label)
        table[name] = {
            f"x{s.scale}": {"psnr": s.psnr, "ssim": s.ssim, "bicubic_psnr": s.bicubic_psnr}
            for s in report.summaries
        }
    first = next(iter(table))
    for per_scale in table.values():
        for key, values in per_scale.items():
            values["psnr_delta_vs_" + first] = values["psnr"] - table[first][key]["psnr"]
    return {
        "dataset": folder.name,
        "images": len(items) // max(1, len(scales)),
        "scales": list(scales),
        "tile": chosen.tile,
        "runners": table,
    }


def quality_costs(
    folders: Sequence[Path],
    scales: Sequence[int],
    settings: Sequence[BenchSetting],
    config: BenchConfig,
    baseline: str = CPU_BASELINE,
    *,
    opener: Callable[[BenchSetting, BenchConfig], Runner] = open_bench_runner,
) -> dict[str, Any]:
    """Task PSNR of every setting on every folder of HR images (whole images), and each
    one's difference to ``baseline`` per scale: ``{folder: score_runners table}``."""
    by_name = {s.name: s for s in settings}
    order = [baseline, *[name for name in by_name if name != baseline]]
    tables: dict[str, Any] = {}
    with ExitStack() as stack:
        runners = {name: stack.enter_context(opener(by_name[name], config)) for name in order}
        for folder in folders:
            tables[Path(folder).name] = score_runners(Path(folder), scales, runners)
    return tables


def worst_costs(tables: dict[str, Any], baseline: str = CPU_BASELINE) -> dict[str, float]:
    """The largest PSNR loss (dB) of each setting over every set and scale."""
    worst: dict[str, float] = {}
    for table in tables.values():
        for name, per_scale in table["runners"].items():
            for values in per_scale.values():
                loss = -float(values[f"psnr_delta_vs_{baseline}"])
                previous = worst.get(name, 0.0)
                # NaN stays NaN: Python's max(0.0, nan) is 0.0 and would report no loss
                worst[name] = math.nan if math.isnan(loss) or math.isnan(previous) else max(previous, loss)
    return worst
