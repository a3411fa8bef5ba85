"""The artifact chain: do the ONNX files and the engine's JSON sidecar say they come from
these weights?"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import VdsrError


@dataclass(frozen=True)
class ArtifactCheck:
    """Does an artifact (ONNX file, engine sidecar) say it comes from these weights?"""

    artifact: str
    kind: str
    expected: str
    found: str | None
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        from vdsr_deploy.environment import portable_path

        return {
            "artifact": portable_path(self.artifact),
            "kind": self.kind,
            "expected_weights_sha256": self.expected,
            "found": self.found,
            "passed": self.passed,
            "detail": self.detail,
        }


def check_onnx(path: Path, weights_sha256: str) -> ArtifactCheck:
    """The ONNX file's ``vdsr.weights_sha256`` metadata must name these weights."""
    from vdsr_deploy.artifacts import MetadataKey, read_metadata

    try:
        metadata = read_metadata(path)
    except VdsrError as error:
        return ArtifactCheck(str(path), "onnx", weights_sha256, None, False, str(error))
    found = metadata.get(MetadataKey.WEIGHTS_SHA256)
    precision = metadata.get(MetadataKey.PRECISION, "?")
    if found is None:
        return ArtifactCheck(
            str(path),
            "onnx",
            weights_sha256,
            None,
            False,
            "no vdsr.weights_sha256 metadata: not exported by vdsr-deploy, provenance unknown",
        )
    if found != weights_sha256:
        return ArtifactCheck(
            str(path),
            "onnx",
            weights_sha256,
            found,
            False,
            f"{precision} ONNX was exported from other weights (weights digest {found[:12]}, "
            f"these are {weights_sha256[:12]})",
        )
    return ArtifactCheck(
        str(path), "onnx", weights_sha256, found, True, f"{precision} ONNX from these weights"
    )


def check_engine_sidecar(
    engine: Path, weights_sha256: str, onnx_files: Sequence[Path] = ()
) -> ArtifactCheck:
    """The engine's JSON sidecar (same name, ``.json``) must name these weights; when the
    ONNX it was built from is among ``onnx_files``, its recorded ONNX hash must match too."""
    from vdsr_deploy.backends.tensorrt.keys import sidecar_path
    from vdsr_deploy.fileops import file_sha256

    sidecar = sidecar_path(engine)
    label = str(sidecar)
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ArtifactCheck(
            label,
            "engine-sidecar",
            weights_sha256,
            None,
            False,
            "the engine has no JSON sidecar, so its provenance is unknown",
        )
    except (OSError, ValueError) as error:
        return ArtifactCheck(
            label, "engine-sidecar", weights_sha256, None, False, f"unreadable sidecar ({error})"
        )
    onnx_section = data.get("onnx") if isinstance(data, dict) else None
    if not isinstance(onnx_section, dict):
        return ArtifactCheck(
            label, "engine-sidecar", weights_sha256, None, False, "sidecar has no 'onnx' section"
        )
    found = onnx_section.get("weights_sha256")
    if found is None:
        return ArtifactCheck(
            label,
            "engine-sidecar",
            weights_sha256,
            None,
            False,
            "sidecar does not record the weights digest "
            "(built from an ONNX without vdsr metadata)",
        )
    if found != weights_sha256:
        return ArtifactCheck(
            label,
            "engine-sidecar",
            weights_sha256,
            str(found),
            False,
            f"engine was built from other weights (weights digest {str(found)[:12]}, "
            f"these are {weights_sha256[:12]})",
        )
    onnx_sha = onnx_section.get("sha256")
    for onnx_path in onnx_files:
        if (
            Path(onnx_path).name == onnx_section.get("file")
            and file_sha256(Path(onnx_path)) != onnx_sha
        ):
            return ArtifactCheck(
                label,
                "engine-sidecar",
                weights_sha256,
                str(found),
                False,
                f"engine was built from another version of {onnx_path}",
            )
    return ArtifactCheck(
        label,
        "engine-sidecar",
        weights_sha256,
        str(found),
        True,
        f"{data.get('precision', '?')} engine built from these weights",
    )


def engine_precision(engine: Path | None) -> str | None:
    """The precision an engine's sidecar records (None: no engine, or no readable sidecar)."""
    from vdsr_deploy.backends.tensorrt.keys import sidecar_path

    if engine is None:
        return None
    try:
        data = json.loads(sidecar_path(engine).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    precision = data.get("precision") if isinstance(data, dict) else None
    return str(precision) if precision else None
