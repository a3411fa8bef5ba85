"""Running parity: the candidates, :func:`validate_runners` (runners given) and
:func:`validate` (artifacts found or exported, artifact chain checked), and the report."""

from __future__ import annotations

import datetime as _dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.registry import REGISTRY
from vdsr_deploy.errors import BackendUnavailableError, ConfigError, InvalidInputError, VdsrError
from vdsr_deploy.fileops import require_regular_file
from vdsr_deploy.parity.artifacts import ArtifactCheck, check_engine_sidecar, check_onnx, engine_precision
from vdsr_deploy.parity.figures import (
    ERROR,
    FAILED,
    PASSED,
    SKIPPED,
    PairResult,
    RunOutput,
    compare_outputs,
)
from vdsr_deploy.parity.images import ValidationImage, default_images
from vdsr_deploy.parity.tolerances import Tolerance, ToleranceConfig
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.protocol import check_scale
from vdsr_deploy.runner import Runner

EventSink = Callable[[dict[str, Any]], None]


# ----------------------------------------------------------------------------------------
# Candidates


@dataclass(frozen=True)
class Candidate:
    """A runtime/precision compared with the reference. ``tiled`` False: whole image."""

    name: str
    backend: str
    precision: str
    tolerance: str
    tiled: bool = True
    note: str = ""


REFERENCE = ("torch", "fp32")
"""The reference every candidate is compared with: PyTorch FP32."""
CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        *(
            Candidate(f"{name}-{precision}", name, precision, precision)
            for name, backend in REGISTRY.items()
            for precision in backend.precisions
            if (name, precision) != REFERENCE
        ),
        Candidate("untiled", *REFERENCE, "tiling", tiled=False),
    )
}
"""Every runtime and precision of the registry against the reference, plus tiled vs untiled."""
DEFAULT_CANDIDATES = tuple(CANDIDATES)
ORT_CPU_FP16_NOTE = (
    "ONNX Runtime's CPU provider upcasts the FP16 graph to FP32: this checks the FP16 "
    "weights' rounding only, not FP16 arithmetic (run it with --provider cuda/tensorrt or "
    "the tensorrt-fp16 pair for that)"
)


@dataclass(frozen=True)
class ValidateConfig:
    """What :func:`validate` runs. ``onnx``: ONNX files to use instead of exporting (matched
    to candidates by their ``vdsr.precision`` metadata); ``engine``: a TensorRT engine
    (its JSON sidecar is checked); ``bit_depths``: 8 and optionally 16; ``max_untiled_pixels``:
    larger outputs are left out of the whole-image pair; ``ensemble``: the reference and every
    candidate run the x8 self-ensemble (:mod:`vdsr_deploy.planes.ensemble`)."""

    weights: Path | None = None
    scale: float = 2.0
    tiling: TileConfig = field(default_factory=TileConfig)
    batch: int = 4
    device: str = "auto"
    provider: str = "cpu"
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    tolerances: ToleranceConfig = field(default_factory=ToleranceConfig)
    bit_depths: tuple[int, ...] = (8,)
    onnx: tuple[Path, ...] = ()
    engine: Path | None = None
    engines_dir: Path | None = None
    threads: int = 0
    max_untiled_pixels: int = 4_000_000
    ensemble: bool = False

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.batch < 1:
            raise ConfigError(f"batch: expected >= 1, got {self.batch}")
        unknown = [c for c in self.candidates if c not in CANDIDATES]
        if unknown:
            raise ConfigError(
                f"runtime: expected some of {', '.join(CANDIDATES)}, got {', '.join(unknown)}"
            )
        if len(set(self.candidates)) != len(self.candidates):
            raise ConfigError(f"runtime: listed twice in {self.candidates}")
        if (
            not self.bit_depths
            or any(b not in (8, 16) for b in self.bit_depths)
            or self.bit_depths[0] != 8
        ):
            raise ConfigError(f"bit_depths: expected (8,) or (8, 16), got {self.bit_depths}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")
        if self.max_untiled_pixels < 1:
            raise ConfigError(f"max_untiled_pixels: expected >= 1, got {self.max_untiled_pixels}")


