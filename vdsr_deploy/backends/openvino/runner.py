"""OpenVINO runner: an exported VDSR ONNX (FP32, or the INT8 QDQ model) compiled for
OpenVINO's CPU plugin. openvino is imported only when the runner is activated.

The ONNX has dynamic N/H/W, so one compiled model takes every tile and image size. With a
cache folder, OpenVINO writes the compiled model there (``CACHE_DIR``) and a later start
loads it instead of compiling again; the folder is one per model content (a digest of the
ONNX bytes), so a re-exported model with the same path never loads a stale blob (OpenVINO
itself keys on the OpenVINO version, the device and the compile settings).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.errors import BackendUnavailableError, ConfigError, VdsrError
from vdsr_deploy.fileops import require_regular_file
from vdsr_deploy.runner import Runner, RunnerInfo

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
"""OpenVINO's INFERENCE_PRECISION_HINT per precision (int8: the QDQ model's quantized
layers run in int8, the rest in f32)."""


@dataclass(frozen=True)
class OpenVinoOptions:
    """Compile settings. ``precision``: fp32, bf16 or int8 (the ONNX must match: the FP32
    export for fp32/bf16, the QDQ model for int8); ``threads``: INFERENCE_NUM_THREADS (0:
    OpenVINO's default, all cores); ``cache_dir``: OpenVINO's model cache (None: none)."""

    precision: str = "fp32"
    threads: int = 0
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.precision not in HINTS:
            raise ConfigError(f"precision: expected one of {', '.join(HINTS)}, got {self.precision!r}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")

    def compile_config(self, model_cache: Path | None) -> dict[str, Any]:
        """The ``compile_model`` properties (``model_cache``: the CACHE_DIR to use)."""
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if model_cache is not None:
            config["CACHE_DIR"] = str(model_cache)
        return config


@functools.cache
def shared_core() -> Any:
    """The process's one ``openvino.Core``, made on first use and never released.

    OpenVINO's CPU plugin installs an alternate signal stack on the thread that creates it
    and puts back the one it found when it is destroyed. Two Cores whose plugins are
    destroyed in the order they were made (two runners closed first-opened first, as
    :func:`vdsr_deploy.runtime.speed.time_paths` does) leave the first plugin's freed stack
    installed, and the next signal on that thread (Ctrl-C) kills the process with a
    segmentation fault instead of stopping the job. One Core's plugin lives until the
    process ends, so that stack stays valid."""
    import openvino  # type: ignore[import-untyped, import-not-found, unused-ignore]

    return openvino.Core()


def model_cache_dir(cache_dir: Path, onnx_path: Path) -> Path:
    """The CACHE_DIR for ``onnx_path``: a subfolder of ``cache_dir`` named by a digest of
    the file's bytes."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    return Path(cache_dir) / f"{Path(onnx_path).stem}.{digest}"


class OpenVinoRunner(Runner):
    """Runs an exported VDSR ONNX file on OpenVINO's CPU plugin. Host form only: input
    float32 ``(N, 1, H, W)`` of any N/H/W, output a new float32 array of the same shape."""

    def __init__(self, onnx_path: Path, options: OpenVinoOptions | None = None) -> None:
        super().__init__()
        self._path = require_regular_file(Path(onnx_path), "ONNX file")
        self._options = options or OpenVinoOptions()
        self._request: Any = None
        self._model_cache: Path | None = None
        self._version = ""
        self._cancelled = False

    @property
    def options(self) -> OpenVinoOptions:
        return self._options

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(
            backend="openvino",
            device="cpu",
            precision=self._options.precision,
            details={
                "onnx": str(self._path),
                "hint": HINTS[self._options.precision],
                "threads": self._options.threads,
                "model_cache": str(self._model_cache) if self._model_cache is not None else None,
                "openvino": self._version,
            },
        )

    def activate(self) -> None:
        try:
            import openvino  # type: ignore[import-untyped, import-not-found, unused-ignore]
        except ImportError as error:
            raise BackendUnavailableError("openvino is not installed: pip install 'vdsr-deploy[openvino]'") from error
        self._version = str(openvino.get_version())
        if self._options.cache_dir is not None:
            self._model_cache = model_cache_dir(self._options.cache_dir, self._path)
            self._model_cache.mkdir(parents=True, exist_ok=True)
        try:
            config = self._options.compile_config(self._model_cache)
            compiled = shared_core().compile_model(str(self._path), "CPU", config)
        except Exception as error:  # openvino raises its own untyped exceptions
            raise BackendUnavailableError(f"{self._path}: OpenVINO cannot compile it ({error})") from error
        self._request = compiled.create_infer_request()

    def deactivate(self) -> None:
        self._request = None

    def interrupt(self) -> None:
        """Cancel the call in flight (``InferRequest.cancel``; OpenVINO honours it for an
        asynchronous request only, so :meth:`_infer` starts one and waits): the call raises
        a VdsrError within about one layer. A call started afterwards runs normally."""
        request = self._request
        if request is not None:
            self._cancelled = True
            request.cancel()

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        request = self._request
        self._cancelled = False
        try:
            request.start_async({0: batch})
            request.wait()
        except RuntimeError as error:
            if self._cancelled:
                raise VdsrError(f"{self.info.label}: the call was interrupted") from error
            raise
        result: NDArray[np.float32] = np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        return result
