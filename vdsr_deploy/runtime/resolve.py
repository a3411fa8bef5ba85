"""Resolving ``--precision`` for a :class:`~vdsr_deploy.backends.registry.RunnerSpec`.

:func:`resolve_spec` turns ``auto`` into a concrete precision and backend (the decision,
with its reason, from :func:`vdsr_deploy.precision.decision.choose_precision`), reading each fast
path's measured quality cost from its record: the INT8 model's metadata
(:mod:`vdsr_deploy.export.int8`, built on first use) or, for PyTorch bf16, a JSON record in the
engines dir (measured on first use). The artifacts themselves come from :mod:`vdsr_deploy.runtime.artifacts`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path

from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec, choose_backend, runs_on_cuda
from vdsr_deploy.environment import cpu_cache_key
from vdsr_deploy.errors import VdsrError
from vdsr_deploy.export.int8 import INT8_AUTO_BLOCKED
from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata
from vdsr_deploy.precision.decision import CpuPath, PrecisionChoice, Speeds, SpeedTable, choose_precision
from vdsr_deploy.precision.names import AUTO
from vdsr_deploy.runner import Runner
from vdsr_deploy.runtime.artifacts import int8_artifact


def resolve_spec(
    spec: RunnerSpec, engines_dir: Path, *, open_path: Callable[[RunnerSpec], Runner] | None = None
) -> tuple[RunnerSpec, PrecisionChoice]:
    """``spec`` with a concrete precision (and, for ``auto`` on the CPU, the chosen backend
    and INT8 artifact), and the choice as data. ``open_path`` opens an inactive runner for a
    concrete spec (:func:`vdsr_deploy.runtime.prepare.open_runner`): with it, ``auto`` on
    the CPU times the eligible paths on this machine once and takes the fastest
    (:mod:`vdsr_deploy.runtime.speed`); without it, the benchmarks' order."""
    if spec.precision != AUTO:
        backend = choose_backend(spec).backend
        return spec, choose_precision(spec.precision, backend=backend, cuda=runs_on_cuda(spec))
    if spec.onnx is not None or spec.engine is not None:
        given = spec.onnx or spec.engine
        precision = _given_precision(spec)
        choice = PrecisionChoice(precision, spec.backend, f"the precision of the given {given}", AUTO)
        return replace(spec, precision=precision), choice
    cuda = runs_on_cuda(spec)
    artifacts: dict[str, Path] = {}

    def cost(path: CpuPath) -> Mapping[str, float] | str:
        try:
            if path.precision == "int8":
                artifact = int8_artifact(spec, engines_dir)
                artifacts["int8"] = artifact.path
                return artifact.cost_db
            if path.precision == "bf16" and path.backend == "torch":
                return bf16_cost(spec, engines_dir)
            if open_path is not None:
                return runner_cost(spec, path, engines_dir, open_path)
        except Exception as error:  # any failure to build/measure only passes the path over
            return f"unavailable: {error}"
        return "no quality record"

    speeds = None if open_path is None or cuda else _measurer(spec, engines_dir, open_path)
    choice = choose_precision(
        AUTO,
        backend=spec.backend,
        cuda=cuda,
        quality_cost=cost,
        unavailable=_unavailable,
        speeds=speeds,
        int8_blocked=INT8_AUTO_BLOCKED,
    )
    resolved = replace(spec, precision=choice.precision)
    if not cuda:
        resolved = replace(resolved, backend=choice.backend, onnx=artifacts.get(choice.precision))
    return resolved, choice


def _unavailable(path: CpuPath) -> str | None:
    """Why ``path`` cannot run on this machine's CPU (its runtime is not a backend here or
    not installed), or None."""
    backend = REGISTRY.get(path.backend)
    if backend is None:
        return "not a backend of this version"
    return backend.unavailable("cpu", path.precision, "cpu")


def _path_spec(spec: RunnerSpec, path: CpuPath) -> RunnerSpec:
    return replace(spec, backend=path.backend, precision=path.precision, device="cpu", provider="cpu")


