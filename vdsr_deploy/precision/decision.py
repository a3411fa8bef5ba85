"""Precision names, and what ``--precision auto`` means on this machine: one home for both.

:func:`cpu_paths` lists the CPU paths this machine supports, fastest first (an ordering
measured in ``benchmarks/cpu.py``, see benchmarks/README.md), from the CPU's feature
flags (``/proc/cpuinfo``), never assumed. :func:`choose_precision` returns the decision as
data with its reason, like :func:`vdsr_deploy.backends.tensorrt.cache.select_engine`: the first CPU path
whose measured quality cost (recorded with its artifact) is within
:data:`MAX_AUTO_COST_DB` at every scale, else FP32; on CUDA, FP16. Nothing here imports a
runtime, so the choice is cheap and reproducible: the same flags, versions and recorded
costs give the same path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field

from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.precision.names import AUTO, MAX_AUTO_COST_DB, check_precision

INT8_AUTO_BLOCKED = (
    "not taken by auto: its measured Set5 x2 cost is at the limit (0.050 dB, recipe 3; see docs/cpu.md); "
    "ask with --precision int8"
)
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


# ----------------------------------------------------------------------------------------
# What the CPU can do


@dataclass(frozen=True)
class CpuPath:
    """One CPU path: ``precision`` on ``backend``, and why it is in the list at its place."""

    precision: str
    backend: str
    why: str
    auto_blocked: str = ""
    """Why ``auto`` may not take this path whatever its cost ('' when it may)."""


def cpu_paths(flags: frozenset[str]) -> tuple[CpuPath, ...]:
    """The CPU paths ``flags`` support, fastest first; FP32 (the reference) is always last.

    Ordering, from ``benchmarks/cpu.py`` (ratios to ONNX Runtime FP32 in one run; the
    measured figures are in benchmarks/README.md, not here): INT8 QDQ on ONNX Runtime needs
    VNNI (avx512_vnni, avx_vnni or amx_int8) and was the fastest where measured; it also
    starts without importing PyTorch. bf16 channels-last on PyTorch comes next where the CPU
    has bf16 hardware (avx512_bf16 or amx_bf16); without it bf16 is emulated and slower than
    FP32, so it is never offered.

    INT8 is listed but blocked for ``auto``. Its calibration includes full-contrast edges
    (:func:`vdsr_deploy.export.calibration.contrast_guard_tiles`) so that text and line art are not
    clipped (it passes ``vdsr validate``), and that costs photos more: with the shipped
    weights its measured Set5 x2 cost was over :data:`MAX_AUTO_COST_DB` with recipe 2 and is
    at it with recipe 3 (0.050 dB, no margin) although the held-out tiles (what ``auto``
    reads) stay well under it (figures: docs/cpu.md). It stays one flag away
    (``--precision int8``).
    """
    vnni = sorted(flags & VNNI_FLAGS)
    bf16 = sorted(flags & BF16_FLAGS)
    paths: list[CpuPath] = []
    if vnni:
        paths.append(
            CpuPath(
                "int8",
                "onnxruntime",
                f"static INT8 QDQ on ONNX Runtime ({'/'.join(vnni)})",
                auto_blocked=INT8_AUTO_BLOCKED,
            )
        )
    if bf16:
        paths.append(CpuPath("bf16", "torch", f"bf16 channels-last on PyTorch ({'/'.join(bf16)})"))
    paths.append(CpuPath("fp32", "onnxruntime", "the FP32 reference on ONNX Runtime"))
    return tuple(paths)


def paths_not_offered(flags: frozenset[str]) -> tuple[str, ...]:
    """The faster paths :func:`cpu_paths` leaves out on a CPU with ``flags``, each with why,
    so that a decision never claims there is no faster path when one was only not measured
    here (INT8 without VNNI) or is known to be slower (bf16 without bf16 hardware)."""
    left_out: list[str] = []
    if not flags & VNNI_FLAGS:
        left_out.append(
            f"int8 (not tried: no {'/'.join(sorted(VNNI_FLAGS))} here, and auto never takes it for its "
            "quality cost; ask with --precision int8, time it with vdsr bench --cpu-paths)"
        )
    if not flags & BF16_FLAGS:
        left_out.append(f"bf16 ({EMULATED_BF16})")
    return tuple(left_out)


EMULATED_BF16 = f"no {'/'.join(sorted(BF16_FLAGS))} here: bf16 is emulated, slower than fp32"


def precision_warning(precision: str, flags: frozenset[str]) -> str:
    """A warning to give before a run in ``precision`` on a CPU with ``flags`` starts ('' when
    none): bf16 without bf16 hardware is emulated, many times slower than fp32 (which is
    also the exact reference), so the faster choice is named."""
    if precision == "bf16" and not flags & BF16_FLAGS:
        return f"--precision bf16: {EMULATED_BF16}; --precision fp32 (or auto) is faster and is the reference"
    return ""


# ----------------------------------------------------------------------------------------
# The decision


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in, on which backend, and why; ``passed_over`` lists the faster
    paths that were not taken, each with its reason."""

    precision: str
    backend: str
    reason: str
    requested: str = AUTO
    passed_over: tuple[str, ...] = field(default_factory=tuple)
    warning: str = ""
    """Said before the run starts ('' when nothing): e.g. bf16 emulated on this CPU."""

    def describe(self) -> str:
        """The decision on one line (reports)."""
        return "; ".join(self.describe_lines())

    def describe_lines(self) -> list[str]:
        """The decision for a terminal: what was chosen and why, then one line per faster
        path passed over, with what was measured or why it was not tried."""
        head = f"precision {self.precision} on {self.backend}"
        if self.requested != AUTO:
            return [f"{head} (as asked)"]
        return [f"{head}, auto: {self.reason}", *(f"passed over: {path}" for path in self.passed_over)]

    def to_dict(self) -> dict[str, object]:
        return {
            "precision": self.precision,
            "backend": self.backend,
            "reason": self.reason,
            "requested": self.requested,
            "passed_over": list(self.passed_over),
            "warning": self.warning,
        }


