"""PSNR/SSIM on the standard protocol (modcrop, MATLAB bicubic, Y only, shave = scale).

Runtime-agnostic: the model is any callable mapping a bicubic-upscaled Y image ``(H, W)``
float32 in ``[0, 1]`` to the super-resolved Y image of the same shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.imageio.folders import hr_luma, list_images

UpscaleY = Callable[[NDArray[np.float32]], NDArray[np.float32]]

PAPER_PSNR: dict[str, dict[int, tuple[float, float]]] = {
    "set5": {2: (33.66, 37.53), 3: (30.39, 33.66), 4: (28.42, 31.35)},
    "set14": {2: (30.24, 33.03), 3: (27.55, 29.77), 4: (26.00, 28.01)},
    "b100": {2: (29.56, 31.90), 3: (27.21, 28.82), 4: (25.96, 27.29)},
    "urban100": {2: (26.88, 30.76), 3: (24.46, 27.14), 4: (23.14, 25.18)},
}


@dataclass(frozen=True)
class EvalItem:
    """One HR image at one scale: Y of the cropped HR and the network input, float64 [0, 1]."""

    name: str
    scale: int
    hr_y: NDArray[np.float64]
    bicubic_y: NDArray[np.float64]


@dataclass(frozen=True)
class ImageScore:
    name: str
    scale: int
    bicubic_psnr: float
    bicubic_ssim: float
    psnr: float
    ssim: float


@dataclass(frozen=True)
class ScaleSummary:
    scale: int
    images: int
    bicubic_psnr: float
    bicubic_ssim: float
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    backend: str
    images: tuple[ImageScore, ...]
    summaries: tuple[ScaleSummary, ...]
    ensemble: bool = False

    @property
    def method(self) -> str:
        """The backend label, with the x8 self-ensemble when used."""
        return f"{self.backend} + x8 ensemble" if self.ensemble else self.backend

    def summary(self, scale: int) -> ScaleSummary:
        return {item.scale: item for item in self.summaries}[scale]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "backend": self.backend,
            "ensemble": self.ensemble,
            "images": [asdict(i) for i in self.images],
            "summaries": [asdict(s) for s in self.summaries],
        }


def crop_hr(hr: NDArray[np.float64], scale: int, path: Path) -> NDArray[np.float64]:
    """``hr`` (Y, or ``(H, W, C)``) modcropped to a multiple of ``scale``; an error naming
    ``path`` when what is left is too small to score (the SSIM window after shaving)."""
    cropped = np.asarray(protocol.modcrop(hr, scale), dtype=np.float64)
    if min(cropped.shape[:2]) < 2 * scale + 11:
        raise InvalidInputError(
            f"{path}: {cropped.shape[1]}x{cropped.shape[0]} is too small to evaluate at x{scale}"
        )
    return cropped





def prepare_items(paths: Iterable[Path], scales: Sequence[int]) -> list[EvalItem]:
    """HR Y, modcropped per scale, and its MATLAB bicubic degradation."""
    for scale in scales:
        protocol.check_scale(scale, integer=True)
    items: list[EvalItem] = []
    for path in paths:
        y = hr_luma(path)
        for scale in scales:
            hr = crop_hr(y, scale, path)
            items.append(EvalItem(path.stem, scale, hr, protocol.degrade(hr, scale)))
    return items


def score(
    items: Sequence[EvalItem], upscale_y: UpscaleY, *, dataset: str = "", backend: str = ""
) -> EvalReport:
    """Run ``upscale_y`` on every item; PSNR/SSIM (peak 255 scale, shave = scale) vs HR.

    The output is clipped to [0, 1] and, like the MATLAB evaluation scripts, compared in
    double precision on the 0..255 scale without rounding.
    """
    scores: list[ImageScore] = []
    for item in items:
        sr = np.clip(upscale_y(item.bicubic_y.astype(np.float32)).astype(np.float64), 0.0, 1.0)
        if sr.shape != item.hr_y.shape:
            raise InvalidInputError(
                f"{item.name}: model returned shape {sr.shape}, expected {item.hr_y.shape}"
            )
        hr255, sr255, bic255 = item.hr_y * 255, sr * 255, item.bicubic_y * 255
        s = item.scale
        scores.append(
            ImageScore(
                name=item.name,
                scale=s,
                bicubic_psnr=protocol.psnr(bic255, hr255, border=s, peak=255),
                bicubic_ssim=protocol.ssim(bic255, hr255, border=s, peak=255),
                psnr=protocol.task_psnr(sr, item.hr_y, s),
                ssim=protocol.ssim(sr255, hr255, border=s, peak=255),
            )
        )
    return EvalReport(dataset=dataset, backend=backend, images=tuple(scores), summaries=summarize(scores))


def summarize(scores: Sequence[ImageScore]) -> tuple[ScaleSummary, ...]:
    """The per-scale means of ``scores``, by increasing scale."""
    summaries = []
    for s in sorted({i.scale for i in scores}):
        group = [i for i in scores if i.scale == s]
        summaries.append(
            ScaleSummary(
                scale=s,
                images=len(group),
                bicubic_psnr=_mean(i.bicubic_psnr for i in group),
                bicubic_ssim=_mean(i.bicubic_ssim for i in group),
                psnr=_mean(i.psnr for i in group),
                ssim=_mean(i.ssim for i in group),
            )
        )
    return tuple(summaries)


def _mean(values: Iterable[float]) -> float:
    collected = list(values)
    return math.fsum(collected) / len(collected) if collected else math.nan


def evaluate_folders(
    folders: Sequence[Path],
    scales: Sequence[int],
    spec: Any,
    *,
    tile: int = 0,
    batch: int = 1,
    ensemble: bool = False,
) -> list[EvalReport]:
    """Evaluate the runner described by ``spec`` (a :class:`~vdsr_deploy.runtime.prepare.RunnerSpec`)
    on every folder of HR images; ``ensemble``: with the x8 self-ensemble
    (:mod:`vdsr_deploy.planes.ensemble`)."""
    from vdsr_deploy.planes.ensemble import plane_upscaler
    from vdsr_deploy.planes.tiling import TileConfig
    from vdsr_deploy.runtime.prepare import open_runner

    for scale in scales:  # before any folder is read
        protocol.check_scale(scale, integer=True)
    tiling = TileConfig(tile=tile)
    prepared = [(folder, prepare_items(list_images(folder), scales)) for folder in folders]
    reports: list[EvalReport] = []
    run_plane = plane_upscaler(ensemble)
    with open_runner(spec, tiling=tiling, batch=batch) as runner:

        def run(y: NDArray[np.float32]) -> NDArray[np.float32]:
            return run_plane(y, runner, tiling, batch=batch)

        for folder, items in prepared:
            report = score(items, run, dataset=folder.name, backend=runner.info.label)
            reports.append(replace(report, ensemble=ensemble))
    return reports