def _measurer(spec: RunnerSpec, engines_dir: Path, open_path: Callable[[RunnerSpec], Runner]) -> Speeds:
    """Times the eligible paths of ``spec`` (cached per machine and versions)."""
    from vdsr_deploy.export.int8 import DEFAULT_RECIPE, RECIPE_VERSION
    from vdsr_deploy.model.weights import weights_file_sha256
    from vdsr_deploy.runtime.info import versions
    from vdsr_deploy.runtime.speed import speed_key, speed_table

    def measure(paths: Sequence[CpuPath]) -> SpeedTable | str:
        try:
            key = speed_key(
                network=weights_file_sha256(spec.weights),
                threads=spec.threads,
                int8_recipe={**asdict(DEFAULT_RECIPE), "version": RECIPE_VERSION},
                versions=versions(),
            )
            return speed_table(paths, lambda path: open_path(_path_spec(spec, path)), engines_dir, key)
        except VdsrError as error:
            return str(error)

    return measure


def precision_warning_for(spec: RunnerSpec) -> str:
    """What to warn of before a run of ``spec`` (a concrete precision) starts: bf16 emulated
    on a CPU without bf16 hardware ('' when nothing, and always on CUDA)."""
    from vdsr_deploy.environment import cpu_flags
    from vdsr_deploy.precision.decision import precision_warning

    if spec.precision == AUTO or runs_on_cuda(spec):
        return ""
    return precision_warning(spec.precision, cpu_flags())


def _given_precision(spec: RunnerSpec) -> str:
    if spec.onnx is not None:
        recorded = onnx_metadata(spec.onnx).get(MetadataKey.PRECISION)
        if recorded is not None:
            return recorded
        from vdsr_deploy.model.provenance import is_quantized  # a foreign model records none

        return "int8" if is_quantized(spec.onnx) else "fp32"
    return "fp16"


def bf16_cost(spec: RunnerSpec, engines_dir: Path) -> dict[str, float]:
    """The measured cost of PyTorch bf16 (vs PyTorch FP32) on the held-out tiles, from its
    record in ``engines_dir`` (keyed by weights, torch version, CPU and calibration data)."""
    import torch

    from vdsr_deploy.backends.torch.runner import BF16_LAYERS, TorchRunner
    from vdsr_deploy.export.calibration import cached_cost, load_calibration_set, quality_cost
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(spec.weights)
    calibration = load_calibration_set()
    key = {
        "weights_sha256": info.sha256,
        "path": "torch-bf16-channels-last",
        "layers": BF16_LAYERS,  # records measured with every conv in bf16 are not reused
        "torch": torch.__version__,
        "cpu": cpu_cache_key(),
        "calibration_sha256": calibration.sha256,
    }
    digest = _digest(key)
    record = Path(engines_dir) / f"vdsr-{info.sha256[:12]}-torch-bf16-{digest}.quality.json"

    def measure() -> dict[str, float]:
        reference = TorchRunner(model, device="cpu")
        candidate = TorchRunner(model, device="cpu", precision="bf16")
        with reference, candidate:
            return quality_cost(reference.infer, candidate.infer, calibration)

    return cached_cost(record, key, measure)


def runner_cost(
    spec: RunnerSpec, path: CpuPath, engines_dir: Path, open_path: Callable[[RunnerSpec], Runner]
) -> dict[str, float]:
    """The measured cost of ``path`` (vs ONNX Runtime FP32, the reference) on the held-out
    tiles, from its record in ``engines_dir`` (keyed by weights, the path, every runtime's
    version, the CPU and the calibration data); measured on first use."""
    from vdsr_deploy.export.calibration import cached_cost, load_calibration_set, quality_cost
    from vdsr_deploy.model.weights import weights_file_sha256
    from vdsr_deploy.runtime.info import versions

    calibration = load_calibration_set()
    weights = weights_file_sha256(spec.weights)
    key = {
        "weights_sha256": weights,
        "path": path.key,
        "versions": versions(),
        "cpu": cpu_cache_key(),
        "calibration_sha256": calibration.sha256,
    }
    record = Path(engines_dir) / f"vdsr-{weights[:12]}-{path.key}-{_digest(key)}.quality.json"

    def measure() -> dict[str, float]:
        reference_spec = replace(spec, backend="onnxruntime", precision="fp32", device="cpu", provider="cpu")
        with open_path(reference_spec) as reference, open_path(_path_spec(spec, path)) as candidate:
            return quality_cost(reference.infer, candidate.infer, calibration)

    return cached_cost(record, key, measure)


def _digest(key: Mapping[str, object]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:12]
