"""Timing harness: throughput and latency of runtimes, bare and through the whole pipeline.

For every :class:`BenchSetting` (backend, precision, tile, batch, ...), :func:`benchmark`
times two things on the same in-memory image:

- ``runtime``: the bare runner on the image's tiles, pre-cut and pre-stacked into the same
  batches the pipeline would form (only the runner is timed: ``runner.infer`` on host arrays,
  or for a runner on CUDA ``runner.infer_tensor`` on batches already on the device);
- ``pipeline``: :func:`~vdsr_deploy.pipeline.upscale_pixels` on the low-resolution RGB
  image (colour conversion, MATLAB bicubic, tiling, batching, stitching, back to RGB; for a
  runner on CUDA the device path, uint8 samples in and out);

and reports latency percentiles per image, megapixels/s and images/s of the output size,
and their ratio (the pipeline overhead). Warm-up runs come first; with ``interleave`` the
settings take turns repeat by repeat, so a machine shared with other work slows them alike
and ratios measured in one run stay meaningful. On CUDA devices the runtime path is also
timed with CUDA events. The result is a plain dict (JSON-ready) with machine, versions,
threads and settings; :func:`render_markdown` and :func:`write_plot` render it.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import colour
from vdsr_deploy.backends.base import Runner
from vdsr_deploy.environment import load_average, machine_info, portable_path, thread_info, versions
from vdsr_deploy.errors import BackendUnavailableError, ConfigError, VdsrError
from vdsr_deploy.precision import BACKEND_PRECISIONS, PRECISIONS
from vdsr_deploy.tiling import DEFAULT_HALO, TileConfig, extract, plan_tiles

if TYPE_CHECKING:
    from vdsr_deploy.backends.factory import RunnerSpec

SCHEMA = "vdsr-bench/1"
PATH_DETAILS = ("onnx", "engine", "weights", "path", "loaded_from")  # runner details recorded as portable paths
SUPPORTED = BACKEND_PRECISIONS
BACKENDS = tuple(SUPPORTED)
EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BenchSetting:
    """One configuration to time. ``channels_last``/``allow_tf32`` apply to torch;
    ``onnx`` makes onnxruntime/tensorrt use that file (e.g. an INT8 QDQ model, which is
    then ``precision`` int8; without it, int8 uses the cached INT8 model, built on first
    use); ``label`` names it in tables (default: derived)."""

    backend: str = "torch"
    precision: str = "fp32"
    device: str = "auto"
    provider: str = "cpu"
    tile: int = 256
    batch: int = 1
    channels_last: bool = True
    allow_tf32: bool = False
    onnx: Path | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.precision not in SUPPORTED[self.backend]:
            raise ConfigError(
                f"{self.backend} has no {self.precision} path "
                f"(it has {', '.join(SUPPORTED[self.backend])})"
            )
        if self.batch < 1:
            raise ConfigError(f"batch: expected >= 1, got {self.batch}")
        if self.tile < 0:
            raise ConfigError(
                f"tile: expected 0 (whole image) or a side in pixels, got {self.tile}"
            )

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        layout = "" if self.backend != "torch" or self.channels_last else "-nchw"
        provider = (
            f"-{self.provider}" if self.backend == "onnxruntime" and self.provider != "cpu" else ""
        )
        tile = self.tile or "full"
        return f"{self.backend}{provider}-{self.precision}{layout}-t{tile}-b{self.batch}"


def sweep(
    backends: Sequence[str],
    precisions: Sequence[str],
    tiles: Sequence[int],
    batches: Sequence[int],
    *,
    device: str = "auto",
    provider: str = "cpu",
    onnx: Path | None = None,
    onnx_precision: str | None = None,
) -> tuple[list[BenchSetting], list[str]]:
    """Every backend x precision x tile x batch that exists, and a note per combination left
    out (e.g. onnxruntime has no bf16 path). With ``onnx`` the onnxruntime settings use that
    file at its own precision (``onnx_precision``, e.g. int8 for a quantized model)."""
    settings: list[BenchSetting] = []
    notes: list[str] = []
    for backend in backends:
        if backend not in SUPPORTED:
            raise ConfigError(f"backend: expected one of {tuple(SUPPORTED)}, got {backend!r}")
        wanted = (
            [onnx_precision or "fp32"] if backend == "onnxruntime" and onnx else list(precisions)
        )
        for precision in dict.fromkeys(wanted):
            if precision not in SUPPORTED[backend]:
                notes.append(f"{backend} has no {precision} path: left out")
                continue
            for tile in tiles:
                for batch in batches:
                    settings.append(
                        BenchSetting(
                            backend=backend,
                            precision=precision,
                            device=device,
                            provider=provider,
                            tile=tile,
                            batch=batch,
                            onnx=onnx if backend == "onnxruntime" else None,
                        )
                    )
    if not settings:
        raise ConfigError("no backend/precision combination left to benchmark: " + "; ".join(notes))
    return settings, notes


CPU_SIZE = (256, 256)
GPU_SIZE = (2160, 3840)  # a 3840x2160 output, from 1920x1080 at x2
GPU_FRAMES = 8


def large_work_defaults(settings: Sequence[BenchSetting]) -> tuple[tuple[int, int], int]:
    """Default output size and job frames: large work (4K output, 8 frames) when any setting
    runs on a GPU, else the CPU's small image and no job."""
    on_gpu = any(
        s.backend == "tensorrt"
        or (s.backend == "onnxruntime" and s.provider != "cpu")
        or s.device.startswith("cuda")
        or (s.device == "auto" and s.backend == "torch" and _cuda_available())
        for s in settings
    )
    return (GPU_SIZE, GPU_FRAMES) if on_gpu else (CPU_SIZE, 0)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`benchmark` runs. ``size``: output image (height, width); ``scale``: its
    input is ``size / scale``; ``repeats`` timed runs per path after ``warmup`` runs, cut
    short after ``max_seconds`` per setting (at least ``min_repeats``); ``baseline``: the
    setting name throughput ratios are reported against; ``frames``: also time a batch job
    (:func:`~vdsr_deploy.job.run_job`: decode, upscale, PNG encode, atomic write) over
    that many PNG frames of the input size, end to end; ``ensemble``: time the x8
    self-ensemble (:mod:`vdsr_deploy.ensemble`: the tiles of all eight transformed planes,
    8x the compute, on the host path; Mpx/s still counts output pixels)."""

    settings: tuple[BenchSetting, ...]
    weights: Path | None = None
    size: tuple[int, int] = (256, 256)
    scale: float = 2.0
    halo: int = DEFAULT_HALO
    warmup: int = 1
    repeats: int = 10
    min_repeats: int = 3
    max_seconds: float = 120.0
    threads: int = 0
    pipeline: bool = True
    interleave: bool = True
    baseline: str | None = None
    engines_dir: Path | None = None
    note: str = ""
    frames: int = 0
    ensemble: bool = False

    def __post_init__(self) -> None:
        if self.frames < 0:
            raise ConfigError(f"frames: expected >= 0, got {self.frames}")
        if not self.settings:
            raise ConfigError("expected at least one setting to benchmark")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ConfigError(f"settings: names must be unique, got {names}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"size: expected (height, width) >= 1, got {self.size}")
        if not (self.scale > 1.0 and math.isfinite(self.scale)):
            raise ConfigError(f"scale: expected a factor > 1, got {self.scale}")
        if self.warmup < 0 or self.repeats < 1 or not 1 <= self.min_repeats <= self.repeats:
            raise ConfigError(
                f"expected warmup >= 0 and 1 <= min_repeats <= repeats, got warmup {self.warmup}, "
                f"min_repeats {self.min_repeats}, repeats {self.repeats}"
            )
        if self.max_seconds <= 0:
            raise ConfigError(f"max_seconds: expected > 0, got {self.max_seconds}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")
        for setting in self.settings:
            if setting.tile:
                TileConfig(tile=setting.tile, halo=self.halo)  # tile > 2 * halo
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(f"baseline: expected one of {names}, got {self.baseline!r}")


# ----------------------------------------------------------------------------------------
# The workload


@dataclass(frozen=True)
class Workload:
    """One in-memory image and its tiles, cut and stacked the way the pipeline batches them."""

    lr_pixels: NDArray[np.float32] = field(repr=False)
    output_shape: tuple[int, int]
    tiling: TileConfig
    batch: int
    batches: tuple[NDArray[np.float32], ...] = field(repr=False)

    @property
    def tiles(self) -> int:
        return sum(int(b.shape[0]) for b in self.batches)

    @property
    def network_pixels(self) -> int:
        """Pixels the network computes per image, halos included."""
        return sum(int(b.shape[0] * b.shape[2] * b.shape[3]) for b in self.batches)

    @property
    def output_pixels(self) -> int:
        return self.output_shape[0] * self.output_shape[1]


def bench_image(size: tuple[int, int], scale: float, seed: int = 0) -> NDArray[np.float32]:
    """A low-resolution RGB test image whose ``scale`` upscale has ``size``: the bundled
    sample picture tiled over the area, with a little noise so no two tiles are equal."""
    from vdsr_deploy.parity import sample_image

    height = max(1, math.floor(size[0] / scale + 1e-9))
    width = max(1, math.floor(size[1] / scale + 1e-9))
    sample = sample_image().pixels
    reps = (math.ceil(height / sample.shape[0]), math.ceil(width / sample.shape[1]), 1)
    tiled = np.tile(sample, reps)[:height, :width]
    noise = np.random.default_rng(seed).normal(0.0, 0.01, tiled.shape)
    result: NDArray[np.float32] = np.clip(tiled + noise, 0.0, 1.0).astype(np.float32)
    return result


def make_workload(
    lr_pixels: NDArray[np.float32],
    scale: float,
    tiling: TileConfig,
    batch: int,
    *,
    ensemble: bool = False,
) -> Workload:
    """Cut the prepared Y plane of ``lr_pixels`` (with ``ensemble``: each of its eight
    rotations/mirror images) into tiles and stack them into batches of same-shape tiles (as
    :func:`~vdsr_deploy.pipeline.upscale_planes` does)."""
    from vdsr_deploy.ensemble import TRANSFORMS, dihedral

    prepared = colour.prepare(lr_pixels, scale)
    planes = [dihedral(prepared.y, i) for i in range(TRANSFORMS)] if ensemble else [prepared.y]
    groups: dict[tuple[int, int], list[NDArray[np.float32]]] = {}
    for plane in planes:
        for tile in plan_tiles(plane.shape[0], plane.shape[1], tiling):
            groups.setdefault(tile.shape, []).append(extract(plane, tile))
    batches: list[NDArray[np.float32]] = []
    for shape, windows in groups.items():
        for start in range(0, len(windows), batch):
            chunk = windows[start : start + batch]
            stacked = np.empty((len(chunk), 1, *shape), dtype=np.float32)
            for slot, window in enumerate(chunk):
                stacked[slot, 0] = window
            batches.append(stacked)
    return Workload(lr_pixels, prepared.shape, tiling, batch, tuple(batches))


# ----------------------------------------------------------------------------------------
# Timing


@dataclass
class _Timings:
    seconds: list[float] = field(default_factory=list)
    cuda_ms: list[float] = field(default_factory=list)


class _Timer:
    """Wall clock always; CUDA events too when the runner runs on a CUDA device."""

    def __init__(self, cuda: bool) -> None:
        self._cuda = cuda

    def time(self, work: Callable[[], object], into: _Timings) -> None:
        if self._cuda:
            import torch

            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            stop = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            torch.cuda.synchronize()
            began = time.perf_counter()
            start.record()
            work()
            stop.record()
            torch.cuda.synchronize()
            into.seconds.append(time.perf_counter() - began)
            into.cuda_ms.append(float(start.elapsed_time(stop)))
            return
        began = time.perf_counter()
        work()
        into.seconds.append(time.perf_counter() - began)


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, min and p50/p90/p99 (numpy linear interpolation) in milliseconds."""
    if not seconds:
        raise ConfigError("expected at least one timing")
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
    }


