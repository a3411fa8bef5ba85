from __future__ import annotations

from pathlib import Path

import pytest

from train.report import chain_logs, plot_validation


def _validation(step: int, x2: float, patches: int = 0) -> dict[str, float | int | str]:
    return {"event": "validate", "step": step, "x2": x2, "bicubic_x2": 33.0, "mean": x2, "patches": patches}


def test_chain_logs_offsets_each_run_by_the_runs_before_it() -> None:
    first = [{"event": "train", "step": 10}, _validation(10, 34.0), {"event": "finished", "step": 12}]
    second = [_validation(5, 35.0), _validation(8, 35.5), {"event": "finished", "step": 8}]
    chained = chain_logs([(first, 4), (second, 32)])
    # patches: 10 x 4; then 12 x 4 = 48 from the first run plus 5 x 32 and 8 x 32
    assert [(e["step"], e["patches"], e["x2"]) for e in chained] == [
        (10, 40, 34.0),
        (17, 208, 35.0),
        (20, 304, 35.5),
    ]
    alone = chain_logs([(second, 2)])
    assert [(e["step"], e["patches"]) for e in alone] == [(5, 10), (8, 16)]


def test_plot_validation_writes_a_png_and_refuses_an_empty_log(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    plot_validation([_validation(1, 34.0), _validation(2, 34.5)], png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="no validation entries"):
        plot_validation([], tmp_path / "empty.png", "test")
