"""Resolving ``--precision`` for a :class:`~vdsr_deploy.runtime.prepare.RunnerSpec`, and finding the
artifacts a CPU path needs without importing what the run does not use.

:func:`resolve_spec` turns ``auto`` into a concrete precision and backend (the decision,
with its reason, from :func:`vdsr_deploy.precision.decision.choose_precision`), reading each fast
path's measured quality cost from its record: the INT8 model's metadata
(:mod:`vdsr_deploy.export.int8`, built on first use) or, for PyTorch bf16, a JSON record in the
engines dir (measured on first use). :func:`cached_onnx` finds an already exported and
verified ONNX from the weights file alone (numpy, no torch).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.model.onnx_metadata import MetadataKey, default_onnx_name, is_current_export, onnx_metadata
from vdsr_deploy.precision.decision import AUTO, CpuPath, PrecisionChoice, choose_precision, nvidia_driver_present

if TYPE_CHECKING:
    from vdsr_deploy.export.calibration import CalibrationSet
    from vdsr_deploy.export.int8 import Int8Artifact
    from vdsr_deploy.runtime.prepare import RunnerSpec


def wants_cuda(spec: RunnerSpec) -> bool:
    """Whether ``spec`` runs on a CUDA device (``auto`` asks PyTorch only when an NVIDIA
    driver is loaded, so CPU machines never import torch for the question)."""
    if spec.backend == "onnxruntime":
        return spec.provider in ("cuda", "tensorrt")
    if spec.device.startswith("cuda") or spec.backend == "tensorrt":
        return True
    if spec.device != "auto" or not nvidia_driver_present():
        return False
    from vdsr_deploy.backends.device import cuda_available

    return cuda_available()


def resolve_spec(spec: RunnerSpec, engines_dir: Path) -> tuple[RunnerSpec, PrecisionChoice]:
    """``spec`` with a concrete precision (and, for ``auto`` on the CPU, the chosen backend
    and INT8 artifact), and the choice as data."""
    if spec.precision != AUTO:
        from vdsr_deploy.runtime.prepare import choose_backend

        return spec, choose_precision(spec.precision, backend=choose_backend(spec).backend, cuda=False)
    if spec.onnx is not None or spec.engine is not None:
        given = spec.onnx or spec.engine
        precision = _given_precision(spec)
        choice = PrecisionChoice(precision, spec.backend, f"the precision of the given {given}", AUTO)
        return replace(spec, precision=precision), choice
    cuda = wants_cuda(spec)
    artifacts: dict[str, Path] = {}

    def cost(path: CpuPath) -> Mapping[str, float] | str:
        try:
            if path.precision == "int8":
                artifact = int8_artifact(spec, engines_dir)
                artifacts["int8"] = artifact.path
                return artifact.cost_db
            if path.precision == "bf16":
                return bf16_cost(spec, engines_dir)
        except Exception as error:  # any failure to build/measure only passes the path over
            return f"unavailable: {error}"
        return "no quality record"

    choice = choose_precision(AUTO, backend=spec.backend, cuda=cuda, quality_cost=cost)
    resolved = replace(spec, precision=choice.precision)
    if not cuda:
        resolved = replace(resolved, backend=choice.backend, onnx=artifacts.get(choice.precision))
    return resolved, choice


def _given_precision(spec: RunnerSpec) -> str:
    if spec.onnx is not None:
        return onnx_metadata(spec.onnx).get(MetadataKey.PRECISION, "fp32")
    return "fp16"


def int8_artifact(
    spec: RunnerSpec, engines_dir: Path, calibration: CalibrationSet | None = None, *, rebuild: bool = False
) -> Int8Artifact:
    """The cached INT8 model for ``spec``'s weights (built on first use, or again with
    ``rebuild``), calibrated on the shipped tiles or on ``calibration``."""
    from vdsr_deploy.export.int8 import ensure_int8_onnx
    from vdsr_deploy.model.weights import weights_file_sha256

    def fp32_onnx() -> Path:
        return cached_onnx(spec.weights, engines_dir, "fp32") or _export(spec, engines_dir, "fp32")

    return ensure_int8_onnx(
        weights_file_sha256(spec.weights), fp32_onnx, engines_dir, calibration=calibration, rebuild=rebuild
    )


def bf16_cost(spec: RunnerSpec, engines_dir: Path) -> dict[str, float]:
    """The measured cost of PyTorch bf16 (vs PyTorch FP32) on the held-out tiles, from its
    record in ``engines_dir`` (keyed by weights, torch version, CPU and calibration data)."""
    import torch

    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.export.calibration import cached_cost, load_calibration_set, quality_cost
    from vdsr_deploy.model.weights import load_weights
    from vdsr_deploy.precision.decision import engines_cache_key

    model, info = load_weights(spec.weights)
    calibration = load_calibration_set()
    key = {
        "weights_sha256": info.sha256,
        "path": "torch-bf16-channels-last",
        "torch": torch.__version__,
        "cpu": engines_cache_key(),
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


def cached_onnx(weights: Path | None, engines_dir: Path, precision: str) -> Path | None:
    """The exported ONNX of ``weights`` in ``engines_dir`` if it is there, made from these
    weights in ``precision`` and verified at export (its metadata says so); else None."""
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.model.weights import weights_file_sha256

    sha = weights_file_sha256(weights)
    path = Path(engines_dir) / default_onnx_name(sha, precision)
    if not path.is_file():
        return None
    try:
        metadata = onnx_metadata(path)
    except VdsrError:
        return None
    return path if is_current_export(metadata, sha, precision) else None


def _export(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(spec.weights)
    return ensure_onnx(model, info, precision, engines_dir)
