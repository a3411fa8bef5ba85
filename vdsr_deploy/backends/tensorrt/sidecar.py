"""The JSON sidecar next to each engine: :class:`EngineSidecar` (the engine's key plus the
facts of its build: hashes, sizes, build time, layer precisions), its JSON layout, and
reading and writing it.

An engine without a trustworthy sidecar is never loaded: :func:`read_sidecar` raises
:class:`~vdsr_deploy.errors.EngineMismatchError` for a missing, unreadable or
other-schema sidecar. Nothing here needs TensorRT or a GPU.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vdsr_deploy.backends.tensorrt.keys import EngineKey
from vdsr_deploy.errors import EngineMismatchError
from vdsr_deploy.fileops import atomic_write_bytes
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME, ShapeProfile

SIDECAR_SCHEMA = 2


def _key_fields(key: EngineKey) -> dict[str, Any]:
    """The :class:`EngineKey` fields of ``key`` (a key or a sidecar) by name."""
    return {f.name: getattr(key, f.name) for f in fields(EngineKey)}


@dataclass(frozen=True, kw_only=True)
class EngineSidecar(EngineKey):
    """What the JSON next to an engine records: the key it was built for (the fields of
    :class:`EngineKey`) and the facts of its build (see :meth:`to_dict` for the layout)."""

    engine_file: str
    engine_sha256: str
    engine_bytes: int
    onnx_file: str
    weights_sha256: str | None
    build_seconds: float
    layers: int
    fp16_layers: int
    created: str = ""
    timing_cache: str | None = None
    schema: int = SIDECAR_SCHEMA

    @classmethod
    def from_key(
        cls,
        key: EngineKey,
        *,
        engine_file: str,
        engine_sha256: str,
        engine_bytes: int,
        onnx_file: str,
        weights_sha256: str | None,
        build_seconds: float,
        layers: int,
        fp16_layers: int,
        created: str = "",
        timing_cache: str | None = None,
    ) -> EngineSidecar:
        """The sidecar of an engine built for ``key``, with the facts of its build."""
        return cls(
            **_key_fields(key),
            engine_file=engine_file,
            engine_sha256=engine_sha256,
            engine_bytes=engine_bytes,
            onnx_file=onnx_file,
            weights_sha256=weights_sha256,
            build_seconds=build_seconds,
            layers=layers,
            fp16_layers=fp16_layers,
            created=created,
            timing_cache=timing_cache,
        )

    @property
    def key(self) -> EngineKey:
        """The key the engine was built for, as a plain :class:`EngineKey`."""
        return EngineKey(**_key_fields(self))

    @property
    def profile(self) -> ShapeProfile:
        """The (first) optimization profile: what every execution context accepts."""
        return self.profiles[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "engine": {
                "file": self.engine_file,
                "sha256": self.engine_sha256,
                "bytes": self.engine_bytes,
            },
            "onnx": {
                "file": self.onnx_file,
                "sha256": self.onnx_sha256,
                "weights_sha256": self.weights_sha256,
            },
            "precision": self.precision,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "profiles": [p.to_dict() for p in self.profiles],
            "tensorrt_version": self.tensorrt_version,
            "gpu": {
                "name": self.gpu_name,
                "compute_capability": list(self.compute_capability),
                "multiprocessors": self.multiprocessors,
            },
            "cuda_major": self.cuda_major,
            "build_options": {
                "workspace_bytes": self.workspace_bytes,
                "optimization_level": self.optimization_level,
                "tf32": self.tf32,
                "strongly_typed": True,
                "timing_cache": self.timing_cache,
                "recipe": self.build_recipe,
            },
            "build_seconds": self.build_seconds,
            "layers": {"total": self.layers, "fp16": self.fp16_layers},
            "vdsr_deploy_version": self.package_version,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSidecar:
        """Parse :meth:`to_dict`'s layout; ValueError/KeyError/TypeError on anything else."""
        if data.get("schema") != SIDECAR_SCHEMA:
            raise ValueError(
                f"expected schema {SIDECAR_SCHEMA}, got {data.get('schema')!r} (written by another "
                "version of vdsr-deploy)"
            )
        engine, onnx, gpu = data["engine"], data["onnx"], data["gpu"]
        options, layers = data["build_options"], data["layers"]
        capability = gpu["compute_capability"]
        profiles = tuple(ShapeProfile.from_dict(p) for p in data["profiles"])
        if not profiles:
            raise ValueError("no optimization profile")
        weights = onnx.get("weights_sha256")
        timing = options.get("timing_cache")
        return cls(
            engine_file=str(engine["file"]),
            engine_sha256=str(engine["sha256"]),
            engine_bytes=int(engine["bytes"]),
            onnx_file=str(onnx["file"]),
            onnx_sha256=str(onnx["sha256"]),
            weights_sha256=None if weights is None else str(weights),
            precision=str(data["precision"]),
            profiles=profiles,
            tensorrt_version=str(data["tensorrt_version"]),
            gpu_name=str(gpu["name"]),
            compute_capability=(int(capability[0]), int(capability[1])),
            workspace_bytes=int(options["workspace_bytes"]),
            optimization_level=int(options["optimization_level"]),
            tf32=bool(options["tf32"]),
            build_seconds=float(data["build_seconds"]),
            layers=int(layers["total"]),
            fp16_layers=int(layers["fp16"]),
            package_version=str(data.get("vdsr_deploy_version", "")),
            created=str(data.get("created", "")),
            timing_cache=None if timing is None else str(timing),
            multiprocessors=int(gpu["multiprocessors"]),
            cuda_major=int(data["cuda_major"]),
            build_recipe=int(options["recipe"]),
        )


def read_sidecar(path: Path) -> EngineSidecar:
    """The sidecar at ``path``; EngineMismatchError when missing or unreadable (an engine
    without a trustworthy sidecar is never loaded)."""
    path = Path(path)
    data = read_sidecar_json(path)
    try:
        return EngineSidecar.from_dict(data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar ({type(error).__name__}: {error}); rebuild the "
            "engine"
        ) from error


def read_sidecar_json(path: Path) -> Mapping[str, Any]:
    """The sidecar at ``path`` as the JSON object it is, no field required (the one reader
    of the file: :func:`read_sidecar` builds on it, ``vdsr validate``'s provenance check
    reads the fields it needs); EngineMismatchError when missing, not JSON or not an
    object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise EngineMismatchError(
            f"{path}: the engine's JSON sidecar is missing, so its GPU, TensorRT version and "
            "profile "
            "are unknown; rebuild the engine (vdsr build)"
        ) from error
    except (OSError, ValueError) as error:
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar ({error}); rebuild the engine"
        ) from error
    if not isinstance(data, Mapping):
        raise EngineMismatchError(
            f"{path}: unreadable engine sidecar (not a JSON object); rebuild the engine"
        )
    return data


def write_sidecar(path: Path, sidecar: EngineSidecar) -> None:
    atomic_write_bytes(Path(path), (json.dumps(sidecar.to_dict(), indent=2) + "\n").encode("utf-8"))
