"""Facts about the model files a run is given (weights, ONNX, engine), read without loading them.

:func:`model_identity` names which model made an output, for a batch job's resume check;
:func:`receptive_radius` is how much context a tile needs for exact results (the network's
depth in pixels), for the halo check. Both read headers and file stats only, so they cost
nothing next to a run. The CLI and Python callers get the same answers from here.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_DEPTH = 20
"""The shipped network's depth, assumed for an ONNX file that does not record its own."""


def model_identity(weights: Path | None, onnx: Path | None = None, engine: Path | None = None) -> str:
    """Which model made an output (for resume): each given artifact's name, size and mtime
    (``weights`` None: the shipped weights), ``|``-joined; a missing file is named as such."""
    from vdsr_deploy.model.weights import default_weights_path

    parts = []
    for path in (weights or default_weights_path(), onnx, engine):
        if path is None:
            continue
        try:
            stat = Path(path).stat()
            parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            parts.append(f"{Path(path).name}:missing")
    return "|".join(parts)


def receptive_radius(weights: Path | None, onnx: Path | None = None) -> int:
    """The receptive radius in pixels of the model a run uses: from the ONNX file's metadata
    when only an ONNX file is given, else from the weights' header (``None``: the shipped
    weights). Raises :class:`~vdsr_deploy.errors.VdsrError` for an unreadable file."""
    if onnx is not None and weights is None:
        from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata

        return int(onnx_metadata(onnx).get(MetadataKey.DEPTH, str(DEFAULT_DEPTH)))
    from vdsr_deploy.model.weights import read_depth

    return read_depth(weights)