def summarize(timings: _Timings, workload: Workload, flops: int) -> dict[str, Any]:
    """Latency percentiles and throughput of one path (per image of the workload)."""
    stats = latency_stats(timings.seconds)
    mean_s = stats["mean"] / 1000.0
    return {
        "repeats": len(timings.seconds),
        "latency_ms": stats,
        "images_per_second": 1.0 / mean_s,
        "megapixels_per_second": workload.output_pixels / mean_s / 1e6,
        "network_gflops_per_second": workload.network_pixels * flops / mean_s / 1e9,
        "equivalent_gflops_per_second": workload.output_pixels * flops / mean_s / 1e9,
        "halo_overhead": workload.network_pixels / workload.output_pixels,
        "cuda_event_ms": latency_stats([t / 1000.0 for t in timings.cuda_ms])
        if timings.cuda_ms
        else None,
    }


@dataclass
class _Case:
    setting: BenchSetting
    runner: Runner | None = None
    workload: Workload | None = None
    timer: _Timer | None = None
    runtime: _Timings = field(default_factory=_Timings)
    pipeline: _Timings = field(default_factory=_Timings)
    job: _Timings = field(default_factory=_Timings)
    device: Any = None  # the DeviceUpscaler of a runner that computes on CUDA
    device_batches: list[Any] = field(default_factory=list)  # the workload on that device
    status: str = "ok"
    reason: str = ""
    spent: float = 0.0


