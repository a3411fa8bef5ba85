"""ONNX Runtime session settings (:class:`OrtOptions`) and the execution providers it knows;
no onnxruntime import here except to ask which providers are installed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ConfigError
from vdsr_deploy.io_names import ShapeProfile

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


@dataclass(frozen=True)
class OrtOptions:
    """Session settings. ``provider``: cpu, cuda or tensorrt. For tensorrt, the engine and
    timing caches go to ``cache_dir`` and ``profile`` sets trt_profile_min/opt/max_shapes.
    ``optimized_dir`` (CPU): keep the optimised graph there and load it next time instead
    of optimising again (see :func:`vdsr_deploy.backends.onnxruntime.session_cache.session_options`).
    ``spinning``: let idle ONNX Runtime threads spin (off: on a few shared cores a
    spinning pool takes CPU from the image loaders and from other work)."""

    provider: str = "cpu"
    threads: int = 0
    device_id: int = 0
    cache_dir: Path | None = None
    profile: ShapeProfile | None = None
    fp16: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    optimized_dir: Path | None = None
    spinning: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"provider: expected one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")


def available_providers() -> list[str]:
    """Providers onnxruntime reports ([] when onnxruntime is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())
