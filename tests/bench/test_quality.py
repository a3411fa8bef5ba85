"""bench.quality.worst_costs: each setting's largest loss over every set and scale."""

from __future__ import annotations

import math

import pytest

from vdsr_deploy.bench.quality import worst_costs


def _tables(deltas: list[float]) -> dict[str, object]:
    return {
        f"set{index}": {"runners": {"int8": {"x2": {"psnr_delta_vs_cpu": delta}}}}
        for index, delta in enumerate(deltas)
    }


def test_worst_cost_is_the_largest_loss_over_sets() -> None:
    assert worst_costs(_tables([-0.01, -0.07, 0.02]), "cpu") == {"int8": pytest.approx(0.07)}
    assert worst_costs(_tables([0.02, 0.01]), "cpu") == {"int8": 0.0}  # a gain is no loss


@pytest.mark.parametrize("deltas", [[math.nan, -0.01], [-0.01, math.nan], [math.nan]])
def test_a_nan_cost_stays_nan_wherever_it_stands(deltas: list[float]) -> None:
    assert math.isnan(worst_costs(_tables(deltas), "cpu")["int8"])
