"""The engine cache: the folder of engines and sidecars, and choosing which cached engine
to load (decisions returned as data, with reasons).

Each engine's file name encodes every build parameter and its JSON sidecar records them
(:mod:`~vdsr_deploy.backends.tensorrt.keys`, :mod:`~vdsr_deploy.backends.tensorrt.sidecar`).
The cache never loads a mismatching engine silently: :func:`select_engine` takes only an
exact match and otherwise names the nearest related engine and why it does not fit
(:func:`~vdsr_deploy.backends.tensorrt.matching.mismatch_reasons`); :func:`find_engine`
raises :class:`~vdsr_deploy.errors.EngineMismatchError` with that explanation. Building a
missing engine is the builder's (:mod:`~vdsr_deploy.backends.tensorrt.builder`).

Nothing here needs TensorRT or a GPU (plain functions over files and dataclasses).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import (
    SIDECAR_SUFFIX,
    EngineKey,
    describe_gpu,
    describe_profiles,
    engine_key,
    sidecar_path,
)
from vdsr_deploy.backends.tensorrt.matching import mismatch_reasons
from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar, read_sidecar
from vdsr_deploy.errors import EngineMismatchError
from vdsr_deploy.fileops import file_sha256
from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineCandidate:
    """A cached engine: its path, its sidecar, and whether the engine file is there."""

    engine: Path
    sidecar: EngineSidecar
    engine_exists: bool = True


@dataclass(frozen=True)
class EngineSelection:
    """The outcome of :func:`select_engine`: an exact match, or the nearest related engine
    (same ONNX or same weights) and why it does not fit, or nothing related at all."""

    match: Path | None
    nearest: Path | None = None
    reasons: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        """``use`` the exact match, or ``build`` a new engine (others stay cached)."""
        return "use" if self.match is not None else "build"

    def build_reasons(self, engines_dir: Path) -> tuple[str, ...]:
        """Why a new engine is built (empty when an exact match is used)."""
        if self.match is not None:
            return ()
        if self.nearest is None:
            return (f"no engine for this ONNX in {engines_dir}",)
        return tuple(f"the nearest cached engine, {self.nearest.name}, was {r}" for r in self.reasons)

    def explain(self, engines_dir: Path) -> str:
        if self.nearest is None:
            return f"{engines_dir}: no engine for this ONNX"
        return (
            f"{engines_dir}: no cached engine fits this ONNX, profile and machine; the nearest, "
            f"{self.nearest.name}, was {'; '.join(self.reasons)}; rebuild it (vdsr build)"
        )


def select_engine(
    candidates: Sequence[EngineCandidate], wanted: EngineKey, *, weights_sha256: str | None = None
) -> EngineSelection:
    """Pick the engine to load for ``wanted``: only an exact match; otherwise report the
    related candidate with the fewest differences."""
    related: list[tuple[int, str, EngineCandidate, list[str]]] = []
    for candidate in candidates:
        reasons = mismatch_reasons(candidate.sidecar.key, wanted)
        if not candidate.engine_exists:
            reasons.append("its engine file is missing")
        if not reasons:
            return EngineSelection(match=candidate.engine)
        same_model = candidate.sidecar.onnx_sha256 == wanted.onnx_sha256 or (
            weights_sha256 is not None and candidate.sidecar.weights_sha256 == weights_sha256
        )
        if same_model:
            related.append((len(reasons), candidate.engine.name, candidate, reasons))
    if not related:
        return EngineSelection(match=None)
    _, _, nearest, reasons = min(related, key=lambda item: (item[0], item[1]))
    return EngineSelection(match=None, nearest=nearest.engine, reasons=tuple(reasons))


def scan_engines(engines_dir: Path) -> list[EngineCandidate]:
    """Every engine sidecar in ``engines_dir`` (other JSON files and unreadable sidecars
    are skipped: they cannot match anything)."""
    directory = Path(engines_dir)
    if not directory.is_dir():
        return []
    candidates = []
    for path in sorted(directory.glob(f"*{SIDECAR_SUFFIX}")):
        try:
            sidecar = read_sidecar(path)
        except EngineMismatchError as error:
            _LOG.debug("skipping %s: %s", path, error)
            continue
        engine = path.with_name(sidecar.engine_file)
        candidates.append(
            EngineCandidate(engine=engine, sidecar=sidecar, engine_exists=engine.is_file())
        )
    return candidates


def wanted_key(
    onnx_path: Path,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int = 0,
) -> tuple[EngineKey, dict[str, str]]:
    """The key an engine for ``onnx_path`` and ``config`` built here would have, and the
    ONNX's ``vdsr.*`` metadata. The key's hash is of the file's bytes; the metadata comes
    through :func:`vdsr_deploy.model.onnx_metadata.onnx_metadata`, whose copy is trusted only while
    the file's size and modification time are unchanged."""
    onnx_sha = file_sha256(onnx_path)
    metadata = onnx_metadata(onnx_path)
    return engine_key(onnx_sha, config, gpu, tensorrt_version, cuda_major=cuda_major), metadata


