"""Evaluation reports as text: the terminal rows and Markdown show the same cells, and the
report files are written once for every caller."""

from __future__ import annotations

import json
from pathlib import Path

from vdsr_deploy.evaluation.report import TERMINAL_COLUMNS, paper_psnr, render_markdown, terminal_rows, write_reports
from vdsr_deploy.evaluation.run import EvalReport, ImageScore, ScaleSummary


def report(dataset: str) -> EvalReport:
    image = ImageScore("baby", 2, 33.1234, 0.91234, 37.5678, 0.95678)
    summary = ScaleSummary(2, 1, 33.1234, 0.91234, 37.5678, 0.95678)
    return EvalReport(dataset, "torch:cpu:fp32", (image,), (summary,))


def test_rows_and_markdown_share_cells_and_the_papers_figures(tmp_path: Path) -> None:
    assert paper_psnr("Set5", 2) == (33.66, 37.53) and paper_psnr("mine", 2) is None
    (row,) = terminal_rows(report("Set5"))
    assert len(row) == len(TERMINAL_COLUMNS)
    assert row == ("x2", "1", "33.12", "0.9123", "37.57", "0.9568", "33.66/37.53")
    assert "| x2 | 1 | 33.12 | 0.9123 | 37.57 | 0.9568 | 33.66 | 37.53 |" in render_markdown(report("Set5"))
    assert terminal_rows(report("mine"))[0][-1] == "-"
    assert "| 0.9568 | - | - |" in render_markdown(report("mine"))
    write_reports([report("Set5"), report("mine")], tmp_path / "reports")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["Set5.json", "Set5.md", "mine.json", "mine.md"]
    assert json.loads((tmp_path / "reports" / "mine.json").read_text())["summaries"][0]["psnr"] == 37.5678