QualityCost = Callable[[CpuPath], Mapping[str, float] | str]
"""Measured task-PSNR change per scale (``{"x2": -0.01, ...}``, dB) of a path, read from
its artifact (building or measuring it on first use), or a string saying why it has none."""


def worst_cost(cost: Mapping[str, float]) -> float:
    """The largest PSNR loss (dB, >= 0) over the scales of a recorded cost; NaN when any
    scale's cost is NaN (a plain ``max`` would keep or drop it depending on the order)."""
    losses = [-float(value) for value in cost.values()]
    if any(math.isnan(loss) for loss in losses):
        return math.nan
    return max(losses, default=0.0)


def choose_cpu_path(
    paths: Iterable[CpuPath],
    quality_cost: QualityCost,
    *,
    max_cost_db: float = MAX_AUTO_COST_DB,
    not_offered: Iterable[str] = (),
) -> PrecisionChoice:
    """The first of ``paths`` (fastest first) whose recorded cost is within
    ``max_cost_db`` at every scale; FP32 needs no check (it is the reference).
    ``not_offered``: the faster paths left out before, with why (:func:`paths_not_offered`):
    they are listed as passed over, so an FP32 choice always says what it was chosen over."""
    passed_over: list[str] = list(not_offered)
    for path in paths:
        if path.precision == "fp32":
            reason = "the reference (exact)" + ("" if passed_over else "; no other path to consider")
            return PrecisionChoice("fp32", path.backend, reason, AUTO, tuple(passed_over))
        if path.auto_blocked:
            passed_over.append(f"{path.precision} ({path.auto_blocked})")
            continue
        cost = quality_cost(path)
        if isinstance(cost, str):
            passed_over.append(f"{path.precision} ({cost})")
            continue
        worst = worst_cost(cost)
        measured = ", ".join(f"{scale} {value:+.3f}" for scale, value in sorted(cost.items()))
        if not worst <= max_cost_db:  # NaN: not measured as within the limit
            passed_over.append(f"{path.precision} (costs {worst:.3f} dB > {max_cost_db:g}: {measured})")
            continue
        reason = f"{path.why}, measured cost {measured} dB (limit {max_cost_db:g})"
        return PrecisionChoice(path.precision, path.backend, reason, AUTO, tuple(passed_over))
    return PrecisionChoice("fp32", "onnxruntime", "no path passed", AUTO, tuple(passed_over))


def choose_precision(
    requested: str,
    *,
    backend: str,
    cuda: bool,
    flags: frozenset[str] | None = None,
    quality_cost: QualityCost | None = None,
    supported: Collection[str] | None = None,
) -> PrecisionChoice:
    """Resolve ``requested`` for a run on ``backend`` (``auto`` or a concrete one).

    A concrete precision is returned as asked. ``auto``: FP16 on CUDA (its parity is proven
    by ``vdsr validate``); on the CPU, :func:`choose_cpu_path` over :func:`cpu_paths`
    (restricted to ``supported``, the named ``backend``'s precisions from its descriptor).
    """
    check_precision(requested)
    if requested != AUTO:
        warning = "" if cuda else precision_warning(requested, cpu_flags() if flags is None else flags)
        return PrecisionChoice(requested, backend, "as asked", requested, warning=warning)
    if cuda:
        return PrecisionChoice("fp16", backend, "CUDA device: FP16 (parity proven by vdsr validate)", AUTO)
    flags = cpu_flags() if flags is None else flags
    paths = cpu_paths(flags)
    not_offered = paths_not_offered(flags)
    if backend != AUTO and supported is not None:
        not_offered += tuple(
            f"{p.precision} (not run by --backend {backend})" for p in paths if p.precision not in supported
        )
        paths = tuple(
            CpuPath(p.precision, backend, p.why, p.auto_blocked) for p in paths if p.precision in supported
        )
    if quality_cost is None:
        not_offered += tuple(
            f"{p.precision} (its quality cost is not measured here)" for p in paths if p.precision != "fp32"
        )
        paths = tuple(p for p in paths if p.precision == "fp32") or (
            CpuPath("fp32", backend if backend != AUTO else "onnxruntime", "the reference"),
        )
        return choose_cpu_path(paths, lambda _: "not measured", not_offered=not_offered)
    return choose_cpu_path(paths, quality_cost, not_offered=not_offered)