def select_cached(
    engines_dir: Path, wanted: EngineKey, metadata: Mapping[str, str]
) -> EngineSelection:
    """:func:`select_engine` over the engines cached in ``engines_dir`` for ``wanted`` and
    the ONNX ``metadata`` of :func:`wanted_key` (its weights hash finds related engines)."""
    selection = select_engine(
        scan_engines(engines_dir), wanted, weights_sha256=metadata.get(MetadataKey.WEIGHTS_SHA256)
    )
    if selection.match is not None:
        problem = engine_file_problem(selection.match, read_sidecar(sidecar_path(selection.match)))
        if problem is not None:
            return EngineSelection(match=None, nearest=selection.match, reasons=(problem,))
    return selection


def engine_file_problem(engine: Path, sidecar: EngineSidecar) -> str | None:
    """Why the engine file is not the one its sidecar describes (size or sha256), or None.
    An engine is only used when this is None: a build interrupted, or caught between
    publishing its engine and its sidecar, is rebuilt, never loaded."""
    try:
        size = engine.stat().st_size
    except OSError as error:
        return f"its engine file cannot be read ({error})"
    if size != sidecar.engine_bytes:
        return f"its engine file has {size} bytes, its sidecar records {sidecar.engine_bytes}"
    if file_sha256(engine) != sidecar.engine_sha256:
        return "its engine file does not match its sidecar (sha256 differs)"
    return None


def find_engine(
    engines_dir: Path,
    onnx_path: Path,
    config: EngineBuildConfig,
    gpu: DeviceInfo,
    tensorrt_version: str,
    *,
    cuda_major: int = 0,
) -> Path | None:
    """The cached engine for exactly this ONNX, config, GPU, TensorRT and CUDA version;
    None when no engine of this model is cached; EngineMismatchError explaining the
    nearest one when engines of this model exist but none fits (a strict lookup: the
    runtime path, :func:`~vdsr_deploy.backends.tensorrt.builder.find_or_build_engine`,
    builds instead)."""
    selection = select_cached(
        engines_dir, *wanted_key(onnx_path, config, gpu, tensorrt_version, cuda_major=cuda_major)
    )
    if selection.match is not None:
        return selection.match
    if selection.nearest is not None:
        raise EngineMismatchError(selection.explain(Path(engines_dir)))
    return None


@dataclass(frozen=True)
class EngineRecord:
    """An engine ready to load: where, its sidecar, whether it was built just now, and
    (after a rebuild) why the cached one did not fit."""

    path: Path
    sidecar: EngineSidecar
    built: bool
    replaced: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "engine": str(self.path),
            "sidecar": str(sidecar_path(self.path)),
            "built": self.built,
            "replaced_because": list(self.replaced),
            "precision": self.sidecar.precision,
            "profiles": describe_profiles(self.sidecar.profiles),
            "gpu": describe_gpu(self.sidecar.gpu_name, self.sidecar.compute_capability),
            "tensorrt": self.sidecar.tensorrt_version,
            "build_seconds": self.sidecar.build_seconds,
            "layers": self.sidecar.layers,
            "fp16_layers": self.sidecar.fp16_layers,
        }
