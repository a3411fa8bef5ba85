"""The artifact chain: do the ONNX files and the engine's JSON sidecar say they come from
these weights?"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import EngineMismatchError, VdsrError


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
    from vdsr_deploy.model.onnx_metadata import MetadataKey, read_metadata

    def verdict(found: str | None, passed: bool, detail: str) -> ArtifactCheck:
        return ArtifactCheck(str(path), "onnx", weights_sha256, found, passed, detail)

    try:
        metadata = read_metadata(path)
    except VdsrError as error:
        return verdict(None, False, str(error))
    found = metadata.get(MetadataKey.WEIGHTS_SHA256)
    precision = metadata.get(MetadataKey.PRECISION, "?")
    if found is None:
        return verdict(
            None, False, f"no {MetadataKey.WEIGHTS_SHA256} metadata: not exported by vdsr-deploy, provenance unknown"
        )
    if found != weights_sha256:
        return verdict(
            found,
            False,
            f"{precision} ONNX was exported from other weights (weights digest {found[:12]}, "
            f"these are {weights_sha256[:12]})",
        )
    return verdict(found, True, f"{precision} ONNX from these weights")


def check_engine_sidecar(
    engine: Path, weights_sha256: str, onnx_files: Sequence[Path] = ()
) -> ArtifactCheck:
    """The engine's JSON sidecar (same name, ``.json``) must name these weights; when the
    ONNX it was built from is among ``onnx_files``, its recorded ONNX hash must match too."""
    from vdsr_deploy.backends.tensorrt.keys import sidecar_path
    from vdsr_deploy.fileops import file_sha256

    def verdict(found: str | None, passed: bool, detail: str) -> ArtifactCheck:
        return ArtifactCheck(str(sidecar_path(engine)), "engine-sidecar", weights_sha256, found, passed, detail)

    if not sidecar_path(engine).exists():
        return verdict(None, False, "the engine has no JSON sidecar, so its provenance is unknown")
    try:
        data = _read_sidecar(engine)
    except EngineMismatchError as error:
        return verdict(None, False, str(error))
    onnx_section = data.get("onnx")
    if not isinstance(onnx_section, dict):
        return verdict(None, False, "sidecar has no 'onnx' section")
    found = onnx_section.get("weights_sha256")
    if found is None:
        return verdict(
            None, False, "sidecar does not record the weights digest (built from an ONNX without vdsr metadata)"
        )
    if found != weights_sha256:
        return verdict(
            str(found),
            False,
            f"engine was built from other weights (weights digest {str(found)[:12]}, "
            f"these are {weights_sha256[:12]})",
        )
    for onnx_path in onnx_files:
        if Path(onnx_path).name == onnx_section.get("file") and file_sha256(Path(onnx_path)) != onnx_section.get(
            "sha256"
        ):
            return verdict(str(found), False, f"engine was built from another version of {onnx_path}")
    return verdict(str(found), True, f"{data.get('precision', '?')} engine built from these weights")


def engine_precision(engine: Path | None) -> str | None:
    """The precision an engine's sidecar records (None: no engine, or no readable sidecar)."""
    if engine is None:
        return None
    try:
        precision = _read_sidecar(engine).get("precision")
    except EngineMismatchError:
        return None
    return str(precision) if precision else None


def _read_sidecar(engine: Path) -> Mapping[str, Any]:
    """The engine's JSON sidecar as it is written (no field required: the checks above say
    what is missing); EngineMismatchError when missing or unreadable."""
    from vdsr_deploy.backends.tensorrt.keys import sidecar_path
    from vdsr_deploy.backends.tensorrt.sidecar import read_sidecar_json

    return read_sidecar_json(sidecar_path(engine))
