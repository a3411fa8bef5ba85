"""Reading an ONNX artifact's metadata without paying for it on every run.

The metadata inside the ONNX file (``metadata_props``) is the record: weights hash,
precision, the export's verification, the INT8 key and measured quality cost. Reading it
needs the ``onnx`` package and a parse of the whole file, which a fast start cannot afford
each run; :func:`onnx_metadata` keeps a copy in ``<file>.meta.json`` next to it, trusted
only while the file's size and modification time are those recorded (any rewrite of the
ONNX invalidates it), and otherwise re-reads the file and refreshes the copy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import BuildError
from vdsr_deploy.fileops import atomic_write_bytes, require_regular_file

SIDECAR_SUFFIX = ".meta.json"
EXPORTER_VERSION = 2
"""Bump when the exporter's graph or metadata change: ONNX files of an older exporter found
in an engines folder are then re-exported (and engines built from them rebuilt, by hash)."""


class MetadataKey:
    """The ``metadata_props`` keys of a vdsr-deploy ONNX: the one list of them."""

    PRECISION = "vdsr.precision"
    WEIGHTS_SHA256 = "vdsr.weights_sha256"
    """The weights digest (tensors only), not the weights file's sha256."""
    SCALES = "vdsr.scales"
    DEPTH = "vdsr.depth"
    CHANNELS = "vdsr.channels"
    INPUT = "vdsr.input"
    OUTPUT = "vdsr.output"
    EXPORTER = "vdsr.exporter"
    VERSIONS = "vdsr.versions"
    VERIFIED = "vdsr.verified"
    """The export's verification against PyTorch (written once, at export)."""
    QUANTIZATION = "vdsr.quantization"
    INT8_KEY = "vdsr.int8_key"
    QUALITY_COST_DB = "vdsr.quality_cost_db"
    CALIBRATION = "vdsr.calibration"


def default_onnx_name(weights_sha256: str, precision: str) -> str:
    """The cached export's file name for these weights and precision."""
    return f"vdsr-{weights_sha256[:12]}-{precision}.onnx"


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + SIDECAR_SUFFIX)


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def onnx_metadata(onnx_path: Path) -> dict[str, str]:
    """The ``metadata_props`` of ``onnx_path``, from the sidecar copy when it is current."""
    path = require_regular_file(Path(onnx_path), "ONNX file")
    stamp = _stamp(path)
    sidecar = sidecar_path(path)
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        if stored.get("stamp") == stamp and isinstance(stored.get("metadata"), dict):
            return {str(k): str(v) for k, v in stored["metadata"].items()}
    except (OSError, ValueError, AttributeError):
        pass
    metadata = read_metadata(path)
    remember_metadata(path, metadata)
    return metadata


def read_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file parsed from the file itself (weights are not
    loaded); BuildError when it is not a readable ONNX. :func:`onnx_metadata` is the cached
    form that runs use."""
    import onnx

    try:
        loaded = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others
        raise BuildError(f"{path}: not a readable ONNX file ({error})") from error
    return model_metadata(loaded)


def model_metadata(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of a loaded ``onnx.ModelProto`` as a dict."""
    return {str(p.key): str(p.value) for p in model.metadata_props}


def is_current_export(metadata: Mapping[str, str], weights_sha256: str, precision: str) -> bool:
    """Whether an ONNX with ``metadata`` is this exporter's verified export of these weights
    in ``precision`` (else it is to be exported again)."""
    return (
        metadata.get(MetadataKey.WEIGHTS_SHA256) == weights_sha256
        and metadata.get(MetadataKey.PRECISION) == precision
        and MetadataKey.VERIFIED in metadata
        and metadata.get(MetadataKey.EXPORTER) == str(EXPORTER_VERSION)
    )


def remember_metadata(onnx_path: Path, metadata: dict[str, str]) -> None:
    """Write the sidecar copy for ``onnx_path`` as it is now (best effort: a read-only
    folder only costs the next run a re-read)."""
    sidecar = sidecar_path(Path(onnx_path))
    try:
        record = {"stamp": _stamp(Path(onnx_path)), "metadata": metadata}
        atomic_write_bytes(sidecar, json.dumps(record, indent=1, sort_keys=True).encode())
    except OSError:
        pass