@dataclass(frozen=True)
class ValidationReport:
    """Everything :func:`validate` found; ``passed`` is False when any pair failed or
    errored or any artifact check failed (skipped pairs do not fail the run)."""

    created: str
    weights: dict[str, Any]
    reference: str
    scale: float
    tiling: TileConfig
    batch: int
    bit_depths: tuple[int, ...]
    images: tuple[dict[str, Any], ...]
    pairs: tuple[PairResult, ...]
    artifacts: tuple[ArtifactCheck, ...]
    tolerances: ToleranceConfig
    environment: dict[str, Any] = field(default_factory=dict)
    ensemble: bool = False

    @property
    def passed(self) -> bool:
        return all(p.ok for p in self.pairs) and all(a.passed for a in self.artifacts)

    @property
    def failures(self) -> tuple[str, ...]:
        lines = [f"{p.name}: {'; '.join(p.reasons)}" for p in self.pairs if not p.ok]
        lines += [f"{a.artifact}: {a.detail}" for a in self.artifacts if not a.passed]
        return tuple(lines)

    def pair(self, name: str) -> PairResult:
        return {item.name: item for item in self.pairs}[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "vdsr-validate/1",
            "created": self.created,
            "passed": self.passed,
            "failures": list(self.failures),
            "weights": self.weights,
            "reference": self.reference,
            "scale": self.scale,
            "tiling": {"tile": self.tiling.tile, "halo": self.tiling.halo},
            "batch": self.batch,
            "ensemble": self.ensemble,
            "bit_depths": list(self.bit_depths),
            "images": list(self.images),
            "pairs": [p.to_dict() for p in self.pairs],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "tolerances": self.tolerances.to_dict(),
            "environment": self.environment,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

def run_images(
    images: Sequence[ValidationImage],
    runner: Runner,
    *,
    scale: float,
    tiling: TileConfig,
    batch: int,
    ensemble: bool = False,
) -> list[RunOutput]:
    """Upscale every image through ``runner`` (already active), with the x8 self-ensemble
    when ``ensemble``."""
    from vdsr_deploy.planes.ensemble import plane_upscaler

    run_plane = plane_upscaler(ensemble)
    outputs: list[RunOutput] = []
    for image in images:
        prepared = _prepare(image, scale)
        y = run_plane(prepared.y, runner, tiling, batch=batch)
        outputs.append(RunOutput(y))
    return outputs

def _prepare(image: ValidationImage, scale: float) -> colour.PreparedImage:
    prepared = colour.prepare(image.pixels, scale)
    if image.hr_y is not None and prepared.shape != image.hr_y.shape:
        raise InvalidInputError(
            f"{image.name}: upscaled to {prepared.shape}, HR is {image.hr_y.shape}"
        )
    return prepared


# ----------------------------------------------------------------------------------------
# Running it all


RunnerFactory = Callable[[], Runner]


def validate_runners(
    images: Sequence[ValidationImage],
    reference: Runner,
    candidates: Sequence[tuple[Candidate, RunnerFactory | str]],
    *,
    scale: float = 2.0,
    tiling: TileConfig | None = None,
    batch: int = 4,
    tolerances: ToleranceConfig | None = None,
    bit_depths: Sequence[int] = (8,),
    max_untiled_pixels: int = 4_000_000,
    on_event: EventSink | None = None,
    ensemble: bool = False,
) -> tuple[str, list[PairResult]]:
    """The core of :func:`validate` with runners given directly (no artifacts built).

    ``candidates``: each with a factory returning an inactive runner, or a string (the
    reason it is skipped). A factory raising :class:`BackendUnavailableError` skips the
    pair; any other :class:`VdsrError` while running marks it ``error``. Returns the
    reference's label and the pair results. ``ensemble``: every run is the x8 self-ensemble.
    """
    tiling = tiling or TileConfig()
    tolerances = tolerances or ToleranceConfig()
    emit = on_event or (lambda event: None)
    if not images:
        raise InvalidInputError("expected at least one image to validate on")
    emit({"event": "reference", "images": len(images)})
    with reference:
        label = reference.info.label
        ref_outputs = run_images(
            images, reference, scale=scale, tiling=tiling, batch=batch, ensemble=ensemble
        )
    results: list[PairResult] = []
    for candidate, factory in candidates:
        emit({"event": "pair-start", "name": candidate.name})
        tolerance = tolerances.for_class(candidate.tolerance)
        notes = [candidate.note] if candidate.note else []
        started = time.perf_counter()
        if isinstance(factory, str):
            result = _not_compared(candidate, label, tolerance, SKIPPED, factory, notes)
        else:
            try:
                cand_label, outputs = _run_candidate(
                    candidate, factory, images, scale, tiling, batch, max_untiled_pixels,
                    ensemble=ensemble,
                )  # fmt: skip
            except BackendUnavailableError as error:
                result = _not_compared(candidate, label, tolerance, SKIPPED, str(error), notes)
            except VdsrError as error:
                reason = f"{type(error).__name__}: {error}"
                result = _not_compared(candidate, label, tolerance, ERROR, reason, notes)
            else:
                left_out = sum(1 for o in outputs if o is None)
                if left_out:
                    notes.append(
                        f"{left_out} image(s) above {max_untiled_pixels:,} output pixels "
                        "left out of the whole-image run"
                    )
                result = compare_outputs(
                    candidate.name, images, ref_outputs, outputs, tolerance,
                    bit_depths=bit_depths, tolerance_class=candidate.tolerance,
                    labels=(label, cand_label), notes=notes,
                )  # fmt: skip
        result = replace(result, seconds=time.perf_counter() - started)
        results.append(result)
        emit({"event": "pair-done", "name": candidate.name, "status": result.status})
    return label, results


def _not_compared(
    candidate: Candidate,
    reference: str,
    tolerance: Tolerance,
    status: str,
    reason: str,
    notes: list[str],
) -> PairResult:
    return PairResult(
        candidate.name, candidate.name, reference, candidate.tolerance, tolerance, status,
        (reason,), tuple(notes),
    )  # fmt: skip


def _run_candidate(
    candidate: Candidate,
    factory: RunnerFactory,
    images: Sequence[ValidationImage],
    scale: float,
    tiling: TileConfig,
    batch: int,
    max_untiled_pixels: int,
    *,
    ensemble: bool = False,
) -> tuple[str, list[RunOutput | None]]:
    """The candidate's label and outputs (None: image too large for a whole-image run)."""
    runner = factory()
    with runner:
        info = runner.info
        label = f"{info.backend}:{info.device}:{candidate.precision}"
        if candidate.tiled:
            return label, list(
                run_images(images, runner, scale=scale, tiling=tiling, batch=batch, ensemble=ensemble)
            )
        whole = TileConfig(tile=0, halo=tiling.halo)
        outputs: list[RunOutput | None] = []
        for image in images:
            height, width = colour.output_shape(image.pixels.shape[0], image.pixels.shape[1], scale)
            if height * width > max_untiled_pixels:
                outputs.append(None)
            else:
                outputs.extend(
                    run_images([image], runner, scale=scale, tiling=whole, batch=1, ensemble=ensemble)
                )
        return label, outputs


def _candidate_factory(
    candidate: Candidate, config: ValidateConfig, onnx_by_precision: dict[str, Path]
) -> RunnerFactory | str:
    """How to open ``candidate`` (a factory), or why it cannot run here (a string)."""
    from vdsr_deploy.backends.registry import RunnerSpec, unavailable_reason
    from vdsr_deploy.runtime.prepare import open_runner

    tiling = config.tiling if candidate.tiled else TileConfig(tile=0, halo=config.tiling.halo)
    engine = (
        config.engine
        if candidate.backend == "tensorrt"
        and engine_precision(config.engine) == candidate.precision
        else None
    )
    spec = RunnerSpec(
        backend=candidate.backend,
        device=config.device,
        precision=candidate.precision,
        provider=config.provider,
        weights=config.weights,
        onnx=onnx_by_precision.get(candidate.precision) if candidate.backend != "torch" else None,
        engine=engine,
        engines_dir=config.engines_dir,
        threads=config.threads,
    )
    reason = unavailable_reason(spec)
    if reason is not None:
        return reason
    batch = config.batch if candidate.tiled else 1

    def factory() -> Runner:
        return open_runner(spec, tiling=tiling, batch=batch)

    return factory


def validate(
    config: ValidateConfig,
    images: Sequence[ValidationImage] | None = None,
    *,
    on_event: EventSink | None = None,
) -> ValidationReport:
    """Run the reference and every candidate of ``config`` on ``images`` (default: the
    bundled sample and the edge cases) and check the artifact chain (ONNX metadata, engine
    sidecar) against the weights."""
    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.model.onnx_metadata import MetadataKey, read_metadata
    from vdsr_deploy.model.weights import load_weights
    from vdsr_deploy.runtime.info import runtime_environment

    chosen = list(images) if images is not None else default_images()
    model, info = load_weights(config.weights)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    onnx_by_precision: dict[str, Path] = {}
    for path in config.onnx:
        require_regular_file(Path(path), "ONNX file")
        precision = read_metadata(path).get(MetadataKey.PRECISION) or (
            "fp16" if "fp16" in Path(path).name else "fp32"
        )
        if precision in onnx_by_precision:
            raise ConfigError(
                f"two {precision} ONNX files given: {onnx_by_precision[precision]} and {path}"
            )
        onnx_by_precision[precision] = Path(path)
    if config.engine is not None:
        require_regular_file(Path(config.engine), "engine file")

    candidates: list[tuple[Candidate, RunnerFactory | str]] = []
    for name in config.candidates:
        candidate = CANDIDATES[name]
        if (
            candidate.backend == "onnxruntime"
            and candidate.precision == "fp16"
            and config.provider == "cpu"
        ):
            candidate = replace(candidate, note=ORT_CPU_FP16_NOTE)
        if candidate.backend == "tensorrt" and candidate.precision == "fp32":
            candidate = replace(
                candidate,
                note="an FP32 engine is only a parity baseline if it was built with TF32 off",
            )
        candidates.append((candidate, _candidate_factory(candidate, config, onnx_by_precision)))

    reference = TorchRunner(model, device=config.device, precision="fp32", allow_tf32=False)
    label, pairs = validate_runners(
        chosen,
        reference,
        candidates,
        scale=config.scale,
        tiling=config.tiling,
        batch=config.batch,
        tolerances=config.tolerances,
        bit_depths=config.bit_depths,
        max_untiled_pixels=config.max_untiled_pixels,
        on_event=on_event,
        ensemble=config.ensemble,
    )
    artifacts = _artifact_checks(config, info.sha256, onnx_by_precision, pairs)
    return ValidationReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        weights=info.to_dict(),
        reference=label,
        scale=config.scale,
        tiling=config.tiling,
        batch=config.batch,
        bit_depths=tuple(config.bit_depths),
        images=tuple(_describe_image(i, config.scale) for i in chosen),
        pairs=tuple(pairs),
        artifacts=artifacts,
        tolerances=config.tolerances,
        environment=runtime_environment(),
        ensemble=config.ensemble,
    )


