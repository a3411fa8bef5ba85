"""One optimizer step and what it is made of: the learning-rate schedule, the paper's
adjustable gradient clipping, the loss, and the optimizer the recipe names.

Pure functions of their arguments (no files, no events): the loop (:mod:`train.loop`) and
the step-time measurement (:mod:`train.budget`) both call :func:`training_step`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from train.config import TrainConfig
from vdsr_deploy.errors import TrainingError


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate for 0-based ``step``: optional linear warm-up, then step or cosine decay."""
    if config.warmup_iterations and step < config.warmup_iterations:
        return config.lr * (step + 1) / config.warmup_iterations
    if config.schedule == "step":
        drops = sum(1 for milestone in config.lr_milestones if step >= milestone)
        return float(config.lr * config.lr_gamma**drops)
    start = config.warmup_iterations
    progress = min(1.0, (step - start) / max(1, config.iterations - start))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def clip_gradients(
    parameters: Iterable[nn.Parameter], mode: str, theta: float, lr: float, base_lr: float | None = None
) -> None:
    """The paper's adjustable clipping: each gradient element to ``[-theta/lr, theta/lr]``.

    With SGD, a clipped element then moves by at most ``theta`` per step whatever the lr, so
    the lr schedule stops annealing once most elements are clipped. ``value_base_lr`` clips to
    ``theta/base_lr`` instead (a fixed bound: the step bound decays with the lr). ``norm_lr``
    scales the whole gradient so its L2 norm is at most ``theta/lr``.
    """
    if mode == "none":
        return
    if mode not in ("value_lr", "value_base_lr", "norm_lr"):
        raise TrainingError(f"unknown clip mode {mode!r}")
    if mode == "value_base_lr" and base_lr is None:
        raise TrainingError("value_base_lr clipping needs the recipe's base lr")
    bound = theta / (base_lr if mode == "value_base_lr" and base_lr is not None else lr)
    grads = [p.grad for p in parameters if p.grad is not None]
    if mode == "norm_lr":
        _clip_norm(grads, bound)
        return
    for grad in grads:
        grad.clamp_(-bound, bound)


def _clip_norm(grads: Sequence[torch.Tensor], bound: float) -> None:
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = bound / (float(total) + 1e-6)
    if factor < 1:
        for grad in grads:
            grad.mul_(factor)


def loss_fn(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    diff = output.float() - target
    if kind == "half_sum":
        return 0.5 * diff.pow(2).sum() / output.shape[0]
    if kind == "l1":
        return diff.abs().mean()
    return diff.pow(2).mean()


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    lr: float,
    *,
    bf16: bool,
) -> torch.Tensor | None:
    """One optimizer step (bf16 autocast when ``bf16``); the loss, or None (and no update)
    when the loss is not finite."""
    autocast: AbstractContextManager[Any] = (
        torch.autocast(inputs.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    )
    with autocast:
        output = model(inputs)
    loss = loss_fn(output, targets, config.loss)
    if not torch.isfinite(loss):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    clip_gradients(model.parameters(), config.clip, config.theta, lr, config.lr)
    optimizer.step()
    return loss.detach()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )
