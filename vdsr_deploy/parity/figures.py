"""Parity figures and the verdict: per-image and per-pair error figures of a candidate's
output against the reference's, and :func:`judge` (reasons a pair fails its tolerance)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.imageio import quantize
from vdsr_deploy.parity.images import F32, F64, ValidationImage
from vdsr_deploy.parity.tolerances import Tolerance

# ----------------------------------------------------------------------------------------
# Figures


@dataclass(frozen=True)
class QuantFigures:
    """Output converted to one bit depth: ``histogram`` maps the difference in LSB to its
    pixel count (0 = identical)."""

    bit_depth: int
    pixels: int
    histogram: tuple[tuple[int, int], ...]

    @property
    def identical(self) -> int:
        return dict(self.histogram).get(0, 0)

    @property
    def identical_fraction(self) -> float:
        return self.identical / self.pixels if self.pixels else 1.0

    @property
    def max_lsb(self) -> int:
        return max((lsb for lsb, count in self.histogram if count), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_fields(self, "bit_depth pixels identical identical_fraction max_lsb"),
            "histogram": {str(lsb): count for lsb, count in self.histogram},
        }


def merge_quant(parts: Iterable[QuantFigures]) -> QuantFigures:
    """The sum of several images' :class:`QuantFigures` at one bit depth."""
    collected = list(parts)
    if not collected:
        raise InvalidInputError("expected at least one QuantFigures to merge")
    counts: dict[int, int] = {}
    for part in collected:
        if part.bit_depth != collected[0].bit_depth:
            raise InvalidInputError("cannot merge figures of different bit depths")
        for lsb, count in part.histogram:
            counts[lsb] = counts.get(lsb, 0) + count
    return QuantFigures(
        collected[0].bit_depth, sum(p.pixels for p in collected), tuple(sorted(counts.items()))
    )


@dataclass(frozen=True)
class ImageFigures:
    """One image of one pair (see the module docstring for definitions)."""

    name: str
    kind: str
    shape: tuple[int, int]
    max_abs: float
    mean_abs: float
    p99_abs: float
    nonfinite: int
    psnr_db: float
    quantized: tuple[QuantFigures, ...]
    hr_psnr_reference: float | None = None
    hr_psnr_candidate: float | None = None

    @property
    def hr_psnr_delta(self) -> float | None:
        """Candidate minus reference task PSNR (dB); negative = candidate worse."""
        if self.hr_psnr_reference is None or self.hr_psnr_candidate is None:
            return None
        return self.hr_psnr_candidate - self.hr_psnr_reference

    def to_dict(self) -> dict[str, Any]:
        return {
            **_fields(self, "name kind"),
            "shape": list(self.shape),
            **_fields(self, "max_abs mean_abs p99_abs nonfinite psnr_db"),
            "quantized": [q.to_dict() for q in self.quantized],
            **_fields(self, "hr_psnr_reference hr_psnr_candidate hr_psnr_delta"),
        }


@dataclass(frozen=True)
class PairFigures:
    """All images of one pair together: float errors over every finite pixel, 8/16-bit
    figures summed, PSNR of the worst image, task PSNR deltas (mean and worst)."""

    pixels: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    nonfinite: int
    psnr_db: float
    quantized: tuple[QuantFigures, ...]
    worst_image: str
    hr_psnr_delta_mean: float | None = None
    hr_psnr_delta_worst: float | None = None

    def quant(self, bit_depth: int) -> QuantFigures | None:
        return next((q for q in self.quantized if q.bit_depth == bit_depth), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_fields(self, "pixels max_abs mean_abs p99_abs nonfinite psnr_db"),
            "quantized": [q.to_dict() for q in self.quantized],
            **_fields(self, "worst_image hr_psnr_delta_mean hr_psnr_delta_worst"),
        }


def _fields(record: object, names: str) -> dict[str, Any]:
    """``{name: record.name}`` for each space-separated name, floats JSON-safe (:func:`_num`)."""
    return {name: _num(getattr(record, name)) for name in names.split()}


def _num(value: Any) -> Any:
    """JSON-safe number: infinite PSNR (identical outputs) becomes the string ``"inf"``, NaN
    ``"nan"``; anything but a float is returned as it is."""
    if not isinstance(value, float):
        return value
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if math.isnan(value):
        return "nan"
    return value


PASSED, FAILED, SKIPPED, ERROR = "passed", "failed", "skipped", "error"


@dataclass(frozen=True)
class PairResult:
    """One candidate against the reference. ``status``: passed, failed, skipped (the runtime
    is not available here: ``reasons`` says why) or error (it failed to run)."""

    name: str
    candidate: str
    reference: str
    tolerance_class: str
    tolerance: Tolerance
    status: str
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    figures: PairFigures | None = None
    images: tuple[ImageFigures, ...] = ()
    seconds: float = 0.0
    worst_diff: F32 | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status in (PASSED, SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return {
            **_fields(self, "name candidate reference status"),
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "tolerance_class": self.tolerance_class,
            "tolerance": self.tolerance.to_dict(),
            "figures": self.figures.to_dict() if self.figures else None,
            "images": [i.to_dict() for i in self.images],
            "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------------------
# Computing the figures


@dataclass(frozen=True)
class RunOutput:
    """One image through one runner: the network's output Y plane (not clipped)."""

    y: F32 = field(repr=False)


def _finite(y: NDArray[np.floating]) -> F32:
    """NaN -> 0, +Inf -> 1, -Inf -> 0 (for 8/16-bit conversion and PSNR only)."""
    result: F32 = np.nan_to_num(np.asarray(y, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return result


def quant_figures(
    reference: NDArray[np.floating], candidate: NDArray[np.floating], bit_depth: int
) -> QuantFigures:
    """8/16-bit comparison of two same-shape planes or ``(H, W, C)`` images in [0, 1] (see
    :class:`QuantFigures`; for several channels a pixel counts its largest difference)."""
    a = quantize(reference, bit_depth).astype(np.int64)
    b = quantize(candidate, bit_depth).astype(np.int64)
    lsb = np.abs(a - b).max(axis=2) if a.ndim == 3 else np.abs(a - b)
    values, counts = np.unique(lsb, return_counts=True)
    histogram = tuple((int(v), int(c)) for v, c in zip(values, counts, strict=True))
    return QuantFigures(bit_depth, int(lsb.size), histogram)


def psnr_vs_reference(reference: NDArray[np.floating], candidate: NDArray[np.floating]) -> float:
    """PSNR (peak 1) of the candidate's Y against the reference's Y, both clipped to [0, 1]."""
    return protocol.psnr(
        np.clip(_finite(candidate), 0, 1), np.clip(_finite(reference), 0, 1), peak=1.0
    )


def task_psnr(y: NDArray[np.floating], hr_y: F64, scale: int) -> float:
    """The paper's PSNR (:func:`vdsr_deploy.protocol.task_psnr`) of a candidate's Y, its
    non-finite values counted as :func:`_finite` says."""
    return protocol.task_psnr(_finite(y), hr_y, scale)


def image_figures(
    image: ValidationImage, reference: RunOutput, candidate: RunOutput, bit_depths: Sequence[int]
) -> tuple[ImageFigures, F64]:
    """Figures of one image, and the absolute Y difference (NaN where not finite)."""
    ref_y = reference.y.astype(np.float64)
    cand_y = candidate.y.astype(np.float64)
    finite = np.isfinite(ref_y) & np.isfinite(cand_y)
    diff = np.where(finite, np.abs(cand_y - ref_y), np.nan)
    valid = diff[finite]
    figures = ImageFigures(
        name=image.name,
        kind=image.kind,
        shape=(int(ref_y.shape[0]), int(ref_y.shape[1])),
        max_abs=float(valid.max()) if valid.size else math.nan,
        mean_abs=float(valid.mean()) if valid.size else math.nan,
        p99_abs=float(np.percentile(valid, 99)) if valid.size else math.nan,
        nonfinite=int((~np.isfinite(cand_y)).sum()),
        psnr_db=psnr_vs_reference(reference.y, candidate.y),
        quantized=tuple(
            quant_figures(_finite(reference.y), _finite(candidate.y), b) for b in bit_depths
        ),
        hr_psnr_reference=task_psnr(reference.y, image.hr_y, image.hr_scale or 0)
        if image.hr_y is not None
        else None,
        hr_psnr_candidate=task_psnr(candidate.y, image.hr_y, image.hr_scale or 0)
        if image.hr_y is not None
        else None,
    )
    return figures, diff


def pair_figures(images: Sequence[ImageFigures], diffs: Sequence[F64]) -> PairFigures:
    """Aggregate per-image figures; ``diffs`` are the per-image absolute Y differences."""
    if not images:
        raise InvalidInputError("expected at least one image to aggregate")
    valid = np.concatenate([d[np.isfinite(d)].ravel() for d in diffs])
    worst = min(images, key=lambda i: (_nan_low(i.psnr_db), -_nan_low(i.max_abs)))
    deltas = [i.hr_psnr_delta for i in images if i.hr_psnr_delta is not None]
    return PairFigures(
        pixels=int(sum(d.size for d in diffs)),
        max_abs=float(valid.max()) if valid.size else math.nan,
        mean_abs=float(valid.mean()) if valid.size else math.nan,
        p99_abs=float(np.percentile(valid, 99)) if valid.size else math.nan,
        nonfinite=sum(i.nonfinite for i in images),
        psnr_db=_nan_min(i.psnr_db for i in images),
        quantized=tuple(
            merge_quant(i.quantized[k] for i in images) for k in range(len(images[0].quantized))
        ),
        worst_image=worst.name,
        hr_psnr_delta_mean=float(np.mean(deltas)) if deltas else None,
        hr_psnr_delta_worst=_nan_min(deltas) if deltas else None,
    )


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _nan_min(values: Iterable[float]) -> float:
    """The smallest value, NaN if any is NaN (Python's ``min`` keeps or drops a NaN
    depending on where it stands)."""
    collected = [float(v) for v in values]
    return math.nan if any(math.isnan(v) for v in collected) else min(collected)


def judge(figures: PairFigures, tolerance: Tolerance) -> tuple[str, ...]:
    """Every way ``figures`` break ``tolerance`` (empty: passed)."""
    reasons: list[str] = []
    if figures.nonfinite > tolerance.max_nonfinite:
        reasons.append(
            f"{figures.nonfinite} NaN/Inf output values (allowed {tolerance.max_nonfinite})"
        )
    for name, limit in (
        ("max", tolerance.max_abs),
        ("p99", tolerance.p99_abs),
        ("mean", tolerance.mean_abs),
    ):
        value = getattr(figures, f"{name}_abs")
        if math.isnan(value) or value > limit:
            reasons.append(f"{name} |diff| {value:.3g} > {limit:.3g}")
    q8 = figures.quant(8)
    if q8 is not None:
        if q8.identical_fraction < tolerance.min_identical_8bit:
            reasons.append(
                f"{q8.identical_fraction:.4%} of 8-bit pixels identical "
                f"< {tolerance.min_identical_8bit:.2%}"
            )
        if q8.max_lsb > tolerance.max_lsb_8bit:
            reasons.append(f"8-bit difference up to {q8.max_lsb} LSB > {tolerance.max_lsb_8bit}")
    if not figures.psnr_db >= tolerance.min_psnr_db:
        reasons.append(f"PSNR vs reference {figures.psnr_db:.2f} dB < {tolerance.min_psnr_db:g} dB")
    worst = figures.hr_psnr_delta_worst
    if worst is not None and not -worst <= tolerance.max_task_psnr_drop_db:  # NaN fails
        reasons.append(
            f"task PSNR {-worst:.4f} dB below the reference's "
            f"(allowed {tolerance.max_task_psnr_drop_db:g})"
        )
    return tuple(reasons)


def compare_outputs(
    name: str,
    images: Sequence[ValidationImage],
    reference: Sequence[RunOutput],
    candidate: Sequence[RunOutput | None],
    tolerance: Tolerance,
    *,
    bit_depths: Sequence[int] = (8,),
    tolerance_class: str = "fp32",
    labels: tuple[str, str] = ("reference", "candidate"),
    notes: Sequence[str] = (),
    seconds: float = 0.0,
) -> PairResult:
    """Judge ``candidate`` outputs against ``reference`` outputs image by image (``None``:
    the image was left out of this pair, e.g. too large for whole-image inference)."""
    figures: list[ImageFigures] = []
    diffs: list[F64] = []
    for image, ref, cand in zip(images, reference, candidate, strict=True):
        if cand is None:
            continue
        item, diff = image_figures(image, ref, cand, bit_depths)
        figures.append(item)
        diffs.append(diff)
    if not figures:
        return PairResult(
            name,
            labels[1],
            labels[0],
            tolerance_class,
            tolerance,
            SKIPPED,
            ("no image to compare",),
            tuple(notes),
            seconds=seconds,
        )
    aggregate = pair_figures(figures, diffs)
    reasons = judge(aggregate, tolerance)
    worst_index = next(i for i, f in enumerate(figures) if f.name == aggregate.worst_image)
    return PairResult(
        name=name,
        candidate=labels[1],
        reference=labels[0],
        tolerance_class=tolerance_class,
        tolerance=tolerance,
        status=FAILED if reasons else PASSED,
        reasons=reasons,
        notes=tuple(notes),
        figures=aggregate,
        images=tuple(figures),
        seconds=seconds,
        worst_diff=diffs[worst_index].astype(np.float32),
    )
