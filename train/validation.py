"""Validation during training: PSNR of the weights (and of their moving average, when the
recipe keeps one) on the validation images, by the paper's protocol
(:func:`vdsr_deploy.evaluation.run.score`), and which of the two the run keeps.

The figures are returned as data; the loop logs them and writes ``best.safetensors`` when
they beat the best so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from train.ema import WeightAverage
from vdsr_deploy.evaluation import run as evaluate
from vdsr_deploy.model.network import VDSR


def validation_scores(
    model: nn.Module, items: Sequence[evaluate.EvalItem], device: torch.device
) -> dict[str, float]:
    """``x2``, ``bicubic_x2``, ... : mean PSNR per scale of ``model`` and of bicubic. The
    model is put in eval mode for the pass and back in train mode after it."""
    model.eval()

    def run(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(y))[None, None].to(device)
            if device.type == "cpu":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            result: np.ndarray = model(tensor)[0, 0].float().cpu().numpy()
            return result

    report = evaluate.score(items, run)
    model.train()
    results = {f"x{s.scale}": s.psnr for s in report.summaries}
    results.update({f"bicubic_x{s.scale}": s.bicubic_psnr for s in report.summaries})
    return results


@dataclass(frozen=True)
class Validation:
    """One validation: the weights' ``scores`` and their ``mean`` PSNR over the recipe's
    scales, the average's figures (``ema``: ``ema_x2``, ..., ``ema_mean``; empty without
    one), and the ``candidate`` the run keeps: the average when it validated better."""

    scores: dict[str, float]
    mean: float
    ema: dict[str, float]
    candidate: VDSR
    candidate_scores: dict[str, float]
    candidate_mean: float
    choice: str = "weights"  # or "ema"

    def entry(self, step: int) -> dict[str, object]:
        """The ``validate`` event of the log."""
        return {"event": "validate", "step": step, **self.scores, "mean": self.mean, **self.ema}


def validate(
    model: VDSR,
    ema: WeightAverage | None,
    items: Sequence[evaluate.EvalItem],
    device: torch.device,
    scales: Sequence[int],
) -> Validation:
    """Score ``model`` (and ``ema``'s average) on ``items``; the better one is the candidate."""
    scores = validation_scores(model, items, device)
    mean_psnr = float(np.mean([scores[f"x{s}"] for s in scales]))
    if ema is None:
        return Validation(scores, mean_psnr, {}, model, scores, mean_psnr)
    ema_scores = validation_scores(ema.model, items, device)
    ema_mean = float(np.mean([ema_scores[f"x{s}"] for s in scales]))
    extra = {f"ema_x{s}": ema_scores[f"x{s}"] for s in scales}
    extra["ema_mean"] = ema_mean
    if ema_mean > mean_psnr:
        return Validation(scores, mean_psnr, extra, ema.model, ema_scores, ema_mean, "ema")
    return Validation(scores, mean_psnr, extra, model, scores, mean_psnr, "weights")
