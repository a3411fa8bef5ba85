"""The artifacts a run executes, made or found before any runner opens: the verified ONNX
export of some weights (:func:`exported_onnx`, or :func:`cached_onnx` from the weights file
alone: numpy, no torch), the cached INT8 model (:func:`int8_artifact`) and the TensorRT
engine of some weights (:func:`ensure_engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.backends.descriptor import OpenRequest
from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec
from vdsr_deploy.model.onnx_metadata import default_onnx_name, is_current_export, onnx_metadata
from vdsr_deploy.runner import Runner

if TYPE_CHECKING:
    from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
    from vdsr_deploy.backends.tensorrt.cache import EngineRecord
    from vdsr_deploy.export.calibration import CalibrationSet
    from vdsr_deploy.export.int8 import Int8Artifact


def int8_artifact(
    spec: RunnerSpec, engines_dir: Path, calibration: CalibrationSet | None = None, *, rebuild: bool = False
) -> Int8Artifact:
    """The cached INT8 model for ``spec``'s weights (built on first use, or again with
    ``rebuild``), calibrated on the shipped tiles or on ``calibration``."""
    from vdsr_deploy.export.int8 import ensure_int8_onnx
    from vdsr_deploy.model.weights import weights_file_sha256

    def fp32_onnx() -> Path:
        return cached_onnx(spec.weights, engines_dir, "fp32") or exported_onnx(spec, engines_dir, "fp32")

    return ensure_int8_onnx(
        weights_file_sha256(spec.weights),
        fp32_onnx,
        engines_dir,
        open_onnx=open_onnx_fp32,
        calibration=calibration,
        rebuild=rebuild,
    )


def open_onnx_fp32(path: Path) -> Runner:
    """An inactive ONNX Runtime runner (CPU, FP32 arithmetic) for ``path``: how the INT8
    build measures its cost against the FP32 graph."""
    return REGISTRY["onnxruntime"].open(OpenRequest(precision="fp32", artifact=path, device="cpu"))


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


def exported_onnx(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    """The verified ONNX export of ``spec``'s weights in ``precision`` (made if missing)."""
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(spec.weights)
    return ensure_onnx(model, info, precision, engines_dir)


def ensure_engine(
    config: EngineBuildConfig,
    engines_dir: Path,
    *,
    onnx_path: Path | None = None,
    weights: Path | None = None,
    device: int = 0,
    rebuild: bool = False,
) -> EngineRecord:
    """What ``vdsr build`` does: the engine for ``onnx_path``, or for the ONNX of
    ``weights`` (default: the shipped weights) in the config's precision, exported and
    verified into ``engines_dir`` when missing (or made by an older exporter), then
    :func:`find_or_build_engine`."""
    from vdsr_deploy.backends.tensorrt.builder import find_or_build_engine
    from vdsr_deploy.backends.tensorrt.library import require_tensorrt

    require_tensorrt()  # fail before exporting anything
    if onnx_path is None:
        from vdsr_deploy.export.onnx import ensure_onnx
        from vdsr_deploy.model.weights import load_weights

        model, info = load_weights(weights)
        onnx_path = ensure_onnx(model, info, config.precision, Path(engines_dir))
    return find_or_build_engine(onnx_path, config, engines_dir, device=device, rebuild=rebuild)
