"""Resolving ``--precision`` for a :class:`~vdsr_deploy.backends.registry.RunnerSpec`.

:func:`resolve_spec` turns ``auto`` into a concrete precision and backend (the decision,
with its reason, from :func:`vdsr_deploy.precision.decision.choose_precision`), reading each fast
path's measured quality cost from its record: the INT8 model's metadata
(:mod:`vdsr_deploy.export.int8`, built on first use) or, for PyTorch bf16, a JSON record in the
engines dir (measured on first use). The artifacts themselves come from :mod:`vdsr_deploy.runtime.artifacts`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec, choose_backend, runs_on_cuda
from vdsr_deploy.environment import cpu_cache_key
from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata
from vdsr_deploy.precision.decision import CpuPath, PrecisionChoice, choose_precision
from vdsr_deploy.precision.names import AUTO
from vdsr_deploy.runtime.artifacts import int8_artifact


def resolve_spec(spec: RunnerSpec, engines_dir: Path) -> tuple[RunnerSpec, PrecisionChoice]:
    """``spec`` with a concrete precision (and, for ``auto`` on the CPU, the chosen backend
    and INT8 artifact), and the choice as data."""
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
            if path.precision == "bf16":
                if path.backend != "torch":  # the record measures PyTorch's bf16, not another runtime's
                    return f"its quality cost on {path.backend} is not measured"
                return bf16_cost(spec, engines_dir)
        except Exception as error:  # any failure to build/measure only passes the path over
            return f"unavailable: {error}"
        return "no quality record"

    supported = REGISTRY[spec.backend].precisions if spec.backend != AUTO else None
    choice = choose_precision(AUTO, backend=spec.backend, cuda=cuda, quality_cost=cost, supported=supported)
    resolved = replace(spec, precision=choice.precision)
    if not cuda:
        resolved = replace(resolved, backend=choice.backend, onnx=artifacts.get(choice.precision))
    return resolved, choice


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
        return onnx_metadata(spec.onnx).get(MetadataKey.PRECISION, "fp32")
    return "fp16"


def bf16_cost(spec: RunnerSpec, engines_dir: Path) -> dict[str, float]:
    """The measured cost of PyTorch bf16 (vs PyTorch FP32) on the held-out tiles, from its
    record in ``engines_dir`` (keyed by weights, torch version, CPU and calibration data)."""
    import torch

    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.export.calibration import cached_cost, load_calibration_set, quality_cost
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(spec.weights)
    calibration = load_calibration_set()
    key = {
        "weights_sha256": info.sha256,
        "path": "torch-bf16-channels-last",
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


def _digest(key: Mapping[str, object]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:12]
