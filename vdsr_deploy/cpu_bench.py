"""Every CPU path side by side: speed as a ratio to ONNX Runtime FP32 in the same run, and the
task-PSNR cost of each lossy path on HR benchmark sets (Set5, Set14) at every scale.

:func:`cpu_path_settings` lists the paths (the baseline first); :func:`quality_costs`
scores each against the baseline with :func:`vdsr_deploy.bench.task_psnr` (whole images,
paper protocol); :func:`cost_markdown` renders the joint table. ``vdsr bench --cpu-paths``
and ``benchmarks/cpu.py`` are thin wrappers over these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.base import Runner
from vdsr_deploy.bench import BenchConfig, BenchSetting, open_bench_runner, task_psnr
from vdsr_deploy.precision import BF16_FLAGS, MAX_AUTO_COST_DB, cpu_flags

BASELINE = "onnxruntime-fp32"


def cpu_path_settings(
    tile: int, *, batch: int = 1, int8_models: dict[str, Path] | None = None, eager: bool = True
) -> list[BenchSetting]:
    """ONNX Runtime FP32 (the baseline, first), PyTorch FP32 (NCHW and channels-last),
    PyTorch bf16 channels-last, ONNX Runtime INT8 (the cached model ``--precision int8``
    uses) and any extra INT8 models given (``label -> ONNX``)."""
    settings = [BenchSetting("onnxruntime", "fp32", tile=tile, batch=batch, label=BASELINE)]
    if eager:
        settings.append(
            BenchSetting(
                "torch", "fp32", device="cpu", tile=tile, batch=batch, channels_last=False, label="torch-fp32-nchw"
            )
        )
    settings += [
        BenchSetting("torch", "fp32", device="cpu", tile=tile, batch=batch, label="torch-fp32-channels-last"),
        BenchSetting("torch", "bf16", device="cpu", tile=tile, batch=batch, label=_bf16_label()),
        BenchSetting("onnxruntime", "int8", tile=tile, batch=batch, label="onnxruntime-int8"),
    ]
    for label, path in (int8_models or {}).items():
        settings.append(BenchSetting("onnxruntime", "int8", tile=tile, batch=batch, onnx=path, label=label))
    return settings


def _bf16_label() -> str:
    native = cpu_flags() & BF16_FLAGS
    return "torch-bf16-channels-last" + ("" if native else "-emulated")


def quality_costs(
    folders: Sequence[Path],
    scales: Sequence[int],
    settings: Sequence[BenchSetting],
    config: BenchConfig,
    baseline: str = BASELINE,
    *,
    opener: Callable[[BenchSetting, BenchConfig], Runner] = open_bench_runner,
) -> dict[str, Any]:
    """Task PSNR of every setting on every folder of HR images (whole images), and each
    one's difference to ``baseline`` per scale: ``{folder: task_psnr table}``."""
    by_name = {s.name: s for s in settings}
    order = [baseline, *[name for name in by_name if name != baseline]]
    tables: dict[str, Any] = {}
    with ExitStack() as stack:
        runners = {name: stack.enter_context(opener(by_name[name], config)) for name in order}
        for folder in folders:
            tables[Path(folder).name] = task_psnr(Path(folder), scales, runners)
    return tables


def worst_costs(tables: dict[str, Any], baseline: str = BASELINE) -> dict[str, float]:
    """The largest PSNR loss (dB) of each setting over every set and scale."""
    worst: dict[str, float] = {}
    for table in tables.values():
        for name, per_scale in table["runners"].items():
            for values in per_scale.values():
                loss = -float(values[f"psnr_delta_vs_{baseline}"])
                worst[name] = max(worst.get(name, 0.0), loss)
    return worst


def cost_markdown(result: dict[str, Any], tables: dict[str, Any], baseline: str = BASELINE) -> str:
    """One row per path: speed vs the baseline (runtime and whole pipeline) and the task-PSNR
    change on every set and scale, with whether it is within ``auto``'s limit."""
    if not tables:
        return ""
    sets = list(tables)
    scales = next(iter(tables.values()))["scales"]
    header = ["path", "runtime vs ORT fp32", "pipeline vs ORT fp32"]
    header += [f"{name} x{s} (dB)" for name in sets for s in scales]
    header.append(f"within {MAX_AUTO_COST_DB:g} dB")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    worst = worst_costs(tables, baseline)
    for item in result["results"]:
        name = item["name"]
        ratios = item.get("ratio_vs_baseline", {})
        cells = [name, _ratio(ratios.get("runtime")), _ratio(ratios.get("pipeline"))]
        for table in tables.values():
            per_scale = table["runners"].get(name)
            for s in scales:
                if per_scale is None:
                    cells.append("-")
                    continue
                values = per_scale[f"x{s}"]
                delta = values[f"psnr_delta_vs_{baseline}"]
                cells.append(f"{values['psnr']:.3f}" if name == baseline else f"{delta:+.3f}")
        if name == baseline:
            cells.append("reference")
        elif name not in worst:
            cells.append("not scored")
        else:
            cells.append("yes" if worst[name] <= MAX_AUTO_COST_DB else "no")
        lines.append("| " + " | ".join(cells) + " |")
    bicubic = []
    for table in tables.values():
        first = next(iter(table["runners"].values()))
        bicubic += [f"{first[f'x{s}']['bicubic_psnr']:.3f}" for s in scales]
    lines.append("| bicubic (PSNR) | | | " + " | ".join(bicubic) + " | |")
    return "\n".join(lines) + "\n"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"
