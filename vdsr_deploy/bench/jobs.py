"""Whole jobs side by side: :func:`time_jobs` times :func:`~vdsr_deploy.job.run_job` (decode,
colour, tiling, network, encode, atomic write) on the same input files for several paths
(a runtime spec, a tile and a batch each), repeat by repeat in turn so a shared machine
slows them alike; :func:`cpu_job_paths` lists every CPU path of the registry this machine
runs (with the reason for each left out); :func:`job_ratios` and :func:`job_markdown` give
each path's Mpx/s and its ratio to baselines measured in the same run. The listing, ratios
and table are pure."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsr_deploy.errors import BackendUnavailableError, ConfigError, VdsrError

if TYPE_CHECKING:
    from vdsr_deploy.backends.descriptor import Backend
    from vdsr_deploy.backends.registry import RunnerSpec
    from vdsr_deploy.runner import Runner

ORT_T256 = "onnxruntime-fp32-t256"
"""The label of the ONNX Runtime fp32 tile 256 baseline (the shipped default before ``--tile auto``)."""
EAGER = "pytorch-eager-fp32-nchw-whole"
"""The label of the plain PyTorch eager fp32 whole-image pass (NCHW, what a pytorch-vdsr user runs)."""
DEFAULT_JOB = "default (auto/auto/auto)"
"""The label of the job with every default: ``--backend auto --precision auto --tile auto``."""
TILE_AUTO = -1
"""A :class:`JobPath` tile that :func:`time_jobs` sizes with ``--tile auto`` for the inputs."""
EMULATED_BF16 = "bf16 is emulated on this CPU (no avx512_bf16/amx_bf16): many times slower"


@dataclass(frozen=True)
class JobPath:
    """One way to run the job: ``backend``/``precision`` (``auto`` allowed) on ``device``,
    at ``tile`` (0: whole images, :data:`TILE_AUTO`: sized by ``--tile auto``) and
    ``batch``; ``channels_last`` applies to torch."""

    label: str
    backend: str
    precision: str
    tile: int = TILE_AUTO
    batch: int = 4
    device: str = "cpu"
    channels_last: bool = True

    def __post_init__(self) -> None:
        if not self.label:
            raise ConfigError("expected a label for the job path, got ''")
        if self.tile < TILE_AUTO or self.batch < 1:
            raise ConfigError(f"expected a tile >= 0 (or TILE_AUTO) and a batch >= 1, got {self.tile}, {self.batch}")


@dataclass(frozen=True)
class Skip:
    """A path not timed, and why."""

    label: str
    reason: str


def cpu_job_paths(
    registry: Mapping[str, Backend], flags: frozenset[str], *, bf16_flags: frozenset[str]
) -> tuple[list[JobPath], list[Skip]]:
    """The baselines (:data:`ORT_T256`, :data:`EAGER`), the :data:`DEFAULT_JOB`, then every
    backend x precision of ``registry`` that computes on the CPU at ``--tile auto`` (its
    ``unavailable()`` reason, or bf16 without one of ``bf16_flags`` among the CPU's
    ``flags``, makes a :class:`Skip`). Pure: ``registry`` and ``flags`` are given."""
    paths = [
        JobPath(ORT_T256, "onnxruntime", "fp32", tile=256),
        JobPath(EAGER, "torch", "fp32", tile=0, batch=1, channels_last=False),
        JobPath(DEFAULT_JOB, "auto", "auto"),
    ]
    skips: list[Skip] = []
    for name, backend in registry.items():
        for precision in backend.precisions:
            label = f"{name}-{precision}"
            try:
                where = backend.compute_device("cpu", "cpu")
            except VdsrError as error:
                skips.append(Skip(label, str(error)))
                continue
            reason = backend.unavailable("cpu", precision, "cpu")
            if reason is None and where != "cpu":
                reason = f"computes on {where}, not the CPU"
            if reason is None and precision == "bf16" and not flags & bf16_flags:
                reason = EMULATED_BF16
            if reason is not None:
                skips.append(Skip(label, reason))
                continue
            paths.append(JobPath(f"{label}-tauto", name, precision))
    return paths, skips


@dataclass
class _Case:
    path: JobPath
    spec: RunnerSpec
    tile: int = 0
    runner: Runner | None = None
    seconds: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""


def _spec(path: JobPath, weights: Path | None, engines_dir: Path | None, threads: int) -> RunnerSpec:
    from vdsr_deploy.backends.registry import RunnerSpec, resolved
    from vdsr_deploy.runtime.prepare import resolve_precision

    spec = RunnerSpec(
        backend=path.backend,
        device=path.device,
        precision=path.precision,
        weights=weights,
        engines_dir=engines_dir,
        threads=threads,
        channels_last=path.channels_last,
    )
    if spec.precision == "auto":  # as vdsr upscale resolves it (measured once per machine, cached)
        spec, _ = resolve_precision(spec)
    return resolved(spec)


def _tile(path: JobPath, spec: RunnerSpec, sizes: list[tuple[int, int]], scale: float, halo: int) -> tuple[int, str]:
    if path.tile != TILE_AUTO:
        return path.tile, ""
    from vdsr_deploy.backends.registry import compute_device
    from vdsr_deploy.job.autotile import choose_tile
    from vdsr_deploy.model.weights import load_weights

    _, info = load_weights(spec.weights)
    chosen = choose_tile(sizes, scale=scale, batch=path.batch, halo=halo, device=compute_device(spec),
                         precision=spec.precision, channels=info.channels)  # fmt: skip
    return chosen.tile, chosen.reason


def time_jobs(
    paths: Sequence[JobPath],
    inputs: Sequence[Path],
    *,
    scale: float = 2.0,
    halo: int = 20,
    repeats: int = 3,
    warmup: int = 1,
    weights: Path | None = None,
    engines_dir: Path | None = None,
    threads: int = 0,
    slow_after: float | None = None,
    warm_on: Sequence[Path] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time one job over ``inputs`` per path, ``repeats`` rounds after ``warmup``, the paths
    taking turns. ``warm_on``: small images each path runs one job on first, untimed (the
    runtime's first-call costs without a whole warm-up job). ``slow_after``: a path whose
    warm-up job takes longer than that many times the first path's is left out (skipped,
    with its time) instead of timed. Returns ``{"paths": {label: {...seconds, megapixels,
    tile, runtime...}}, "skipped": {label: reason}}``."""
    from vdsr_deploy.imageio import probe_image
    from vdsr_deploy.job import JobConfig, run_job
    from vdsr_deploy.planes.colour import output_shape
    from vdsr_deploy.planes.pipeline import PipelineConfig
    from vdsr_deploy.planes.tiling import TileConfig, halo_overhead
    from vdsr_deploy.runtime.prepare import open_runner

    emit = on_event or (lambda event: None)
    if not paths or not inputs or repeats < 1 or warmup < 0:
        raise ConfigError(f"expected paths, inputs, repeats >= 1 and warmup >= 0, got {len(paths)}, "
                          f"{len(inputs)}, {repeats}, {warmup}")  # fmt: skip
    sizes = [(h.height, h.width) for h in (probe_image(p) for p in inputs)]
    outputs = [output_shape(h, w, scale) for h, w in sizes]
    megapixels = sum(h * w for h, w in outputs) / 1e6
    skipped: dict[str, str] = {}
    cases: list[_Case] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vdsr-bench-jobs-")))
        for path in paths:
            try:
                spec = _spec(path, weights, engines_dir, threads)
                tile, note = _tile(path, spec, sizes, scale, halo)
                tiling = TileConfig(tile=tile, halo=halo)
                runner = stack.enter_context(open_runner(spec, tiling=tiling, batch=path.batch))
            except BackendUnavailableError as error:
                skipped[path.label] = str(error)
                emit({"event": "skipped", "path": path.label, "reason": str(error)})
                continue
            cases.append(_Case(path, spec, tile, runner, note=note))

        def run(case: _Case, files: Sequence[Path] = inputs) -> float:
            assert case.runner is not None
            config = JobConfig(
                inputs=tuple(str(p) for p in files),
                output=folder / f"out{cases.index(case)}",
                pipeline=PipelineConfig(
                    scale=scale, tiling=TileConfig(tile=case.tile, halo=halo), batch=case.path.batch
                ),
                overwrite=True,
            )
            began = time.perf_counter()
            summary = run_job(config, case.runner)
            seconds = time.perf_counter() - began
            if not summary.ok:
                raise VdsrError(f"the job failed: {summary.to_dict()['failed']}")
            return seconds

        first: float | None = None
        for case in cases:
            if warm_on:
                try:
                    run(case, warm_on)
                except VdsrError as error:
                    case.error = str(error)
            for _ in range(warmup if not case.error else 0):
                try:
                    seconds = run(case)
                except VdsrError as error:
                    case.error = str(error)
                    break
                emit({"event": "warmup", "path": case.path.label, "seconds": round(seconds, 2)})
                first = seconds if first is None else first
                if slow_after is not None and seconds > slow_after * first:
                    case.error = f"slow: its warm-up job took {seconds:.1f} s, over {slow_after:g}x the first path's"
        for round_index in range(repeats):
            for case in cases:
                if case.error:
                    continue
                try:
                    case.seconds.append(run(case))
                except VdsrError as error:
                    case.error = str(error)
                    continue
                emit({"event": "repeat", "path": case.path.label, "round": round_index + 1,
                      "seconds": round(case.seconds[-1], 2)})  # fmt: skip
    results: dict[str, Any] = {}
    for case in cases:
        if case.error:
            skipped[case.path.label] = case.error
            continue
        best = min(case.seconds)
        results[case.path.label] = {
            "backend": case.spec.backend,
            "precision": case.spec.precision,
            "channels_last": case.spec.channels_last if case.spec.backend == "torch" else None,
            "runtime": case.runner.info.label if case.runner is not None else None,
            "tile": case.tile,
            "tile_reason": case.note,
            "batch": case.path.batch,
            "halo_overhead": round(halo_overhead(outputs, TileConfig(tile=case.tile, halo=halo)), 4),
            "seconds": [round(s, 3) for s in case.seconds],
            "median_seconds": round(statistics.median(case.seconds), 3),
            "megapixels_per_second": round(megapixels / statistics.median(case.seconds), 4),
            "best_megapixels_per_second": round(megapixels / best, 4),
        }
    return {"inputs": [str(p) for p in inputs], "output_megapixels": round(megapixels, 4), "paths": results,
            "skipped": skipped}  # fmt: skip


