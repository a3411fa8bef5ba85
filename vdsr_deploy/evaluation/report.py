"""Evaluation reports as text: the per-scale table (terminal and Markdown) and the report files.

The terminal table (:data:`TERMINAL_COLUMNS`, :func:`terminal_rows`) and the Markdown report
(:func:`render_markdown`) show the same cells; :func:`write_reports` is the one writer of the
``<dataset>.json`` and ``<dataset>.md`` files that ``vdsr eval``, ``train/report.py`` and
``benchmarks/merge_eval_reports.py`` produce.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from vdsr_deploy.evaluation.run import PAPER_PSNR, EvalReport, ScaleSummary

TERMINAL_COLUMNS = ("scale", "images", "bicubic PSNR", "bicubic SSIM", "PSNR", "SSIM", "paper bic/VDSR")


def paper_psnr(dataset: str, scale: int) -> tuple[float, float] | None:
    """The paper's (bicubic, VDSR) PSNR for ``dataset`` at ``scale``, when it reports one."""
    return PAPER_PSNR.get(dataset.lower(), {}).get(scale)


def _summary_cells(summary: ScaleSummary) -> tuple[str, ...]:
    s = summary
    return (
        f"x{s.scale}",
        str(s.images),
        f"{s.bicubic_psnr:.2f}",
        f"{s.bicubic_ssim:.4f}",
        f"{s.psnr:.2f}",
        f"{s.ssim:.4f}",
    )


def terminal_rows(report: EvalReport) -> list[tuple[str, ...]]:
    """One row of :data:`TERMINAL_COLUMNS` per scale."""
    rows = []
    for s in report.summaries:
        paper = paper_psnr(report.dataset, s.scale)
        rows.append((*_summary_cells(s), f"{paper[0]:.2f}/{paper[1]:.2f}" if paper else "-"))
    return rows


def render_markdown(report: EvalReport) -> str:
    """A Markdown table of per-scale means (with the paper's figures) and per-image scores."""
    lines = [
        f"# {report.dataset} — {report.method}",
        "",
        "| scale | images | bicubic PSNR | bicubic SSIM | PSNR | SSIM | paper bicubic | paper VDSR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in report.summaries:
        paper = paper_psnr(report.dataset, s.scale)
        paper_cols = f"{paper[0]:.2f} | {paper[1]:.2f}" if paper else "- | -"
        lines.append(f"| {' | '.join(_summary_cells(s))} | {paper_cols} |")
    lines += [
        "",
        "| image | scale | bicubic PSNR | PSNR | bicubic SSIM | SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for i in report.images:
        lines.append(
            f"| {i.name} | x{i.scale} | {i.bicubic_psnr:.2f} | {i.psnr:.2f} | {i.bicubic_ssim:.4f} | {i.ssim:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_reports(reports: Iterable[EvalReport], folder: Path) -> None:
    """``<dataset>.json`` and ``<dataset>.md`` for each report in ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for report in reports:
        (folder / f"{report.dataset}.json").write_text(json.dumps(report.to_dict(), indent=2))
        (folder / f"{report.dataset}.md").write_text(render_markdown(report))
