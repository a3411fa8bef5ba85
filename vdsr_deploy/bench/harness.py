"""The timing harness: :func:`benchmark` opens a runner per setting and times its paths on
one in-memory image, warm-up first, then the timed repeats (see the package docstring for
what each path covers). A setting whose runtime is unavailable is recorded as ``skipped``,
one that fails as ``error``; the others still run."""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.bench.case import Case, EventSink
from vdsr_deploy.bench.config import BenchConfig, BenchSetting
from vdsr_deploy.bench.device import on_cuda, tf32_for
from vdsr_deploy.bench.record import bench_record, runner_record
from vdsr_deploy.bench.timing import Timer, Timings
from vdsr_deploy.bench.workload import bench_image, make_workload
from vdsr_deploy.environment import load_average
from vdsr_deploy.errors import BackendUnavailableError, VdsrError
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.runner import Runner

if TYPE_CHECKING:
    from vdsr_deploy.backends.registry import RunnerSpec

@dataclass(frozen=True)
class _Inputs:
    """The image every case runs on: float RGB for the host pipeline, uint8 samples for the
    device pipeline, and the folder of PNG frames (``<frames>/in``) for the job path."""

    lr: NDArray[np.float32]
    samples: NDArray[Any]
    frames: Path | None


def bench_runner_spec(setting: BenchSetting, config: BenchConfig) -> RunnerSpec:
    """The :class:`~vdsr_deploy.runtime.prepare.RunnerSpec` that ``setting`` times."""
    from vdsr_deploy.backends.registry import RunnerSpec

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
    from vdsr_deploy.runtime.prepare import open_runner

    pipeline = config.pipeline_for(setting)
    return open_runner(bench_runner_spec(setting, config), tiling=pipeline.tiling, batch=setting.batch)


def _write_frames(stack: ExitStack, samples: NDArray[Any], count: int) -> Path:
    """``count`` PNG copies of the input image in a temporary folder (``<folder>/in``)."""
    from vdsr_deploy.imageio import write_image

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vdsr-bench-frames-")))
    (folder / "in").mkdir()
    pixels = samples.astype(np.float32) / np.float32(255.0)
    for index in range(count):
        write_image(folder / "in" / f"frame{index:04d}.png", pixels, bit_depth=8)
    return folder


def _open_case(
    case: Case,
    config: BenchConfig,
    inputs: _Inputs,
    opener: Callable[[BenchSetting, BenchConfig], Runner],
    stack: ExitStack,
    emit: EventSink,
) -> None:
    """Activate the case's runner (kept open by ``stack``) and lay out its workload, on the
    runner's device when it computes on CUDA; a runner that cannot open fails the case."""
    from vdsr_deploy.planes.device_pipeline import DeviceUpscaler, use_device_path

    setting = case.setting
    try:
        runner = opener(setting, config)
        stack.enter_context(runner)
    except BackendUnavailableError as error:
        case.fail("skipped", str(error), emit)
        return
    except VdsrError as error:
        case.fail("error", f"{type(error).__name__}: {error}", emit)
        return
    case.runner = runner
    tiling = case.pipeline_config.tiling
    case.workload = make_workload(inputs.lr, config.scale, tiling, setting.batch, ensemble=config.ensemble)
    case.timer = Timer(on_cuda(runner))
    if use_device_path(runner) and not config.ensemble:  # the ensemble: host path
        import torch

        case.device = DeviceUpscaler(runner, case.pipeline_config)
        case.device_batches = [torch.from_numpy(b).to(runner.tensor_device) for b in case.workload.batches]


def _run_runtime(case: Case) -> None:
    assert case.runner is not None and case.workload is not None
    if case.device_batches:  # device tensors in, device tensors out: no host copies
        for on_device in case.device_batches:
            case.runner.infer_tensor(on_device)
        return
    for stacked in case.workload.batches:
        case.runner.infer(stacked)


def _run_pipeline(case: Case, inputs: _Inputs) -> None:
    assert case.runner is not None
    if case.device is not None:  # uint8 in, uint8 out, everything on the device
        case.device.upscale(inputs.samples)
    else:
        upscale_pixels(inputs.lr, case.runner, case.pipeline_config)


