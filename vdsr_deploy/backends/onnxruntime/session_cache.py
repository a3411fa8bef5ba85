"""ONNX Runtime session settings, and the optimised-graph cache that spares a run the
graph optimisation its previous run already did.

ONNX Runtime optimises a graph on every session creation (fusions, NCHWc layout for the
CPU's vector width, QDQ -> QLinearConv). With ``optimized_model_filepath`` it writes the
result; a later session loads that file with optimisation off. The written graph holds
CPU-specific kernels, so its name carries a key of the source model's bytes, the
onnxruntime version and this CPU's identity (model name + feature flags): a different
machine, version or model never loads it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vdsr_deploy.fileops import temporary_path

if TYPE_CHECKING:
    from vdsr_deploy.backends.onnxruntime.options import OrtOptions


@dataclass(frozen=True)
class OptimizedGraph:
    """Where the optimised graph of one model lives (``final``) and where a session being
    created writes it (``pending``, moved into place by :meth:`commit`)."""

    final: Path
    pending: Path

    @classmethod
    def for_model(cls, model: Path, directory: Path) -> OptimizedGraph:
        import onnxruntime

        from vdsr_deploy.environment import cpu_cache_key

        digest = hashlib.sha256(Path(model).read_bytes())
        digest.update(f"|{onnxruntime.__version__}|{cpu_cache_key()}".encode())
        final = Path(directory) / f"{Path(model).stem}.{digest.hexdigest()[:16]}.ort.onnx"
        pending = temporary_path(final)
        return cls(final, pending)

    @property
    def ready(self) -> bool:
        return self.final.is_file()

    def commit(self) -> None:
        """Move a freshly written graph into place (atomic; no-op when nothing was written)."""
        if self.pending.is_file():
            self.pending.replace(self.final)


def session_options(
    onnxruntime: Any, options: OrtOptions, model: Path, cached: OptimizedGraph | None
) -> tuple[Any, Path]:
    """The ``SessionOptions`` for ``options`` and the file to load: the cached optimised
    graph (optimisation off) when there is one, else ``model`` (all optimisations on, and
    the result written to ``cached.pending`` when a cache is given)."""
    settings = onnxruntime.SessionOptions()
    settings.log_severity_level = 3
    if options.threads:
        settings.intra_op_num_threads = options.threads
    settings.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
    level = onnxruntime.GraphOptimizationLevel
    if cached is not None and cached.ready:
        settings.graph_optimization_level = level.ORT_DISABLE_ALL
        return settings, cached.final
    settings.graph_optimization_level = level.ORT_ENABLE_ALL
    if cached is not None:
        cached.pending.parent.mkdir(parents=True, exist_ok=True)
        settings.optimized_model_filepath = str(cached.pending)
    return settings, Path(model)
