"""Precision names, and what ``--precision auto`` means on this machine: one home for both.

:func:`cpu_paths` lists the CPU paths this CPU runs natively, from its feature flags
(``/proc/cpuinfo``), never assumed: bf16 only where the CPU has bf16 hardware (emulated
bf16 is many times slower than FP32, so it is never a candidate). :func:`choose_precision`
returns the decision as data with its reason, like
:func:`vdsr_deploy.backends.tensorrt.cache.select_engine`:

- a path is *eligible* when its measured quality cost (recorded with its artifact) is within
  :data:`MAX_AUTO_COST_DB` at every scale (FP32 needs no check: it is the reference);
- with a speed measurement (``speeds``: the runtime layer times each eligible path on this
  machine and caches the table, :mod:`vdsr_deploy.runtime.speed`), the fastest eligible path
  wins, and the choice says its measured ratio to the others;
- without one, the first eligible path in :func:`cpu_paths`' order (fastest first as measured
  in benchmarks/, see docs/cpu.md), skipping the paths only a measurement may take.

On CUDA, FP16. Nothing here imports a runtime: the same flags, records and measurement give
the same path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.precision.names import AUTO, MAX_AUTO_COST_DB, check_precision

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
EMULATED_BF16 = f"no {'/'.join(sorted(BF16_FLAGS))} here: bf16 is emulated, slower than fp32"
REFERENCE_KEY = "onnxruntime-fp32"
"""The path speed ratios are given against (:attr:`CpuPath.key`): ONNX Runtime FP32."""


# ----------------------------------------------------------------------------------------
# What the CPU can do


@dataclass(frozen=True)
class CpuPath:
    """One CPU path: ``precision`` on ``backend``, and why it is in the list at its place.

    ``auto_blocked``: why ``auto`` may not take it whatever its cost and speed ('' when it
    may). ``needs_measuring``: why only a speed measurement on this machine may take it
    (e.g. INT8 without VNNI: faster on some such CPUs, slower on others); '' when the
    benchmarks' order may. ``fallback``: taken only when no other FP32 path can run (PyTorch
    FP32 on the CPU, slower than ONNX Runtime's everywhere measured), so never timed."""

    precision: str
    backend: str
    why: str
    auto_blocked: str = ""
    needs_measuring: str = ""
    fallback: bool = False

    @property
    def key(self) -> str:
        """``backend-precision``: the name of this path in speed tables."""
        return f"{self.backend}-{self.precision}"

    @property
    def label(self) -> str:
        return f"{self.precision} on {self.backend}"


def cpu_paths(flags: frozenset[str], *, int8_blocked: str = "") -> tuple[CpuPath, ...]:
    """The CPU paths ``flags`` run natively, fastest first by the benchmarks
    (docs/cpu.md), the FP32 paths last (ONNX Runtime's, the reference, first among them).

    INT8 (static QDQ, :mod:`vdsr_deploy.export.int8`) on ONNX Runtime and OpenVINO: with
    VNNI (avx512_vnni, avx_vnni or amx_int8) it was the fastest path measured; without VNNI
    it was still faster than FP32 on AVX2 machines, but that is for a measurement to say.
    bf16 (OpenVINO, PyTorch channels-last) only where the CPU has bf16 hardware
    (avx512_bf16 or amx_bf16). ``int8_blocked``: why auto may not take INT8 at all (its
    recipe's measured Set5/Set14 cost; '' when it may)."""
    vnni = sorted(flags & VNNI_FLAGS)
    bf16 = sorted(flags & BF16_FLAGS)
    int8_why = f"static INT8 QDQ ({'/'.join(vnni)})" if vnni else "static INT8 QDQ (no VNNI: u8 x s8 on AVX2)"
    int8_measure = "" if vnni else "taken by auto only when measured faster on this CPU (no VNNI here)"
    only_measured = "taken by auto only when measured"
    paths = [
        CpuPath("int8", "openvino", f"{int8_why} on OpenVINO", int8_blocked, only_measured),
        CpuPath("int8", "onnxruntime", f"{int8_why} on ONNX Runtime", int8_blocked, int8_measure),
    ]
    if bf16:
        hardware = "/".join(bf16)
        paths += [
            CpuPath("bf16", "openvino", f"bf16 on OpenVINO ({hardware})", needs_measuring=only_measured),
            CpuPath("bf16", "torch", f"bf16 channels-last on PyTorch ({hardware})"),
        ]
    paths += [
        CpuPath("fp32", "onnxruntime", "the FP32 reference on ONNX Runtime"),
        CpuPath("fp32", "openvino", "FP32 on OpenVINO", needs_measuring=only_measured),
        CpuPath("fp32", "torch", "FP32 on PyTorch", fallback=True),
    ]
    return tuple(paths)