def bench_runner_spec(setting: BenchSetting, config: BenchConfig) -> RunnerSpec:
    """The :class:`~vdsr_deploy.backends.factory.RunnerSpec` that ``setting`` times."""
    from vdsr_deploy.backends.factory import RunnerSpec

    return RunnerSpec(
        backend=setting.backend,
        device=setting.device,
        precision=setting.precision,
        provider=setting.provider,
        weights=config.weights,
        onnx=setting.onnx,
        engines_dir=config.engines_dir,
        threads=config.threads,
        channels_last=setting.channels_last,
        allow_tf32=setting.allow_tf32,
    )


def open_bench_runner(setting: BenchSetting, config: BenchConfig) -> Runner:
    """An inactive runner for ``setting``, from the runner factory
    (BackendUnavailableError, with the reason, when its runtime cannot run here)."""
    from vdsr_deploy.backends.factory import open_runner

    tiling = TileConfig(tile=setting.tile, halo=config.halo if setting.tile else 0)
    return open_runner(bench_runner_spec(setting, config), tiling=tiling, batch=setting.batch)


def _on_cuda(runner: Runner) -> bool:
    info = runner.info
    return info.device.startswith("cuda") or info.backend == "tensorrt" or info.device == "tensorrt"


@contextmanager
def _tf32_for(setting: BenchSetting, runner: Runner | None) -> Iterator[None]:
    """The setting's TF32 choice for PyTorch on CUDA while its case is timed (activating
    another runner changes the process-wide flags, so each case sets its own)."""
    if setting.backend != "torch" or runner is None or not _on_cuda(runner):
        yield
        return
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = setting.allow_tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _write_frames(stack: ExitStack, samples: NDArray[Any], count: int) -> Path:
    """``count`` PNG copies of the input image in a temporary folder (``<folder>/in``)."""
    import tempfile

    from vdsr_deploy.imageio import write_image

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vdsr-bench-frames-")))
    (folder / "in").mkdir()
    pixels = samples.astype(np.float32) / np.float32(255.0)
    for index in range(count):
        write_image(folder / "in" / f"frame{index:04d}.png", pixels, bit_depth=8)
    return folder