def photo_inputs(photo: Path, size: tuple[int, int], folder: Path) -> tuple[Path, Path]:
    """``photo`` resized (Lanczos, RGB) to ``size`` (height, width) in ``folder``, and a 64x48
    copy to warm each path up on: the inputs of a whole-job benchmark."""
    from PIL import Image

    source = Image.open(photo).convert("RGB")
    height, width = size
    resized = Path(folder) / f"photo-{width}x{height}.png"
    source.resize((width, height), Image.Resampling.LANCZOS).save(resized)
    small = Path(folder) / "warm.png"
    source.resize((64, 48), Image.Resampling.LANCZOS).save(small)
    return resized, small


def job_ratios(paths: Mapping[str, Mapping[str, Any]], baseline: str) -> dict[str, float | None]:
    """Each path's Mpx/s over ``baseline``'s (None when the baseline was not measured)."""
    base = paths.get(baseline)
    rate = float(base["megapixels_per_second"]) if base else 0.0
    return {name: (float(p["megapixels_per_second"]) / rate if rate else None) for name, p in paths.items()}


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def job_markdown(
    sizes: Mapping[str, Mapping[str, Any]],
    *,
    baselines: Sequence[str] = (ORT_T256, EAGER),
    costs: Mapping[str, float] | None = None,
) -> str:
    """A Markdown table per output size (``{size label: time_jobs result}``): each path's
    runtime, tile (and halo overhead), Mpx/s and ratio to every baseline, and its worst
    task-PSNR loss vs fp32 in ``costs`` (dB; absent: not scored), then the paths skipped."""
    lines: list[str] = []
    for size, result in sizes.items():
        paths = result["paths"]
        ratios = {b: job_ratios(paths, b) for b in baselines}
        lines += [f"### {size} ({result['output_megapixels']:.2f} Mpx output)", ""]
        header = ["path", "runtime", "tile (halo overhead)", "Mpx/s"] + [f"vs {b}" for b in baselines]
        header.append("worst PSNR loss vs fp32 (dB)")
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, p in paths.items():
            tile = "whole" if p["tile"] == 0 else f"{p['tile']} (+{p['halo_overhead']:.1%})"
            cost = (costs or {}).get(name)
            row = [name, str(p["runtime"]), tile, f"{p['megapixels_per_second']:.4f}"]
            row += [_ratio(ratios[b][name]) for b in baselines]
            row.append("—" if cost is None else f"{cost:.3f}")
            lines.append("| " + " | ".join(row) + " |")
        for name, reason in result["skipped"].items():
            lines.append(f"| {name} | skipped: {reason} |" + " |" * (len(header) - 2))
        lines.append("")
    return "\n".join(lines)
