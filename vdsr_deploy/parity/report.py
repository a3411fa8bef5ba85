"""Rendering a :class:`~vdsr_deploy.parity.ValidationReport`: Markdown, heatmap panels and
the cell formats shared with the CLI's terminal table. Pure text; the PNG is drawn by
:mod:`vdsr_deploy.parity.plots` (matplotlib, imported lazily)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.environment import describe_weights, portable_path
from vdsr_deploy.parity import (
    ERROR,
    FAILED,
    TOLERANCE_CLASSES,
    PairResult,
    QuantFigures,
    ValidationReport,
)

SUMMARY_COLUMNS = (
    "pair",
    "candidate",
    "status",
    "max abs",
    "mean abs",
    "p99 abs",
    "NaN/Inf",
    "8-bit identical",
    "8-bit LSB histogram",
    "PSNR vs ref (dB)",
    "task ΔPSNR (dB)",
)


# The terminal table: fits 80 columns (the Markdown report has every column above).
TERMINAL_COLUMNS = ("pair", "status", "max abs", "p99 abs", "8-bit eq", "PSNR", "task Δ")
TERMINAL_LEGEND = (
    "max/p99 abs: |candidate - reference| on Y in [0, 1]; 8-bit eq: share of identical 8-bit "
    "pixels; PSNR: vs the reference (dB; ∞: identical); task Δ: mean change of PSNR vs HR (dB)"
)


def terminal_row(pair: PairResult) -> tuple[str, ...]:
    """The cells of one pair in :data:`TERMINAL_COLUMNS` order; a pair that did not run
    shows its status only (its reason is printed below the table)."""
    f = pair.figures
    if f is None:
        return (pair.name, pair.status, *[""] * 5)
    share = f.quant(8)
    return (
        pair.name,
        pair.status,
        f"{f.max_abs:.3g}",
        f"{f.p99_abs:.3g}",
        "-" if share is None else f"{share.identical_fraction:.2%}",
        "∞" if f.psnr_db == math.inf else fmt_db(f.psnr_db),  # "identical" wraps at 80 columns
        "-" if f.hr_psnr_delta_mean is None else f"{f.hr_psnr_delta_mean:+.4f}",
    )


def fmt_db(value: float | None) -> str:
    """PSNR cell: ``identical`` for infinite PSNR, ``-`` when absent."""
    if value is None:
        return "-"
    if math.isinf(value):
        return "identical" if value > 0 else "-inf"
    return f"{value:.2f}"


def fmt_share(quant: QuantFigures | None) -> str:
    return "-" if quant is None else f"{quant.identical_fraction:.4%}"


def fmt_histogram(quant: QuantFigures | None, limit: int = 5) -> str:
    """``lsb:count`` pairs, the first ``limit`` of them (then the largest LSB)."""
    if quant is None:
        return "-"
    items = [f"{lsb}:{count}" for lsb, count in quant.histogram[:limit]]
    if len(quant.histogram) > limit:
        items.append(f"... max {quant.max_lsb}")
    return " ".join(items)


def summary_row(pair: PairResult) -> tuple[str, ...]:
    """The cells of one pair in :data:`SUMMARY_COLUMNS` order."""
    f = pair.figures
    if f is None:
        return (pair.name, pair.candidate, f"{pair.status}: {'; '.join(pair.reasons)}", *[""] * 8)
    delta = "-"
    if f.hr_psnr_delta_mean is not None and f.hr_psnr_delta_worst is not None:
        delta = f"{f.hr_psnr_delta_mean:+.4f} (worst {f.hr_psnr_delta_worst:+.4f})"
    return (
        pair.name,
        pair.candidate,
        pair.status,
        f"{f.max_abs:.3g}",
        f"{f.mean_abs:.3g}",
        f"{f.p99_abs:.3g}",
        str(f.nonfinite),
        fmt_share(f.quant(8)),
        fmt_histogram(f.quant(8)),
        fmt_db(f.psnr_db),
        delta,
    )


def _row(cells: tuple[str, ...] | list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(columns: tuple[str, ...] | list[str]) -> list[str]:
    return [_row(columns), _row(["---"] * len(columns))]


def render_markdown(report: ValidationReport) -> str:
    """Verdict, per-pair summary, failures, notes, artifact chain, per-image figures and
    the tolerances (with their justification)."""
    tile = report.tiling.tile or "whole image"
    lines = [
        f"# vdsr validate — {'PASSED' if report.passed else 'FAILED'}",
        "",
        f"- created: {report.created}",
        f"- weights: {describe_weights(report.weights, markdown=True)}",
        f"- reference: {report.reference} (TF32 off), scale x{report.scale:g}, "
        f"tile {tile} halo {report.tiling.halo}, batch {report.batch}"
        + (", x8 self-ensemble on every side" if report.ensemble else ""),
        f"- images: {len(report.images)} ({', '.join(str(i['name']) for i in report.images)})",
        "",
        "All figures are on the network's Y output: float errors on [0, 1] values, then the "
        "same output converted to 8-bit (share of identical pixels, histogram of differences "
        "in LSB); PSNR vs reference on Y, peak 1; task PSNR vs HR on Y, shave = scale.",
        "",
        *_header(SUMMARY_COLUMNS),
    ]
    lines += [_row(summary_row(pair)) for pair in report.pairs]
    failing = [p for p in report.pairs if p.status in (FAILED, ERROR)]
    if failing:
        lines += ["", "## Failures", ""]
        lines += [f"- **{p.name}**: {'; '.join(p.reasons)}" for p in failing]
    noted = [p for p in report.pairs if p.notes]
    if noted:
        lines += ["", "## Notes", ""]
        lines += [f"- **{p.name}**: {' — '.join(p.notes)}" for p in noted]
    if 16 in report.bit_depths:
        lines += ["", "## 16-bit", "", *_header(("pair", "identical", "LSB histogram"))]
        for pair in report.pairs:
            if pair.figures is not None:
                q16 = pair.figures.quant(16)
                lines.append(_row((pair.name, fmt_share(q16), fmt_histogram(q16, 8))))
    lines += ["", "## Artifact chain", ""]
    if report.artifacts:
        lines += _header(("artifact", "kind", "ok", "detail"))
        lines += [
            _row((f"`{portable_path(a.artifact)}`", a.kind, "yes" if a.passed else "**no**", a.detail))
            for a in report.artifacts
        ]
    else:
        lines.append("No ONNX file or engine was used or given.")
    lines += ["", "## Per image", ""]
    lines += _header(
        ("pair", "image", "output", "max abs", "p99 abs", "8-bit identical", "PSNR vs ref",
         "task PSNR ref / cand")
    )  # fmt: skip
    for pair in report.pairs:
        for image in pair.images:
            task = "-"
            if image.hr_psnr_reference is not None:
                task = f"{fmt_db(image.hr_psnr_reference)} / {fmt_db(image.hr_psnr_candidate)}"
            lines.append(
                _row((
                    pair.name, image.name, f"{image.shape[1]}x{image.shape[0]}",
                    f"{image.max_abs:.3g}", f"{image.p99_abs:.3g}", fmt_share(image.quantized[0]),
                    fmt_db(image.psnr_db), task,
                ))
            )  # fmt: skip
    lines += ["", "## Tolerances", ""]
    lines += _header(
        ("class", "max abs", "p99 abs", "mean abs", "8-bit identical ≥", "max LSB", "PSNR ≥",
         "task drop ≤", "why")
    )  # fmt: skip
    for name in TOLERANCE_CLASSES:
        t = report.tolerances.for_class(name)
        lines.append(
            _row((
                name, f"{t.max_abs:g}", f"{t.p99_abs:g}", f"{t.mean_abs:g}",
                f"{t.min_identical_8bit:.1%}", str(t.max_lsb_8bit), f"{t.min_psnr_db:g} dB",
                f"{t.max_task_psnr_drop_db:g} dB", t.why,
            ))
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def heatmap_panels(report: ValidationReport) -> list[tuple[str, NDArray[np.float32]]]:
    """``(title, |diff| in 8-bit LSB)`` of each compared pair's worst image, worst pair
    first; non-finite differences stay NaN (drawn in magenta)."""
    compared = [p for p in report.pairs if p.worst_diff is not None and p.figures is not None]
    # a NaN PSNR sorts first (worst); as a plain key it would leave the order undefined
    compared.sort(
        key=lambda p: (-math.inf if math.isnan(p.figures.psnr_db) else p.figures.psnr_db)
        if p.figures
        else math.inf
    )
    panels: list[tuple[str, NDArray[np.float32]]] = []
    for pair in compared:
        if pair.figures is None or pair.worst_diff is None:
            continue
        psnr = pair.figures.psnr_db
        quality = "identical" if math.isinf(psnr) else f"PSNR {psnr:.2f} dB"
        title = f"{pair.name}: {pair.figures.worst_image} ({quality})"
        panels.append((title, (pair.worst_diff * 255.0).astype(np.float32)))
    return panels


def write_heatmap(report: ValidationReport, path: Path) -> Path | None:
    """The difference heatmap PNG (one panel per compared pair), or None if nothing ran."""
    from vdsr_deploy.parity.plots import difference_heatmap

    panels = heatmap_panels(report)
    if not panels:
        return None
    verdict = "PASSED" if report.passed else "FAILED"
    title = (
        f"vdsr validate ({verdict}): |candidate - {report.reference}| on Y, worst image per pair"
    )
    return difference_heatmap(panels, path, title=title)


def write_reports(report: ValidationReport, folder: Path) -> Path | None:
    """``validate.json``, ``validate.md`` and ``validate-heatmap.png`` in ``folder``
    (created); returns the heatmap's path, or None when no pair ran (no heatmap)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "validate.json").write_text(report.to_json())
    (folder / "validate.md").write_text(render_markdown(report))
    return write_heatmap(report, folder / "validate-heatmap.png")