def paths_not_offered(flags: frozenset[str]) -> tuple[str, ...]:
    """The paths :func:`cpu_paths` leaves out on a CPU with ``flags``, each with why, so that
    a decision never claims there is no faster path when one is only known to be slower
    here (bf16 without bf16 hardware)."""
    return () if flags & BF16_FLAGS else (f"bf16 ({EMULATED_BF16})",)


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
class SpeedTable:
    """Throughput of CPU paths measured on this machine (``mpx_per_s`` by
    :attr:`CpuPath.key`, output megapixels per second on one representative tile) and how the
    table was obtained (``note``: measured now, in how long, or read from where)."""

    mpx_per_s: Mapping[str, float]
    note: str


Speeds = Callable[[Sequence[CpuPath]], SpeedTable | str]
"""Measures (or reads the cached measurement of) the given paths; a string says why no
measurement could be had."""


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in, on which backend, and why; ``passed_over`` lists the other
    paths that were not taken, each with its reason (measured slower, over the quality
    limit, not installed, emulated...); ``measurement``: where the speed figures come from
    ('' when the choice did not measure)."""

    precision: str
    backend: str
    reason: str
    requested: str = AUTO
    passed_over: tuple[str, ...] = field(default_factory=tuple)
    warning: str = ""
    """Said before the run starts ('' when nothing): e.g. bf16 emulated on this CPU."""
    measurement: str = ""

    def describe(self) -> str:
        """The decision on one line (reports)."""
        return "; ".join(self.describe_lines())

    def describe_lines(self) -> list[str]:
        """The decision for a terminal: what was chosen and why, where its speed figures
        come from, then one line per path passed over with what was measured or why it was
        not tried."""
        head = f"precision {self.precision} on {self.backend}"
        if self.requested != AUTO:
            return [f"{head} (as asked)"]
        lines = [f"{head}, auto: {self.reason}"]
        if self.measurement:
            lines.append(f"speed: {self.measurement}")
        return [*lines, *(f"passed over: {path}" for path in self.passed_over)]

    def to_dict(self) -> dict[str, object]:
        return {
            "precision": self.precision,
            "backend": self.backend,
            "reason": self.reason,
            "requested": self.requested,
            "passed_over": list(self.passed_over),
            "warning": self.warning,
            "measurement": self.measurement,
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


def _eligible(
    paths: Iterable[CpuPath], quality_cost: QualityCost, max_cost_db: float, measuring: bool, passed_over: list[str]
) -> list[tuple[CpuPath, str]]:
    """The paths auto may take, each with the reason it may; the others go to
    ``passed_over`` with theirs. Not ``measuring``: stops at the first (nothing later is
    built or measured for its cost)."""
    eligible: list[tuple[CpuPath, str]] = []
    for path in paths:
        if path.fallback and any(p.precision == "fp32" for p, _ in eligible):
            continue
        if path.auto_blocked:
            passed_over.append(f"{path.label} ({path.auto_blocked})")
            continue
        if not measuring and path.needs_measuring:
            passed_over.append(f"{path.label} ({path.needs_measuring})")
            continue
        if path.precision == "fp32":
            exact = "the reference (exact)" if path.key == REFERENCE_KEY else f"{path.why} (exact)"
            eligible.append((path, exact))
        else:
            cost = quality_cost(path)
            if isinstance(cost, str):
                passed_over.append(f"{path.label} ({cost})")
                continue
            worst = worst_cost(cost)
            measured = ", ".join(f"{scale} {value:+.3f}" for scale, value in sorted(cost.items()))
            if not worst <= max_cost_db:  # NaN: not measured as within the limit
                passed_over.append(f"{path.label} (costs {worst:.3f} dB > {max_cost_db:g}: {measured})")
                continue
            eligible.append((path, f"{path.why}, measured cost {measured} dB (limit {max_cost_db:g})"))
        if not measuring:
            break
    return eligible


def choose_cpu_path(
    paths: Iterable[CpuPath],
    quality_cost: QualityCost,
    *,
    speeds: Speeds | None = None,
    max_cost_db: float = MAX_AUTO_COST_DB,
    not_offered: Iterable[str] = (),
) -> PrecisionChoice:
    """The path auto takes among ``paths`` (fastest first by the benchmarks).

    Eligible paths: FP32, and the others whose recorded cost is within ``max_cost_db`` at
    every scale. With ``speeds``, the fastest eligible path as measured (paths that failed
    to measure are passed over); without, the first eligible one that needs no measurement.
    ``not_offered``: paths left out before, with why (:func:`paths_not_offered`): they are
    listed as passed over, so a choice always says what it was chosen over."""
    passed_over: list[str] = list(not_offered)
    eligible = _eligible(paths, quality_cost, max_cost_db, speeds is not None, passed_over)
    if not eligible:
        return PrecisionChoice("fp32", "onnxruntime", "no path passed", AUTO, tuple(passed_over))
    unmeasured = [(p, r) for p, r in eligible if not p.needs_measuring] or eligible
    if speeds is None or len(eligible) == 1:
        path, reason = eligible[0]
        if path.precision == "fp32" and not passed_over:
            reason += "; no other path to consider"
        return PrecisionChoice(path.precision, path.backend, reason, AUTO, tuple(passed_over))
    table = speeds([p for p, _ in eligible])
    figures = {} if isinstance(table, str) else table.mpx_per_s
    timed = [(p, r) for p, r in eligible if math.isfinite(figures.get(p.key, math.nan)) and figures[p.key] > 0]
    if isinstance(table, str) or not timed:
        path, reason = unmeasured[0]
        why = table if isinstance(table, str) else "no path could be timed"
        return PrecisionChoice(
            path.precision, path.backend, f"{reason} (speed not measured: {why}; the benchmarks' order)", AUTO,
            tuple(passed_over),
        )  # fmt: skip
    timed.sort(key=lambda item: -figures[item[0].key])
    reference = next((p for p, _ in timed if p.key == REFERENCE_KEY), None) or min(
        (p for p, _ in timed), key=lambda p: figures[p.key]
    )
    base = figures[reference.key]
    best, reason = timed[0]
    speed = figures[best.key]
    reason += f"; measured fastest here: {speed / base:.2f}x {reference.label} ({speed:.3f} Mpx/s)"
    passed_over += [
        f"{p.label} (measured {figures[p.key] / base:.2f}x {reference.label})"
        if p != reference
        else f"{p.label} (measured {figures[p.key]:.3f} Mpx/s)"
        for p, _ in timed[1:]
    ]
    timed_keys = {p.key for p, _ in timed}
    passed_over += [f"{p.label} (could not be timed)" for p, _ in eligible if p.key not in timed_keys]
    return PrecisionChoice(best.precision, best.backend, reason, AUTO, tuple(passed_over), measurement=table.note)


def choose_precision(
    requested: str,
    *,
    backend: str,
    cuda: bool,
    flags: frozenset[str] | None = None,
    quality_cost: QualityCost | None = None,
    unavailable: Callable[[CpuPath], str | None] | None = None,
    speeds: Speeds | None = None,
    int8_blocked: str = "",
) -> PrecisionChoice:
    """Resolve ``requested`` for a run on ``backend`` (``auto`` or a named one).

    A concrete precision is returned as asked (with the emulated-bf16 warning). ``auto``:
    FP16 on CUDA (its parity is proven by ``vdsr validate``); on the CPU,
    :func:`choose_cpu_path` over :func:`cpu_paths` (only the named ``backend``'s paths when
    one is named; ``unavailable`` says why a path cannot run here, e.g. its runtime is not
    installed; ``int8_blocked`` why auto may not take INT8 at all). Without
    ``quality_cost`` only FP32 is considered."""
    check_precision(requested)
    if requested != AUTO:
        warning = "" if cuda else precision_warning(requested, cpu_flags() if flags is None else flags)
        return PrecisionChoice(requested, backend, "as asked", requested, warning=warning)
    if cuda:
        return PrecisionChoice("fp16", backend, "CUDA device: FP16 (parity proven by vdsr validate)", AUTO)
    flags = cpu_flags() if flags is None else flags
    paths = cpu_paths(flags, int8_blocked=int8_blocked)
    not_offered = list(paths_not_offered(flags))
    if backend != AUTO:
        own = {p.precision for p in paths if p.backend == backend}
        others = sorted({p.precision for p in paths} - own, key=[p.precision for p in paths].index)
        not_offered += [f"{precision} (not run by --backend {backend})" for precision in others]
        paths = tuple(
            CpuPath(p.precision, p.backend, p.why, p.auto_blocked) if p.precision == "fp32" else p
            for p in paths
            if p.backend == backend
        )  # the named backend's FP32 is its reference: no measurement needed, never a fallback
    if unavailable is not None:
        kept: list[CpuPath] = []
        for path in paths:
            if path.fallback and any(p.precision == "fp32" for p in kept):
                continue  # not needed, so not checked (checking PyTorch imports it)
            reason = unavailable(path)
            if reason is None:
                kept.append(path)
            elif not path.fallback:
                not_offered.append(f"{path.label} ({reason})")
        paths = tuple(kept)
    if quality_cost is None:
        not_offered += [f"{p.label} (its quality cost is not measured here)" for p in paths if p.precision != "fp32"]
        paths = tuple(p for p in paths if p.precision == "fp32")
        return choose_cpu_path(paths, lambda _: "not measured", not_offered=not_offered)
    return choose_cpu_path(paths, quality_cost, speeds=speeds, not_offered=not_offered)