# Dense tensor-core peaks from NVIDIA's datasheets (TFLOP/s without sparsity) and the SM
# counts they are quoted for; a MIG slice or another SM count scales them.
TENSOR_PEAKS: dict[str, tuple[int, dict[str, float]]] = {
    "H200": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 SXM": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 80GB HBM3": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 NVL": (132, {"fp16": 835.0, "bf16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    "H100 PCIe": (114, {"fp16": 756.0, "bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    "A100": (108, {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
}


def device_peak_tflops(name: str, multiprocessors: int, precision: str) -> tuple[float, str] | None:
    """Dense peak of a known GPU for ``precision`` (fp16, bf16, tf32, fp32) and its source,
    scaled to ``multiprocessors``; None for a GPU not in :data:`TENSOR_PEAKS`."""
    for key, (sms, peaks) in TENSOR_PEAKS.items():
        if key in name and precision in peaks:
            scaled = peaks[precision] * multiprocessors / sms if multiprocessors else peaks[precision]
            return scaled, f"NVIDIA datasheet, {key}, dense {precision}, {multiprocessors}/{sms} SMs"
    return None


def _add_device_share(result: dict[str, Any], flops: int) -> None:
    """``device_peak``: the share of the GPU's dense limit that the output pixels' FLOPs reach
    (bare runner and end to end), for results on a CUDA device PyTorch knows."""
    runner = result.get("runner")
    if result.get("runtime") is None or runner is None or not str(runner["device"]).startswith("cuda"):
        return
    import torch

    device = torch.device(runner["device"])
    properties = torch.cuda.get_device_properties(device)
    precision = runner["precision"]
    if precision == "fp32" and result["setting"].get("allow_tf32"):
        precision = "tf32"
    peak = device_peak_tflops(properties.name, properties.multi_processor_count, precision)
    if peak is None:
        return
    tflops, source = peak
    shares = {"peak_tflops": tflops, "precision": precision, "source": source}
    for path in ("runtime", "pipeline", "job"):
        if result.get(path):
            shares[path] = result[path]["equivalent_gflops_per_second"] / 1e3 / tflops
    result["device_peak"] = shares


def benchmark(
    config: BenchConfig,
    *,
    image: NDArray[np.float32] | None = None,
    open_runner: Callable[[BenchSetting, BenchConfig], Runner] | None = None,
    on_event: EventSink | None = None,
) -> dict[str, Any]:
    """Time every setting of ``config`` (see the module docstring); returns the results dict.

    ``image``: the low-resolution RGB input (default :func:`bench_image` for ``config.size``);
    ``open_runner``: how to make a runner for a setting (default :func:`open_bench_runner`).
    A setting whose runtime is unavailable is recorded as ``skipped``, one that fails as
    ``error``; the others still run."""
    from vdsr_deploy.device_pipeline import DeviceUpscaler, use_device_path
    from vdsr_deploy.imageio import quantize
    from vdsr_deploy.model import flops_per_pixel
    from vdsr_deploy.pipeline import PipelineConfig, upscale_pixels
    from vdsr_deploy.weights import load_weights

    emit = on_event or (lambda event: None)
    opener = open_runner or open_bench_runner
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    lr = image if image is not None else bench_image(config.size, config.scale)
    lr_samples = quantize(lr, 8)
    _, weights_info = load_weights(config.weights)
    flops = flops_per_pixel(weights_info.depth, weights_info.channels)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = load_average()
    cases = [_Case(s) for s in config.settings]
    with ExitStack() as stack:
        frames = _write_frames(stack, lr_samples, config.frames) if config.frames else None
        for case in cases:
            setting = case.setting
            tiling = TileConfig(tile=setting.tile, halo=config.halo if setting.tile else 0)
            try:
                runner = opener(setting, config)
                stack.enter_context(runner)
            except BackendUnavailableError as error:
                case.status, case.reason = "skipped", str(error)
                emit({"event": "skipped", "setting": setting.name, "reason": str(error)})
                continue
            except VdsrError as error:
                case.status, case.reason = "error", f"{type(error).__name__}: {error}"
                emit({"event": "error", "setting": setting.name, "reason": case.reason})
                continue
            case.runner = runner
            case.workload = make_workload(
                lr, config.scale, tiling, setting.batch, ensemble=config.ensemble
            )
            case.timer = _Timer(_on_cuda(runner))
            if use_device_path(runner) and not config.ensemble:  # the ensemble: host path
                import torch

                case.device = DeviceUpscaler(
                    runner, PipelineConfig(scale=config.scale, tiling=tiling, batch=setting.batch)
                )
                case.device_batches = [
                    torch.from_numpy(b).to(runner.tensor_device) for b in case.workload.batches
                ]
        pipeline_configs = {
            case.setting.name: PipelineConfig(
                scale=config.scale,
                tiling=case.workload.tiling,
                batch=case.setting.batch,
                ensemble=config.ensemble,
            )
            for case in cases
            if case.workload is not None
        }

        def run_runtime(case: _Case) -> None:
            assert case.runner is not None and case.workload is not None
            if case.device_batches:  # device tensors in, device tensors out: no host copies
                for on_device in case.device_batches:
                    case.runner.infer_tensor(on_device)
                return
            for stacked in case.workload.batches:
                case.runner.infer(stacked)

        def run_pipeline(case: _Case) -> None:
            assert case.runner is not None
            if case.device is not None:  # uint8 in, uint8 out, everything on the device
                case.device.upscale(lr_samples)
            else:
                upscale_pixels(lr, case.runner, pipeline_configs[case.setting.name])

        def run_job_path(case: _Case) -> None:
            assert case.runner is not None and frames is not None
            from vdsr_deploy.job import JobConfig, run_job

            job = JobConfig(
                inputs=(str(frames / "in"),),
                output=frames / "out" / case.setting.name,
                pipeline=pipeline_configs[case.setting.name],
                overwrite=True,
            )
            summary = run_job(job, case.runner)
            if not summary.ok:
                raise VdsrError(f"the batch job failed: {summary.to_dict()['failed']}")

        def one_round(case: _Case, record: bool) -> None:
            assert case.timer is not None
            began = time.perf_counter()
            try:
                with _tf32_for(case.setting, case.runner):
                    if record:
                        case.timer.time(lambda: run_runtime(case), case.runtime)
                        if config.pipeline:
                            case.timer.time(lambda: run_pipeline(case), case.pipeline)
                        if frames is not None:
                            case.timer.time(lambda: run_job_path(case), case.job)
                    else:
                        run_runtime(case)
                        if config.pipeline:
                            run_pipeline(case)
                        if frames is not None:
                            run_job_path(case)
            except VdsrError as error:
                case.status, case.reason = "error", f"{type(error).__name__}: {error}"
                emit({"event": "error", "setting": case.setting.name, "reason": case.reason})
            if record:
                case.spent += time.perf_counter() - began

        active = [c for c in cases if c.status == "ok"]
        for case in active:
            emit({"event": "warmup", "setting": case.setting.name})
            for _ in range(config.warmup):
                if case.status == "ok":
                    one_round(case, record=False)

        def wants_more(case: _Case) -> bool:
            done = len(case.runtime.seconds)
            if case.status != "ok" or done >= config.repeats:
                return False
            return done < config.min_repeats or case.spent < config.max_seconds

        if config.interleave:
            while any(wants_more(c) for c in active):
                for case in active:
                    if wants_more(case):
                        one_round(case, record=True)
                        emit(
                            {
                                "event": "repeat",
                                "setting": case.setting.name,
                                "done": len(case.runtime.seconds),
                            }
                        )
        else:
            for case in active:
                while wants_more(case):
                    one_round(case, record=True)
                    emit(
                        {
                            "event": "repeat",
                            "setting": case.setting.name,
                            "done": len(case.runtime.seconds),
                        }
                    )
        infos = {c.setting.name: _runner_info(c.runner, c.setting.precision) for c in active}
    results = [_case_result(c, flops, infos.get(c.setting.name), config) for c in cases]
    for result in results:
        _add_device_share(result, flops)
    baseline = _add_ratios(results, config.baseline)
    config_record = _config_dict(config, lr, weights_info.to_dict(), flops)
    config_record["baseline"] = baseline
    return {
        "schema": SCHEMA,
        "created": started.isoformat(timespec="seconds"),
        "seconds": (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(),
        "note": config.note,
        "machine": machine_info(load_before),
        "versions": versions(),
        "threads": thread_info(config.threads),
        "config": config_record,
        "results": results,
    }


def _runner_info(runner: Runner | None, precision: str) -> dict[str, Any] | None:
    """What ran, labelled with the setting's precision (an INT8 ONNX runs in the fp32 runner)."""
    if runner is None:
        return None
    info = runner.info
    return {
        "label": f"{info.backend}:{info.device}:{precision}",
        "backend": info.backend,
        "device": info.device,
        "precision": precision,
        "details": {
            key: portable_path(value) if key in PATH_DETAILS and isinstance(value, str | Path) else value
            for key, value in _jsonable(info.details).items()
        },
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _case_result(
    case: _Case, flops: int, runner: dict[str, Any] | None, config: BenchConfig
) -> dict[str, Any]:
    setting = asdict(case.setting)
    setting["onnx"] = portable_path(case.setting.onnx)
    result: dict[str, Any] = {
        "name": case.setting.name,
        "setting": setting,
        "status": case.status,
        "reason": case.reason,
        "runner": runner,
    }
    workload = case.workload
    if case.status != "ok" or workload is None or not case.runtime.seconds:
        return result
    result.update(
        output_shape=list(workload.output_shape),
        tiles_per_image=workload.tiles,
        calls_per_image=len(workload.batches),
        network_pixels_per_image=workload.network_pixels,
        runtime=summarize(case.runtime, workload, flops),
        pipeline=summarize(case.pipeline, workload, flops) if case.pipeline.seconds else None,
        pipeline_path="device" if case.device is not None else "host",
        runtime_form="device tensors" if case.device_batches else "host arrays",
    )
    if case.job.seconds:
        job = summarize(case.job, workload, flops)
        frames = config.frames
        for key in ("images_per_second", "megapixels_per_second", "network_gflops_per_second",
                    "equivalent_gflops_per_second"):  # fmt: skip
            job[key] *= frames  # one timing covers every frame
        job["frames"] = frames
        job["format"] = "png (compress level 6, the writer's default)"
        result["job"] = job
        result["job_vs_runtime"] = job["megapixels_per_second"] / result["runtime"]["megapixels_per_second"]
    if result["pipeline"] is not None:
        result["pipeline_overhead"] = (
            result["pipeline"]["latency_ms"]["mean"] / result["runtime"]["latency_ms"]["mean"]
        )
    return result


def _add_ratios(results: list[dict[str, Any]], baseline: str | None) -> str | None:
    """``ratio_vs_baseline``: throughput / the baseline's, for the runtime and pipeline paths.
    Without a ``baseline`` the first setting that ran is the baseline. Returns its name."""
    ran = [r for r in results if r.get("runtime") is not None]
    if baseline is None and ran:
        baseline = ran[0]["name"]
    base = next((r for r in ran if r["name"] == baseline), None)
    if base is None:
        return None
    for result in results:
        if result.get("runtime") is None:
            continue
        ratios = {
            "runtime": result["runtime"]["megapixels_per_second"]
            / base["runtime"]["megapixels_per_second"]
        }
        if result.get("pipeline") and base.get("pipeline"):
            ratios["pipeline"] = (
                result["pipeline"]["megapixels_per_second"]
                / base["pipeline"]["megapixels_per_second"]
            )
        result["ratio_vs_baseline"] = ratios
    return str(baseline)


def _config_dict(
    config: BenchConfig, lr: NDArray[np.float32], weights: dict[str, Any], flops: int
) -> dict[str, Any]:
    return {
        "size": list(config.size),
        "input_shape": list(lr.shape),
        "scale": config.scale,
        "halo": config.halo,
        "warmup": config.warmup,
        "repeats": config.repeats,
        "min_repeats": config.min_repeats,
        "max_seconds": config.max_seconds,
        "interleave": config.interleave,
        "pipeline": config.pipeline,
        "baseline": config.baseline,
        "ensemble": config.ensemble,
        "weights": {
            k: weights[k] for k in ("path", "depth", "channels", "weights_digest", "file_sha256")
        },
        "flops_per_pixel": flops,
    }


# ----------------------------------------------------------------------------------------
# Rendering


BENCH_COLUMNS = (
    "setting", "runner", "tiles x batch", "runtime Mpx/s", "img/s", "p50 / p90 / p99 ms",
    "GFLOP/s", "pipeline Mpx/s", "pipeline overhead", "vs baseline",
)  # fmt: skip
# The terminal table: fits 80 columns (bench.md has every column above).
TERMINAL_COLUMNS = ("setting", "Mpx/s", "p50 ms", "pipe Mpx/s", "overhead", "vs base")
OVERHEAD_NOTE = (
    "overhead: the whole upscale path's (pipe) time per image vs the bare runtime's "
    "(+5% = 5% slower; negative = the pipeline was faster)"
)


def fmt_overhead(ratio: float) -> str:
    """The pipeline's latency over the bare runtime's as a signed percentage: ``+5%`` is
    5% slower, ``-17%`` faster (a ratio of 0.83 read as "0.83x overhead" misleads)."""
    return f"{(ratio - 1) * 100:+.0f}%"


def terminal_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table cells per setting in :data:`TERMINAL_COLUMNS` order; settings that did not
    run show their status (the reason is printed by the caller)."""
    rows: list[tuple[str, ...]] = []
    for item in result["results"]:
        if item.get("runtime") is None:
            rows.append((item["name"], item["status"], "", "", "", ""))
            continue
        rt, pl = item["runtime"], item.get("pipeline")
        ratio = item.get("ratio_vs_baseline", {}).get("runtime")
        rows.append(
            (
                item["name"],
                f"{rt['megapixels_per_second']:.3g}",
                f"{rt['latency_ms']['p50']:.1f}",
                f"{pl['megapixels_per_second']:.3g}" if pl else "-",
                fmt_overhead(item["pipeline_overhead"]) if pl else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
            )
        )
    return rows


def bench_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Table cells per setting, in :data:`BENCH_COLUMNS` order (shared by CLI and Markdown)."""
    rows: list[tuple[str, ...]] = []
    for item in result["results"]:
        runner = item["runner"]["label"] if item.get("runner") else "-"
        if item.get("runtime") is None:
            rows.append((item["name"], runner, f"{item['status']}: {item['reason']}", *[""] * 7))
            continue
        rt, pl = item["runtime"], item.get("pipeline")
        lat = rt["latency_ms"]
        ratio = item.get("ratio_vs_baseline", {}).get("runtime")
        rows.append(
            (
                item["name"],
                runner,
                f"{item['tiles_per_image']} in {item['calls_per_image']} call(s), "
                f"halo {rt['halo_overhead']:.2f}x",
                f"{rt['megapixels_per_second']:.4g}",
                f"{rt['images_per_second']:.3g}",
                f"{lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f}",
                f"{rt['equivalent_gflops_per_second']:.0f}",
                f"{pl['megapixels_per_second']:.4g}" if pl else "-",
                fmt_overhead(item["pipeline_overhead"]) if pl else "-",
                f"{ratio:.2f}x" if ratio is not None else "-",
            )
        )
    return rows


def render_markdown(result: dict[str, Any], title: str = "vdsr bench") -> str:
    """A Markdown table of the results with the machine, versions and settings."""
    machine, config = result["machine"], result["config"]
    size = "x".join(str(v) for v in config["size"])
    lines = [
        f"# {title}",
        "",
        f"- date: {result['created']}",
        f"- machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs, "
        f"flags {', '.join(machine['cpu_flags']) or '-'}, {machine['memory_gib']} GiB; "
        f"GPU {machine['gpu'] or 'none'}",
        f"- load average before/after: {machine['load_average_before']} / "
        f"{machine['load_average_after']}; "
        f"nice {machine['nice']}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items() if v)}",
        f"- threads: {result['threads']}",
        f"- workload: {size} output (x{config['scale']:g} from "
        f"{config['input_shape'][1]}x{config['input_shape'][0]}), "
        f"{config['flops_per_pixel'] / 1e6:.2f} MFLOP/pixel, warm-up {config['warmup']}, "
        f"up to {config['repeats']} timed repeats{' interleaved' if config['interleave'] else ''}"
        + (
            "; x8 self-ensemble (8 transformed planes per image, 8x the compute)"
            if config.get("ensemble")
            else ""
        ),
    ]
    if result.get("note"):
        lines.append(f"- note: {result['note']}")
    if config.get("baseline"):
        lines.append(f"- vs baseline: throughput relative to `{config['baseline']}`")
    if config.get("weights"):
        from vdsr_deploy.environment import describe_weights

        lines.append(f"- weights: {describe_weights(config['weights'], markdown=True)}")
    lines += ["", "| " + " | ".join(BENCH_COLUMNS) + " |", "|" + "---|" * len(BENCH_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in bench_rows(result)]
    lines += [
        "",
        "runtime = bare runner on pre-cut tiles; pipeline = colour + MATLAB bicubic + tiling + "
        "stitching on the in-memory image (on the device for CUDA runners); GFLOP/s counts "
        "output pixels only (halo = pixels the network computes / output pixels); latency is "
        "per image; pipeline " + OVERHEAD_NOTE + ".",
    ]
    lines += _device_lines(result)
    return "\n".join(lines) + "\n"


def _no_peak(item: dict[str, Any]) -> str:
    on_cuda = str((item.get("runner") or {}).get("device", "")).startswith("cuda")
    return "unknown GPU" if on_cuda else "not a GPU"


def _device_lines(result: dict[str, Any]) -> list[str]:
    """End-to-end jobs and the share of the GPU's dense limit, when measured."""
    rows = [r for r in result["results"] if r.get("job") or r.get("device_peak")]
    if not rows:
        return []
    lines = [
        "",
        "| setting | runtime Mpx/s | pipeline Mpx/s (path) | job Mpx/s (frames) | job / runtime "
        "| runtime TFLOP/s | share of dense peak (runtime / pipeline / job) | peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for item in rows:
        rt, pl, job, peak = item["runtime"], item.get("pipeline"), item.get("job"), item.get("device_peak")
        shares = " / ".join(
            f"{peak[k]:.1%}" if peak and peak.get(k) is not None else "-" for k in ("runtime", "pipeline", "job")
        )
        cells = [
            item["name"],
            f"{rt['megapixels_per_second']:.4g}",
            f"{pl['megapixels_per_second']:.4g} ({item.get('pipeline_path', 'host')})" if pl else "-",
            f"{job['megapixels_per_second']:.4g} ({job['frames']})" if job else "-",
            f"{item['job_vs_runtime']:.2f}" if job else "-",
            f"{rt['equivalent_gflops_per_second'] / 1e3:.1f}",
            shares,
            f"{peak['peak_tflops']:.0f} TFLOP/s {peak['precision']} ({peak['source']})" if peak else _no_peak(item),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "job = vdsr_deploy.job.run_job over the frames (PNG decode, upscale, PNG encode at the "
        "writer's default level 6, atomic write); TFLOP/s and shares count output pixels only.",
    ]
    return lines


def write_plot(result: dict[str, Any], path: Path) -> Path | None:
    """Throughput (Mpx/s) per setting, runtime and pipeline, as a PNG (None if nothing ran)."""
    from vdsr_deploy.plots import throughput_bars

    done = [r for r in result["results"] if r.get("runtime")]
    if not done:
        return None
    series: dict[str, list[float]] = {
        "runtime": [r["runtime"]["megapixels_per_second"] for r in done]
    }
    if all(r.get("pipeline") for r in done):
        series["pipeline"] = [r["pipeline"]["megapixels_per_second"] for r in done]
    size = "x".join(str(v) for v in result["config"]["size"])
    return throughput_bars(
        [r["name"] for r in done], series, path, title=f"VDSR throughput, {size} output"
    )


# ----------------------------------------------------------------------------------------
# Task quality of fast paths (e.g. INT8): PSNR on a benchmark set, side by side


def task_psnr(
    folder: Path,
    scales: Sequence[int],
    runners: dict[str, Runner],
    *,
    tiling: TileConfig | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Mean PSNR/SSIM (paper protocol, :mod:`vdsr_deploy.evaluate`) of each runner (already
    active) on the HR images of ``folder``, per scale, and each runner's PSNR difference to
    the first one."""
    from vdsr_deploy.evaluate import list_images, prepare_items, score
    from vdsr_deploy.pipeline import upscale_plane

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
