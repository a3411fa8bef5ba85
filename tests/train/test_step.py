"""The optimizer step's parts (train/step.py): adjustable gradient clipping and the
learning-rate schedules of the recipes."""

from __future__ import annotations

import pytest
import torch

from train.config import load_config
from train.step import clip_gradients, learning_rate
from vdsr_deploy.errors import TrainingError


def test_value_clipping_scales_with_lr() -> None:
    parameter = torch.nn.Parameter(torch.zeros(5))
    parameter.grad = torch.tensor([-3.0, -0.05, 0.0, 0.05, 3.0])
    clip_gradients([parameter], "value_lr", theta=0.01, lr=0.1)  # bound 0.1
    assert torch.allclose(parameter.grad, torch.tensor([-0.1, -0.05, 0.0, 0.05, 0.1]))
    parameter.grad = torch.tensor([-3.0, -0.05, 0.0, 0.05, 3.0])
    clip_gradients([parameter], "value_lr", theta=0.01, lr=0.001)  # bound 10: untouched
    assert torch.allclose(parameter.grad, torch.tensor([-3.0, -0.05, 0.0, 0.05, 3.0]))


def test_value_clipping_with_base_lr_is_fixed() -> None:
    parameter = torch.nn.Parameter(torch.zeros(4))
    parameter.grad = torch.tensor([-5.0, -0.05, 0.05, 5.0])
    clip_gradients([parameter], "value_base_lr", theta=0.01, lr=0.001, base_lr=0.1)  # bound 0.1
    assert torch.equal(parameter.grad, torch.tensor([-0.1, -0.05, 0.05, 0.1]))
    with pytest.raises(TrainingError, match="base lr"):
        clip_gradients([parameter], "value_base_lr", theta=0.01, lr=0.001)


def test_norm_clipping() -> None:
    parameter = torch.nn.Parameter(torch.zeros(2))
    parameter.grad = torch.tensor([3.0, 4.0])
    clip_gradients([parameter], "norm_lr", theta=0.1, lr=0.1)  # norm 5 -> 1
    assert torch.allclose(parameter.grad, torch.tensor([0.6, 0.8]), atol=1e-5)


def test_paper_schedule() -> None:
    config = load_config("paper")
    assert (config.optimizer, config.momentum, config.weight_decay, config.batch_size) == (
        "sgd",
        0.9,
        1e-4,
        64,
    )
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 2489) == pytest.approx(0.1)
    assert learning_rate(config, 2490) == pytest.approx(0.01)
    assert learning_rate(config, 9959) == pytest.approx(1e-4)
    fast = load_config("fast")
    assert learning_rate(fast, 0) == pytest.approx(fast.lr / fast.warmup_iterations)
    assert learning_rate(fast, fast.iterations) == pytest.approx(fast.min_lr)
    fine_tune = load_config("ft_l1")
    assert (fine_tune.name, fine_tune.loss, fine_tune.optimizer) == ("ft_l1", "l1", "adam")
    assert learning_rate(fine_tune, fine_tune.iterations) == pytest.approx(fine_tune.min_lr)