def _artifact_checks(
    config: ValidateConfig,
    weights_sha256: str,
    onnx_by_precision: dict[str, Path],
    pairs: Sequence[PairResult],
) -> tuple[ArtifactCheck, ...]:
    from vdsr_deploy.model.onnx_metadata import default_onnx_name
    from vdsr_deploy.runtime.prepare import default_engines_dir

    checks: list[ArtifactCheck] = [
        check_onnx(p, weights_sha256) for p in onnx_by_precision.values()
    ]
    ran = {p.name for p in pairs if p.status in (PASSED, FAILED)}
    engines_dir = config.engines_dir or default_engines_dir()
    for precision in ("fp32", "fp16"):
        if precision in onnx_by_precision:
            continue
        exported = engines_dir / default_onnx_name(weights_sha256, precision)
        if exported.is_file() and ({f"onnxruntime-{precision}", f"tensorrt-{precision}"} & ran):
            checks.append(check_onnx(exported, weights_sha256))
    if config.engine is not None:
        checks.append(
            check_engine_sidecar(config.engine, weights_sha256, tuple(onnx_by_precision.values()))
        )
    return tuple(checks)


def _describe_image(image: ValidationImage, scale: float) -> dict[str, Any]:
    h, w = image.pixels.shape[:2]
    out_h, out_w = colour.output_shape(h, w, scale)
    return {
        "name": image.name,
        "kind": image.kind,
        "input": [h, w, image.pixels.shape[2]],
        "output": [out_h, out_w],
        "hr": image.hr_y is not None,
    }
