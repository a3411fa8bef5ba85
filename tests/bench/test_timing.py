"""Latency statistics of the benchmark's timings."""

from __future__ import annotations

import numpy as np
import pytest

from vdsr_deploy.bench import latency_stats


def test_latency_stats_match_numpy() -> None:
    seconds = [0.010, 0.012, 0.011, 0.030, 0.009]
    stats = latency_stats(seconds)
    ms = np.array(seconds) * 1000
    assert stats["p50"] == pytest.approx(np.percentile(ms, 50))
    assert stats["p99"] == pytest.approx(np.percentile(ms, 99))
    assert stats["mean"] == pytest.approx(ms.mean()) and stats["min"] == pytest.approx(9.0)
