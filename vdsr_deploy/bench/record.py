"""The benchmark's result record: the JSON-ready dict :func:`~vdsr_deploy.bench.benchmark`
returns (schema :data:`SCHEMA`), built from the timed cases: per-setting figures
(:func:`case_record`), throughput ratios to the baseline (:func:`add_ratios`), the share of a
GPU's peak, and the machine, versions, threads and settings the figures were measured with
(from :mod:`vdsr_deploy.environment`)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vdsr_deploy.bench.case import Case
from vdsr_deploy.bench.config import BenchConfig
from vdsr_deploy.bench.device import add_device_share
from vdsr_deploy.bench.timing import summarize
from vdsr_deploy.environment import machine_info, portable_path, thread_info
from vdsr_deploy.runner import Runner
from vdsr_deploy.runtime.info import versions

SCHEMA = "vdsr-bench/1"
PATH_DETAILS = ("onnx", "engine", "weights", "path", "loaded_from")  # runner details recorded as portable paths


def runner_record(runner: Runner | None, precision: str) -> dict[str, Any] | None:
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


def case_record(case: Case, flops: int, runner: dict[str, Any] | None, frames: int) -> dict[str, Any]:
    """One setting's entry of ``results``: its status and, when it ran, its figures per path
    (``frames``: how many frames one timing of the job path covers)."""
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


def add_ratios(results: list[dict[str, Any]], baseline: str | None) -> str | None:
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


def _config_record(
    config: BenchConfig, input_shape: Sequence[int], weights: dict[str, Any], flops: int
) -> dict[str, Any]:
    return {
        "size": list(config.size),
        "input_shape": list(input_shape),
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


def bench_record(
    config: BenchConfig,
    cases: Sequence[Case],
    runners: dict[str, dict[str, Any] | None],
    *,
    input_shape: Sequence[int],
    weights: dict[str, Any],
    flops: int,
    started: _dt.datetime,
    load_before: list[float] | None,
) -> dict[str, Any]:
    """The whole result: every case's record with its ratios and GPU share, the settings,
    and the machine (load average ``load_before`` the run and now), versions and threads."""
    results = [case_record(c, flops, runners.get(c.setting.name), config.frames) for c in cases]
    for result in results:
        add_device_share(result)
    baseline = add_ratios(results, config.baseline)
    config_dict = _config_record(config, input_shape, weights, flops)
    config_dict["baseline"] = baseline
    return {
        "schema": SCHEMA,
        "created": started.isoformat(timespec="seconds"),
        "seconds": (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(),
        "note": config.note,
        "machine": machine_info(load_before),
        "versions": versions(),
        "threads": thread_info(config.threads),
        "config": config_dict,
        "results": results,
    }
