"""Fit a recipe's iteration count to a wall-clock budget on this machine.

The step time is measured on the recipe's own model, optimizer, batch shape and precision,
with synthetic patches (the data pipeline is not timed: with ``data_workers`` it runs ahead
of the model). The cosine or step schedule is then laid over the iterations that fit, so a
run that is given N seconds ends its schedule on time instead of being cut off mid-way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from train.config import TrainConfig
from train.step import make_optimizer, training_step
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.model.network import VDSR

# Validation, checkpoints, logging and the first steps' kernel selection are not in the
# measured step time; keeping a tenth of the budget for them was enough on the CPU and GPU
# runs this was used for (see docs/training.md).
DEFAULT_STEP_SHARE = 0.9


@dataclass(frozen=True)
class StepTimes:
    """Seconds per training step: ``mixed`` in bf16 autocast, ``fp32`` in full precision."""

    mixed: float
    fp32: float


def measure_step_times(
    config: TrainConfig, device: torch.device, *, warmup: int = 5, repeats: int = 10
) -> StepTimes:
    """Time ``repeats`` steps (after ``warmup``) of ``config``'s training step on ``device``.

    The bf16 figure is only measured when the recipe uses bf16; otherwise it equals fp32.
    """
    if warmup < 0 or repeats < 1:
        raise TrainingError(f"expected warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    generator = torch.Generator().manual_seed(config.seed)
    shape = (config.batch_size, 1, config.patch_size, config.patch_size)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    inputs = torch.rand(shape, generator=generator).to(device).contiguous(memory_format=memory_format)
    targets = torch.rand(shape, generator=generator).to(device)

    def seconds_per_step(bf16: bool) -> float:
        model = VDSR(depth=config.depth, channels=config.channels).to(device)
        model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
        optimizer = make_optimizer(model, config)
        lr = config.min_lr or config.lr * 1e-3  # small: the timing must not blow the model up
        for _ in range(warmup):
            training_step(model, optimizer, inputs, targets, config, lr, bf16=bf16)
        _synchronize(device)
        started = time.perf_counter()
        for _ in range(repeats):
            training_step(model, optimizer, inputs, targets, config, lr, bf16=bf16)
        _synchronize(device)
        return (time.perf_counter() - started) / repeats

    fp32 = seconds_per_step(bf16=False)
    mixed = seconds_per_step(bf16=True) if config.precision == "bf16" else fp32
    return StepTimes(mixed=mixed, fp32=fp32)


def iterations_for_budget(
    config: TrainConfig, seconds: float, times: StepTimes, *, step_share: float = DEFAULT_STEP_SHARE
) -> int:
    """How many iterations of ``config`` fit in ``seconds`` at the measured step ``times``.

    ``step_share`` of the budget goes to training steps; the recipe's final fp32 iterations
    (``fp32_final_iterations``) are costed at the fp32 step time and are always included.
    """
    check_budget(seconds)
    if not 0 < step_share <= 1:
        raise TrainingError(f"step share: expected in (0, 1], got {step_share}")
    usable = seconds * step_share
    if config.precision != "bf16":
        iterations = int(usable / times.fp32)
    else:
        final = config.fp32_final_iterations
        left = usable - final * times.fp32
        if left <= 0:
            raise TrainingError(
                f"time budget: {seconds:g} s does not cover the recipe's {final} final fp32 "
                f"iterations ({final * times.fp32 / step_share:.0f} s at the measured "
                f"{times.fp32 * 1e3:.1f} ms per step)"
            )
        iterations = final + int(left / times.mixed)
    needed = max(1, config.warmup_iterations + 1)
    if iterations < needed:
        raise TrainingError(
            f"time budget: {seconds:g} s fits {iterations} iterations at the measured "
            f"{times.mixed * 1e3:.1f} ms per step; the recipe needs at least {needed}"
        )
    return iterations


@dataclass(frozen=True)
class BudgetFit:
    """A recipe fitted to a time budget: ``recipe`` with the iterations that fit, and the
    measurement they come from."""

    recipe: TrainConfig
    seconds: float
    device: torch.device
    times: StepTimes

    def describe(self) -> str:
        """One line for the run's log: the budget, the measured step times, the iterations."""
        times = self.times
        mixed = f"{times.mixed * 1e3:.1f} ms bf16, " if self.recipe.precision == "bf16" else ""
        return (
            f"time budget {self.seconds:g} s on {self.device}: {mixed}{times.fp32 * 1e3:.1f} ms fp32 "
            f"per step of {self.recipe.batch_size} -> {self.recipe.iterations:,} iterations"
        )


def check_budget(seconds: float) -> None:
    """A :class:`TrainingError` unless ``seconds`` is a finite number > 0 (NaN and Inf
    would reach ``int()`` as a traceback)."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise TrainingError(f"time budget: expected a finite number of seconds > 0, got {seconds}")


def fit_to_budget(config: TrainConfig, seconds: float, device: str) -> BudgetFit:
    """``config`` with as many iterations as fit in ``seconds`` at the step time measured
    here on ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""
    check_budget(seconds)
    from vdsr_deploy.backends.device import resolve_device

    torch_device = resolve_device(device)
    times = measure_step_times(config, torch_device)
    fitted = iterations_for_budget(config, seconds, times)
    return BudgetFit(config.replace(iterations=fitted), seconds, torch_device, times)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
