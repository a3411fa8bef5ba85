"""Exponential moving average (EMA) of the weights during training.

After every optimizer step ``average <- decay * average + (1 - decay) * weights``; the
average starts at the weights the run starts from (the initial or fine-tuned weights), so
with ``decay`` d it forgets them with a time constant of ``1 / (1 - d)`` steps (1,000 at
0.999). The loop validates the average next to the weights themselves and keeps whichever
validates better as the final weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vdsr_deploy.errors import TrainingError
from vdsr_deploy.model.network import VDSR


class WeightAverage:
    """An EMA copy of ``model`` (same device and memory format), updated by :meth:`update`."""

    def __init__(self, model: VDSR, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise TrainingError(f"EMA decay: expected 0 < decay < 1, got {decay}")
        self.decay = decay
        self.model: VDSR = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` into the average (call after each step)."""
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.mul_(self.decay).add_(current.detach(), alpha=1.0 - self.decay)
