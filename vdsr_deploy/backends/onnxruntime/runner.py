"""ONNX Runtime runner: CPU, and the CUDA / TensorRT execution providers when installed
(onnxruntime-gpu). onnxruntime is imported only when a session is created.

The device form (:meth:`OnnxRuntimeRunner.infer_tensor`) binds the caller's torch tensor
and a new output tensor to the session by pointer (I/O binding), on the CPU or on
``cuda:N`` for the GPU providers, so no copy goes through numpy or the host. ONNX
Runtime's ``Run`` blocks the calling thread and runs on its own CUDA stream, so on a GPU
the call first waits for the caller's stream (the input must be complete) and returns a
finished output: it is synchronous, unlike the PyTorch and TensorRT runners.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.backends.onnxruntime.options import PROVIDERS, OrtOptions
from vdsr_deploy.errors import BackendUnavailableError
from vdsr_deploy.fileops import require_regular_file
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME
from vdsr_deploy.model.onnx_metadata import MetadataKey
from vdsr_deploy.runner import Runner, RunnerInfo

if TYPE_CHECKING:
    import torch

_log = logging.getLogger(__name__)


def _shape_string(shape: tuple[int, int, int, int]) -> str:
    return f"{INPUT_NAME}:" + "x".join(str(v) for v in shape)


def provider_list(options: OrtOptions) -> list[tuple[str, dict[str, Any]]]:
    """The ``providers`` argument for ``InferenceSession``, falling back to CPU last."""
    chosen: list[tuple[str, dict[str, Any]]] = []
    if options.provider == "tensorrt":
        trt: dict[str, Any] = {"device_id": options.device_id, "trt_fp16_enable": options.fp16}
        if options.cache_dir is not None:
            trt.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=str(options.cache_dir),
                trt_timing_cache_enable=True,
                trt_timing_cache_path=str(options.cache_dir),
            )
        if options.profile is not None:
            trt.update(
                trt_profile_min_shapes=_shape_string(options.profile.min),
                trt_profile_opt_shapes=_shape_string(options.profile.opt),
                trt_profile_max_shapes=_shape_string(options.profile.max),
            )
        trt.update(options.extra)
        chosen.append((PROVIDERS["tensorrt"], trt))
        chosen.append((PROVIDERS["cuda"], {"device_id": options.device_id}))
    elif options.provider == "cuda":
        chosen.append((PROVIDERS["cuda"], {"device_id": options.device_id, **options.extra}))
    chosen.append((PROVIDERS["cpu"], {}))
    return chosen


class OnnxRuntimeRunner(Runner):
    """Runs an exported VDSR ONNX file (FP32 or FP16 graph; I/O always float32)."""

    def __init__(self, onnx_path: Path, options: OrtOptions | None = None) -> None:
        super().__init__()
        self._path = require_regular_file(Path(onnx_path), "ONNX file")
        self._options = options or OrtOptions()
        self._session: Any = None
        self._precision = "fp16" if "fp16" in self._path.name else "int8" if "int8" in self._path.name else "fp32"
        self._loaded_from = self._path
        self._run_options: Any = None  # those of the call in flight, for interrupt()

    @property
    def options(self) -> OrtOptions:
        return self._options

    @property
    def info(self) -> RunnerInfo:
        active = self._session.get_providers() if self._session is not None else []
        return RunnerInfo(
            backend="onnxruntime",
            device=self._options.provider,
            precision=self._precision,
            details={
                "onnx": str(self._path),
                "providers": active,
                "threads": self._options.threads,
                "loaded_from": str(self._loaded_from),
            },
        )

    def activate(self) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise BackendUnavailableError(
                "onnxruntime is not installed: pip install 'vdsr-deploy[cpu]' (or [gpu] for CUDA)"
            ) from error
        wanted = PROVIDERS[self._options.provider]
        if wanted not in onnxruntime.get_available_providers():
            raise BackendUnavailableError(
                f"ONNX Runtime provider {wanted} is not available here "
                f"(have {', '.join(onnxruntime.get_available_providers())}); "
                "install onnxruntime-gpu instead of onnxruntime for cuda/tensorrt"
            )
        from vdsr_deploy.backends.onnxruntime.session_cache import OptimizedGraph, session_options

        if self._options.cache_dir is not None:
            self._options.cache_dir.mkdir(parents=True, exist_ok=True)
        cached = (
            OptimizedGraph.for_model(self._path, self._options.optimized_dir)
            if self._options.optimized_dir is not None and self._options.provider == "cpu"
            else None
        )
        settings, source = session_options(onnxruntime, self._options, self._path, cached)
        try:
            self._session = self._open_session(onnxruntime, source, settings)
        except BackendUnavailableError:
            if cached is None or source != cached.final:
                raise
            # the cache is disposable: a damaged entry costs one optimisation, never a run
            _log.warning(
                "note: %s: the cached optimised graph is unreadable; removed, and %s is optimised again",
                cached.final,
                self._path.name,
            )
            cached.final.unlink(missing_ok=True)
            settings, source = session_options(onnxruntime, self._options, self._path, cached)
            self._session = self._open_session(onnxruntime, source, settings)
        if cached is not None:
            cached.commit()
        self._loaded_from = source
        if wanted not in self._session.get_providers():
            raise BackendUnavailableError(f"{wanted} could not be initialised for {self._path}")
        declared = self._session.get_modelmeta().custom_metadata_map.get(MetadataKey.PRECISION)
        if declared:
            self._precision = str(declared)

    def _open_session(self, onnxruntime: Any, source: Path, settings: Any) -> Any:
        try:
            return onnxruntime.InferenceSession(
                str(source), sess_options=settings, providers=provider_list(self._options)
            )
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise BackendUnavailableError(f"{source}: ONNX Runtime cannot load it ({error})") from error

    def deactivate(self) -> None:
        self._session = None

    def interrupt(self) -> None:
        """ONNX Runtime checks ``RunOptions.terminate`` between nodes: the call in flight
        raises within about one layer."""
        options = self._run_options
        if options is not None:
            options.terminate = True

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        import onnxruntime

        self._run_options = onnxruntime.RunOptions()
        outputs = self._session.run(
            [OUTPUT_NAME], {INPUT_NAME: batch}, run_options=self._run_options
        )
        result: NDArray[np.float32] = np.asarray(outputs[0], dtype=np.float32)
        return result

    @property
    def tensor_device(self) -> str:
        if self._options.provider == "cpu":
            return "cpu"
        return f"cuda:{self._options.device_id}"

    def _infer_tensor(self, batch: torch.Tensor, stream: torch.cuda.Stream | None) -> torch.Tensor:
        import torch

        on_gpu = self._options.provider != "cpu"
        if on_gpu:
            (stream or torch.cuda.current_stream(batch.device)).synchronize()
        device_type = "cuda" if on_gpu else "cpu"
        device_id = self._options.device_id if on_gpu else 0
        shape = tuple(int(v) for v in batch.shape)
        output = torch.empty_like(batch)
        binding = self._session.io_binding()
        binding.bind_input(
            INPUT_NAME, device_type, device_id, np.float32, shape, batch.data_ptr()
        )
        binding.bind_output(
            OUTPUT_NAME, device_type, device_id, np.float32, shape, output.data_ptr()
        )
        self._session.run_with_iobinding(binding)
        return output