def _run_job(case: Case, frames: Path) -> None:
    from vdsr_deploy.job import JobConfig, run_job

    assert case.runner is not None
    job = JobConfig(
        inputs=(str(frames / "in"),),
        output=frames / "out" / case.setting.name,
        pipeline=case.pipeline_config,
        overwrite=True,
    )
    summary = run_job(job, case.runner)
    if not summary.ok:
        raise VdsrError(f"the batch job failed: {summary.to_dict()['failed']}")


def _paths(case: Case, config: BenchConfig, inputs: _Inputs) -> list[tuple[Callable[[], None], Timings]]:
    """The case's paths in the order one round runs them, each with where its timings go."""
    paths: list[tuple[Callable[[], None], Timings]] = [(lambda: _run_runtime(case), case.runtime)]
    if config.pipeline:
        paths.append((lambda: _run_pipeline(case, inputs), case.pipeline))
    frames = inputs.frames
    if frames is not None:
        paths.append((lambda: _run_job(case, frames), case.job))
    return paths


def _one_round(case: Case, config: BenchConfig, inputs: _Inputs, emit: EventSink, *, record: bool) -> None:
    """Run every path of the case once, timed when ``record`` (a warm-up round otherwise)."""
    assert case.timer is not None
    began = time.perf_counter()
    try:
        with tf32_for(case.setting, case.runner):
            for work, timings in _paths(case, config, inputs):
                if record:
                    case.timer.time(work, timings)
                else:
                    work()
    except VdsrError as error:
        case.fail("error", f"{type(error).__name__}: {error}", emit)
    if record:
        case.spent += time.perf_counter() - began


def _wants_more(case: Case, config: BenchConfig) -> bool:
    done = len(case.runtime.seconds)
    if case.status != "ok" or done >= config.repeats:
        return False
    return done < config.min_repeats or case.spent < config.max_seconds


def _time_cases(cases: list[Case], config: BenchConfig, inputs: _Inputs, emit: EventSink) -> None:
    """Warm every case up, then time rounds until each has its repeats or its time: with
    ``config.interleave`` the cases take turns round by round, else one after the other."""
    for case in cases:
        emit({"event": "warmup", "setting": case.setting.name})
        for _ in range(config.warmup):
            if case.status == "ok":
                _one_round(case, config, inputs, emit, record=False)

    def timed_round(case: Case) -> None:
        _one_round(case, config, inputs, emit, record=True)
        emit({"event": "repeat", "setting": case.setting.name, "done": len(case.runtime.seconds)})

    if config.interleave:
        while any(_wants_more(c, config) for c in cases):
            for case in cases:
                if _wants_more(case, config):
                    timed_round(case)
    else:
        for case in cases:
            while _wants_more(case, config):
                timed_round(case)


def benchmark(
    config: BenchConfig,
    *,
    image: NDArray[np.float32] | None = None,
    open_runner: Callable[[BenchSetting, BenchConfig], Runner] | None = None,
    on_event: EventSink | None = None,
) -> dict[str, Any]:
    """Time every setting of ``config`` (see :mod:`vdsr_deploy.bench`); returns the results
    dict (:func:`~vdsr_deploy.bench.record.bench_record`).

    ``image``: the low-resolution RGB input (default :func:`bench_image` for ``config.size``);
    ``open_runner``: how to make a runner for a setting (default :func:`open_bench_runner`);
    ``on_event``: called with each progress event (warmup, repeat, skipped, error)."""
    from vdsr_deploy.imageio import quantize
    from vdsr_deploy.model.network import flops_per_pixel
    from vdsr_deploy.model.weights import load_weights

    emit = on_event or (lambda event: None)
    opener = open_runner or open_bench_runner
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    lr = image if image is not None else bench_image(config.size, config.scale)
    samples = quantize(lr, 8)
    _, weights_info = load_weights(config.weights)
    flops = flops_per_pixel(weights_info.depth, weights_info.channels)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = load_average()
    cases = [Case(s, config.pipeline_for(s)) for s in config.settings]
    with ExitStack() as stack:
        frames = _write_frames(stack, samples, config.frames) if config.frames else None
        inputs = _Inputs(lr, samples, frames)
        for case in cases:
            _open_case(case, config, inputs, opener, stack, emit)
        active = [c for c in cases if c.status == "ok"]
        _time_cases(active, config, inputs, emit)
        runners = {c.setting.name: runner_record(c.runner, c.setting.precision) for c in active}
    return bench_record(
        config,
        cases,
        runners,
        input_shape=lr.shape,
        weights=weights_info.to_dict(),
        flops=flops,
        started=started,
        load_before=load_before,
    )
