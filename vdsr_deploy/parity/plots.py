"""PNG figures for reports: parity difference heatmaps and benchmark throughput bars.

matplotlib is imported inside each function (Agg backend, no display needed), so importing
this module costs nothing; install it with ``pip install 'vdsr-deploy[plot]'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import BackendUnavailableError, InvalidInputError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:
        raise BackendUnavailableError(
            "plots need matplotlib: pip install 'vdsr-deploy[plot]'"
        ) from error
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


THIN_RATIO = 8  # a panel longer than this many times its width is stretched to be readable


def panel_aspect(shape: tuple[int, ...]) -> str:
    """``"equal"`` (square pixels) for ordinary images; ``"auto"`` (fill the panel) for thin
    ones such as a 2x150 edge case, which square pixels would draw as a sliver."""
    height, width = int(shape[0]), int(shape[1])
    return "auto" if max(height, width) > THIN_RATIO * max(1, min(height, width)) else "equal"


def difference_heatmap(
    panels: Sequence[tuple[str, NDArray[np.floating]]], path: Path, *, title: str = ""
) -> Path:
    """One panel per ``(title, |difference| in 8-bit LSB)``; non-finite pixels drawn in magenta.
    Each panel has its own colour scale (from 0 to its maximum)."""
    if not panels:
        raise InvalidInputError("expected at least one difference map to draw")
    plt = _pyplot()
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.4 * rows), squeeze=False)
    for axis in axes.ravel()[len(panels) :]:
        axis.axis("off")
    for axis, (name, diff) in zip(axes.ravel(), panels, strict=False):
        data = np.asarray(diff, dtype=np.float64)
        finite = np.isfinite(data)
        peak = float(data[finite].max()) if finite.any() else 0.0
        cmap = plt.get_cmap("inferno").with_extremes(bad="magenta")
        shown = np.ma.masked_invalid(data)
        aspect = panel_aspect(data.shape)
        image = axis.imshow(
            shown,
            cmap=cmap,
            vmin=0.0,
            vmax=peak if peak > 0 else 1.0,
            interpolation="nearest",
            aspect=aspect,
        )
        stretched = f"\n(stretched: {data.shape[1]}x{data.shape[0]} px)" if aspect == "auto" else ""
        axis.set_title(name + stretched, fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
        bar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
        bar.set_label("|diff| (8-bit LSB)", fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target


def throughput_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: Path,
    *,
    ylabel: str = "megapixels / s",
    title: str = "",
) -> Path:
    """Grouped bars: one group per label, one bar per series (e.g. runtime, pipeline)."""
    if not labels or not series:
        raise InvalidInputError("expected at least one setting and one series to plot")
    plt = _pyplot()
    width = 0.8 / len(series)
    positions = np.arange(len(labels))
    figure, axis = plt.subplots(figsize=(max(6.0, 1.1 * len(labels) + 2), 4.5))
    for index, (name, values) in enumerate(series.items()):
        bars = axis.bar(
            positions + (index - (len(series) - 1) / 2) * width, values, width, label=name
        )
        axis.bar_label(bars, fmt="%.3g", fontsize=7)
    axis.set_xticks(positions)
    axis.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
