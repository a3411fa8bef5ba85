"""The cached INT8 artifact: made on first use, keyed, and never used when its key differs.

:func:`ensure_int8_onnx` returns the static INT8 QDQ model of some weights from the
engines dir, building it when missing or stale: calibrated (:mod:`vdsr_deploy.export.quantize`) on
the procedurally drawn tiles that ship with the package, or a user's own images
(:mod:`vdsr_deploy.export.calibration`), its quality cost measured on the held-out tiles against ONNX
Runtime FP32, and both recorded in its metadata (with where the calibration data came
from). The key is the weights hash + the calibration recipe (settings and the calibration
data's content hash) + the onnxruntime version + the exporter version of the FP32
graph; it names the file and is stored inside it (``vdsr.int8_key``), so a changed key
builds a new file and a file whose recorded key does not match is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import BackendUnavailableError, BuildError
from vdsr_deploy.export.calibration import SCALES, CalibrationSet, load_calibration_set, quality_cost
from vdsr_deploy.export.quantize import QuantizeConfig, quantize_int8
from vdsr_deploy.fileops import temporary_path
from vdsr_deploy.model.onnx_metadata import EXPORTER_VERSION, MetadataKey, onnx_metadata, remember_metadata
from vdsr_deploy.runner import Runner

RECIPE_VERSION = 3
"""2: the calibration data includes :func:`vdsr_deploy.export.calibration.contrast_guard_tiles`
(every ReLU range widened to what the full-contrast tiles reach). 3: the ranges widen only
``guard_share`` of the way there (geometrically), the guard tiles given apart from the
shipped ones (:func:`vdsr_deploy.export.quantize.guarded_ranges`)."""
DEFAULT_RECIPE = QuantizeConfig(tile=96, scales=SCALES, method="minmax", per_channel=True, guard_share=0.65)
"""Measured in benchmarks/int8_recipe.py (docs/quality/int8-recipe.md): MinMax ranges on the
shipped tiles widened 0.65 of the way (geometrically) to the contrast guard's, per-channel
weights, first/last conv and the residual Add in FP32. With the shipped weights: Set5
-0.0499 / -0.0251 / -0.0139 dB and Set14 -0.0261 / -0.0179 / -0.0173 dB at x2 / x3 / x4, and
``vdsr validate``'s edge pattern passes the INT8 tolerance (max 0.138 <= 0.15). Share 0.7
costs 0.0500 dB (just over) at Set5 x2, full guard ranges (recipe 2) 0.057 dB; share 0.6 or
less clips the 1-px edge pattern; percentile/entropy calibration, reduce_range, extra FP32
layers and full guard ranges on the most edge-sensitive ReLUs measured no better."""
INT8_AUTO_BLOCKED = ""
"""Why ``--precision auto`` may not take this recipe's INT8 model ('' when it may): its
Set5/Set14 cost measured with the shipped weights (benchmarks/int8_recipe.py), not the
held-out tiles it records. Recipe 3 is within 0.05 dB at every scale of Set5 and Set14, with
almost no margin at Set5 x2 (0.0001 dB), and passes the edge patterns, so auto may take it
where it is measured fastest; each weights' own INT8 model still has to be within the limit
on its held-out tiles."""


@dataclass(frozen=True)
class Int8Artifact:
    """A usable INT8 model: where it is, its key and its recorded quality cost per scale."""

    path: Path
    key: dict[str, Any]
    cost_db: dict[str, float]
    built: bool


def onnxruntime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return version(distribution)
        except PackageNotFoundError:
            continue
    raise BackendUnavailableError("INT8 needs onnxruntime: pip install 'vdsr-deploy[cpu]'")


def int8_key(weights_sha256: str, recipe: QuantizeConfig, calibration_sha256: str) -> dict[str, Any]:
    """Everything the INT8 model depends on; equal keys give the same model."""
    return {
        "weights_sha256": weights_sha256,
        "recipe": {
            **{name: list(value) if isinstance(value, tuple) else value for name, value in asdict(recipe).items()},
            "version": RECIPE_VERSION,
        },
        "calibration_sha256": calibration_sha256,
        "onnxruntime": onnxruntime_version(),
        "exporter": EXPORTER_VERSION,  # the FP32 graph it is quantized from
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def int8_path(engines_dir: Path, key: dict[str, Any]) -> Path:
    return Path(engines_dir) / f"vdsr-{key['weights_sha256'][:12]}-int8-{key_digest(key)}.onnx"


def recorded(path: Path, key: dict[str, Any]) -> Int8Artifact | None:
    """The artifact at ``path`` if its recorded key equals ``key`` (else None)."""
    if not path.is_file():
        return None
    try:
        metadata = onnx_metadata(path)
        stored_key = json.loads(metadata.get(MetadataKey.INT8_KEY, "null"))
        cost = json.loads(metadata.get(MetadataKey.QUALITY_COST_DB, "null"))
    except (BuildError, ValueError):
        return None
    if stored_key != key or metadata.get(MetadataKey.PRECISION) != "int8" or not isinstance(cost, dict):
        return None
    return Int8Artifact(path, key, {str(k): float(v) for k, v in cost.items()}, built=False)


def ensure_int8_onnx(
    weights_sha256: str,
    fp32_onnx: Callable[[], Path],
    engines_dir: Path,
    *,
    open_onnx: Callable[[Path], Runner],
    recipe: QuantizeConfig = DEFAULT_RECIPE,
    calibration: CalibrationSet | None = None,
    rebuild: bool = False,
) -> Int8Artifact:
    """The INT8 model for these weights and ``recipe`` in ``engines_dir``, built from the
    FP32 ONNX (``fp32_onnx()`` is only called when a build is needed) if missing or stale,
    or with ``rebuild`` (the cached file is replaced once the new one is complete).
    ``open_onnx`` opens an inactive FP32-arithmetic runner for an ONNX file: the build runs
    the FP32 graph and the INT8 one through it to measure the cost (building never imports
    a runtime; :func:`vdsr_deploy.runtime.artifacts.open_onnx_fp32` is the usual one)."""
    calibration = calibration or load_calibration_set()
    key = int8_key(weights_sha256, recipe, calibration.sha256)
    target = int8_path(engines_dir, key)
    found = None if rebuild else recorded(target, key)
    if found is not None:
        return found
    return build_int8(fp32_onnx(), target, key, recipe, calibration, open_onnx)


def build_int8(
    fp32_onnx: Path,
    target: Path,
    key: dict[str, Any],
    recipe: QuantizeConfig,
    calibration: CalibrationSet,
    open_onnx: Callable[[Path], Runner],
) -> Int8Artifact:
    """Calibrate, quantize, measure the cost on the held-out tiles, record key and cost in
    the metadata, then move into place atomically."""
    from vdsr_deploy.export.calibration import calibration_inputs, guard_inputs

    planes = calibration_inputs(calibration, recipe.scales, guard=False)
    config = QuantizeConfig(**{**asdict(recipe), "tiles": len(planes)})
    work = temporary_path(target)
    try:
        quantize_int8(fp32_onnx, work, planes, config, guard_planes=guard_inputs(recipe.scales), overwrite=True)
        with open_onnx(fp32_onnx) as reference, open_onnx(work) as candidate:
            cost = quality_cost(reference.infer, candidate.infer, calibration, recipe.scales)
        origin = {
            "origin": calibration.origin,
            "sha256": calibration.sha256,
            "calibrate": calibration.calibration,
            "held_out": len(calibration.held_out),
        }
        entries = {
            MetadataKey.INT8_KEY: json.dumps(key, sort_keys=True),
            MetadataKey.QUALITY_COST_DB: json.dumps(cost),
            MetadataKey.CALIBRATION: json.dumps(origin),
        }
        metadata = _add_metadata(work, entries)
        work.replace(target)
    finally:
        work.unlink(missing_ok=True)
    remember_metadata(target, metadata)
    return Int8Artifact(target, key, cost, built=True)


def _add_metadata(path: Path, entries: dict[str, str]) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for name, value in entries.items():
        entry = existing.get(name) or model.metadata_props.add()
        entry.key, entry.value = name, value
    onnx.save(model, str(path))
    return {p.key: p.value for p in model.metadata_props}
