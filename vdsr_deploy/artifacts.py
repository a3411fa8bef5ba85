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
import os
import threading
from pathlib import Path

from vdsr_deploy.errors import InvalidInputError

SIDECAR_SUFFIX = ".meta.json"
VERIFIED_METADATA = "vdsr.verified"
EXPORTER_METADATA_KEY = "vdsr.exporter"
EXPORTER_VERSION = 2
"""Bump when the exporter's graph or metadata change: ONNX files of an older exporter found
in an engines folder are then re-exported (and engines built from them rebuilt, by hash)."""
"""Metadata key of the export's verification against PyTorch (written once, at export)."""


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
    path = Path(onnx_path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: ONNX file not found")
    stamp = _stamp(path)
    sidecar = sidecar_path(path)
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
        if stored.get("stamp") == stamp and isinstance(stored.get("metadata"), dict):
            return {str(k): str(v) for k, v in stored["metadata"].items()}
    except (OSError, ValueError, AttributeError):
        pass
    from vdsr_deploy.export import read_metadata

    metadata = read_metadata(path)
    remember_metadata(path, metadata)
    return metadata


def remember_metadata(onnx_path: Path, metadata: dict[str, str]) -> None:
    """Write the sidecar copy for ``onnx_path`` as it is now (best effort: a read-only
    folder only costs the next run a re-read)."""
    sidecar = sidecar_path(Path(onnx_path))
    temporary = sidecar.with_name(f".{sidecar.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        record = {"stamp": _stamp(Path(onnx_path)), "metadata": metadata}
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
        temporary.replace(sidecar)
    except OSError:
        temporary.unlink(missing_ok=True)
