"""Benchmarks: throughput and latency of runtimes, bare and through the whole pipeline.

For every :class:`BenchSetting` (backend, precision, tile, batch, ...), :func:`benchmark`
times two things on the same in-memory image:

- ``runtime``: the bare runner on the image's tiles, pre-cut and pre-stacked into the very
  batches the pipeline forms (:func:`make_workload`; only the runner is timed:
  ``runner.infer`` on host arrays, or for a runner on CUDA ``runner.infer_tensor`` on
  batches already on the device);
- ``pipeline``: :func:`~vdsr_deploy.planes.pipeline.upscale_pixels` on the low-resolution RGB
  image (colour conversion, MATLAB bicubic, tiling, batching, stitching, back to RGB; for a
  runner on CUDA the device path, uint8 samples in and out);

and reports latency percentiles per image, megapixels/s and images/s of the output size,
and their ratio (the pipeline overhead). Warm-up runs come first; with ``interleave`` the
settings take turns repeat by repeat, so a machine shared with other work slows them alike
and ratios measured in one run stay meaningful. On CUDA devices the runtime path is also
timed with CUDA events. The result is a plain dict (JSON-ready) with machine, versions,
threads and settings; :func:`render_markdown` and :func:`write_plot` render it.

Modules: :mod:`~vdsr_deploy.bench.config` (what to time), :mod:`~vdsr_deploy.bench.workload`
(the image and its batches), :mod:`~vdsr_deploy.bench.timing` (timers and statistics),
:mod:`~vdsr_deploy.bench.device` (CUDA specifics: TF32, peak shares),
:mod:`~vdsr_deploy.bench.harness` (running the cases), :mod:`~vdsr_deploy.bench.record`
(the result dict), :mod:`~vdsr_deploy.bench.report` (tables, Markdown, plot) and
:mod:`~vdsr_deploy.bench.quality` (task PSNR of fast paths side by side).
"""

from vdsr_deploy.bench.case import EventSink
from vdsr_deploy.bench.config import (
    BACKENDS,
    CPU_BASELINE,
    CPU_SIZE,
    GPU_FRAMES,
    GPU_SIZE,
    SUPPORTED,
    BenchConfig,
    BenchSetting,
    cpu_path_settings,
    large_work_defaults,
    sweep,
)
from vdsr_deploy.bench.device import TENSOR_PEAKS, device_peak_tflops
from vdsr_deploy.bench.harness import bench_runner_spec, benchmark, open_bench_runner
from vdsr_deploy.bench.quality import quality_costs, score_runners, worst_costs
from vdsr_deploy.bench.record import SCHEMA
from vdsr_deploy.bench.report import (
    BENCH_COLUMNS,
    OVERHEAD_NOTE,
    TERMINAL_COLUMNS,
    bench_rows,
    cost_markdown,
    fmt_overhead,
    fmt_ratio,
    render_markdown,
    terminal_rows,
    write_plot,
)
from vdsr_deploy.bench.timing import latency_stats, summarize
from vdsr_deploy.bench.workload import Workload, bench_image, make_workload

__all__ = [
    "BACKENDS",
    "BENCH_COLUMNS",
    "CPU_BASELINE",
    "CPU_SIZE",
    "GPU_FRAMES",
    "GPU_SIZE",
    "OVERHEAD_NOTE",
    "SCHEMA",
    "SUPPORTED",
    "TENSOR_PEAKS",
    "TERMINAL_COLUMNS",
    "BenchConfig",
    "BenchSetting",
    "EventSink",
    "Workload",
    "bench_image",
    "bench_rows",
    "bench_runner_spec",
    "benchmark",
    "cost_markdown",
    "cpu_path_settings",
    "device_peak_tflops",
    "fmt_overhead",
    "fmt_ratio",
    "large_work_defaults",
    "latency_stats",
    "make_workload",
    "open_bench_runner",
    "quality_costs",
    "render_markdown",
    "score_runners",
    "summarize",
    "sweep",
    "terminal_rows",
    "worst_costs",
    "write_plot",
]
