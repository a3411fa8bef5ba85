"""Artifacts first, then the runner: :func:`open_runner` is the one place that turns a user's
:class:`~vdsr_deploy.backends.registry.RunnerSpec` into an inactive runner. It resolves
``--precision auto`` (:mod:`vdsr_deploy.runtime.resolve`), picks the backend
(:func:`~vdsr_deploy.backends.registry.choose_backend`), checks it can run here, makes or
finds the artifact that backend executes (the weights; the verified ONNX export or the
cached INT8 model; the TensorRT engine from the engine cache), and only then asks the
backend's descriptor to open a runner (:class:`~vdsr_deploy.backends.descriptor.OpenRequest`).
``vdsr upscale``, ``vdsr validate``, ``vdsr bench``, ``vdsr eval`` and the cluster workers
all open their runners here; the runtimes themselves never build anything.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.backends.descriptor import OpenRequest
from vdsr_deploy.backends.device import cuda_index
from vdsr_deploy.backends.registry import (
    REGISTRY,
    RunnerSpec,
    check_backend_precision,
    choose_backend,
)
from vdsr_deploy.backends.tensorrt.build_config import (
    DEFAULT_CONTEXTS,
    DEFAULT_OPTIMIZATION_LEVEL,
    DEFAULT_WORKSPACE_BYTES,
)
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.io_names import profile_for_tiles
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.precision.decision import PrecisionChoice
from vdsr_deploy.precision.names import AUTO
from vdsr_deploy.runner import Runner
from vdsr_deploy.runtime.artifacts import cached_onnx, exported_onnx, int8_artifact
from vdsr_deploy.runtime.cache import default_cache_dir

if TYPE_CHECKING:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

def default_engines_dir() -> Path:
    """Where built ONNX files, INT8 models and engines land without ``--engines-dir``: the
    cache folder (``$VDSR_CACHE_DIR``, else the platform's user cache folder;
    :mod:`vdsr_deploy.runtime.cache`)."""
    return default_cache_dir()


def open_runner(spec: RunnerSpec, *, tiling: TileConfig, batch: int, max_side: int | None = None) -> Runner:
    """An inactive runner for ``spec``, with any artifact it needs built or found
    (``max_side``: with ``tiling.tile`` 0, the largest image side a TensorRT engine must
    take; default :data:`~vdsr_deploy.backends.tensorrt.build_config.DEFAULT_WHOLE_IMAGE_MAX_SIDE`);
    BackendUnavailableError (the reason) when the runtime cannot run here. ``auto``
    precision is resolved first (:func:`vdsr_deploy.runtime.resolve.resolve_spec`). The
    runner's :attr:`~vdsr_deploy.runner.Runner.model_identity` names the files ``spec`` gives."""
    given = spec
    engines_dir = spec.engines_dir or default_engines_dir()
    if spec.precision == AUTO:
        spec, _ = resolve_precision(spec)
    backend = REGISTRY[choose_backend(spec).backend]
    check_artifacts_used(spec, backend.name)
    if backend.name == "onnxruntime":
        from vdsr_deploy.backends.onnxruntime import device_id

        # a --device/--provider contradiction fails before any file is read or exported
        device_id(spec.device, spec.provider)
    if spec.onnx is not None:
        from vdsr_deploy.model.provenance import check_given_onnx

        # never run a model on faith, nor under another precision's name
        check_given_onnx(spec.onnx, foreign=spec.foreign_model, precision=spec.precision)
    spec = replace(spec, backend=backend.name)
    check_backend_precision(backend.name, spec.precision)
    reason = backend.unavailable(spec.device, spec.precision, spec.provider)
    if reason is not None:
        raise BackendUnavailableError(reason)
    if backend.artifact == "engine":
        runner: Runner = _tensorrt_runner(spec, engines_dir, tiling, batch, max_side)
    else:
        runner = backend.open(
            OpenRequest(
                precision=spec.precision,
                artifact=spec.weights if backend.artifact == "weights" else spec.onnx or _onnx_for(spec, engines_dir),
                device=spec.device,
                provider=spec.provider,
                cache_dir=engines_dir,
                profile=profile_for_tiles(tiling, batch) if tiling.tile else None,
                threads=spec.threads,
                channels_last=spec.channels_last,
                allow_tf32=spec.allow_tf32,
                cuda_graphs=spec.cuda_graphs,
            )
        )
    runner.model_identity = given.model_identity()
    return runner


def resolve_precision(spec: RunnerSpec) -> tuple[RunnerSpec, PrecisionChoice]:
    """``spec`` with ``--precision auto`` resolved, and the choice as data
    (:func:`vdsr_deploy.runtime.resolve.resolve_spec`): on the CPU the eligible paths are
    timed on this machine once (cached), each through a runner opened here."""
    from vdsr_deploy.runtime.resolve import resolve_spec

    return resolve_spec(spec, spec.engines_dir or default_engines_dir(), open_path=_timing_runner)


def _timing_runner(spec: RunnerSpec) -> Runner:
    """An inactive runner for a concrete ``spec`` that takes any input shape."""
    return open_runner(spec, tiling=TileConfig(tile=0), batch=1)


def check_artifacts_used(spec: RunnerSpec, backend: str) -> None:
    """A ConfigError when ``backend`` (``spec``'s, ``auto`` resolved) would not run a file
    ``spec`` names: PyTorch runs the weights, and only TensorRT runs an engine. A given file
    that is silently ignored would make the user believe it ran."""
    picked = " (what --backend auto picked here)" if spec.backend == AUTO else ""
    artifact = REGISTRY[backend].artifact
    if spec.onnx is not None and artifact == "weights":
        raise ConfigError(
            f"--onnx {spec.onnx}: the {backend} backend{picked} runs the weights, not an ONNX file; "
            "use --backend onnxruntime, openvino or tensorrt to run it, or leave --onnx out"
        )
    if spec.engine is not None and artifact != "engine":
        raise ConfigError(
            f"--engine {spec.engine}: the {backend} backend{picked} does not run TensorRT engines; "
            "use --backend tensorrt to run it, or leave --engine out"
        )


def _onnx_for(spec: RunnerSpec, engines_dir: Path) -> Path:
    """The ONNX file ``spec`` runs: the cached INT8 model (built on first use; ONNX Runtime
    and OpenVINO run the same QDQ file), or the exported FP32/FP16 graph (OpenVINO's bf16
    compiles the FP32 graph with a bf16 precision hint) (found from the weights file without torch when it is already
    there)."""
    if spec.precision == "int8":
        return int8_artifact(spec, engines_dir).path
    precision = "fp16" if spec.precision == "fp16" else "fp32"
    return cached_onnx(spec.weights, engines_dir, precision) or exported_onnx(spec, engines_dir, precision)


def _tensorrt_runner(
    spec: RunnerSpec, engines_dir: Path, tiling: TileConfig, batch: int, max_side: int | None = None
) -> TensorRTRunner:
    precision = spec.precision if spec.precision in REGISTRY["tensorrt"].precisions else "fp16"
    given_onnx: Path | None = spec.onnx
    if spec.engine is None and given_onnx is None:
        given_onnx = exported_onnx(spec, engines_dir, precision)
    weights_sha256 = None
    if spec.engine is not None and spec.weights is not None:
        from vdsr_deploy.model.weights import load_weights

        weights_sha256 = load_weights(spec.weights)[1].sha256
    return create_tensorrt_runner(
        onnx_path=given_onnx,
        engine_path=spec.engine,
        engines_dir=engines_dir,
        tiling=tiling,
        batch=batch,
        precision=precision,
        device=cuda_index(spec.device),
        cuda_graphs=spec.cuda_graphs,
        weights_sha256=weights_sha256,
        max_side=max_side if not tiling.tile else None,
    )


def create_tensorrt_runner(
    *,
    onnx_path: Path | None,
    engines_dir: Path,
    tiling: TileConfig,
    batch: int,
    engine_path: Path | None = None,
    precision: str = "fp16",
    device: int = 0,
    contexts: int = DEFAULT_CONTEXTS,
    cuda_graphs: bool = True,
    max_side: int | None = None,
    weights_sha256: str | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
) -> TensorRTRunner:
    """An inactive :class:`~vdsr_deploy.backends.tensorrt.runner.TensorRTRunner` for this tiling.

    Without ``engine_path``, the engine for ``onnx_path`` is found in ``engines_dir`` or
    built there (:func:`~vdsr_deploy.backends.tensorrt.builder.find_or_build_engine`)
    before the runner exists; engines for other precisions, batches and tiles stay cached.
    With ``tiling.tile`` 0 (whole images) the profile goes up to ``max_side`` (default
    :data:`~vdsr_deploy.backends.tensorrt.build_config.DEFAULT_WHOLE_IMAGE_MAX_SIDE`) at batch 1.
    An ``engine_path`` the user named is used only if it fits this run
    (:func:`~vdsr_deploy.backends.tensorrt.matching.explicit_engine_reasons`: precision,
    tiles, and weights when ``weights_sha256`` is given); otherwise EngineMismatchError
    says every reason. Its GPU, TensorRT and CUDA are checked on activation."""
    from vdsr_deploy.backends.tensorrt.build_config import (
        DEFAULT_WHOLE_IMAGE_MAX_SIDE,
        EngineBuildConfig,
    )
    from vdsr_deploy.backends.tensorrt.builder import find_or_build_engine
    from vdsr_deploy.backends.tensorrt.matching import explicit_engine_reasons
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner
    from vdsr_deploy.errors import EngineMismatchError

    if engine_path is not None:
        runner = TensorRTRunner(engine_path, device=device, cuda_graphs=cuda_graphs)
        wanted = (
            profile_for_tiles(tiling, batch, max_side=max_side)
            if (tiling.tile or max_side)
            else None  # whole images of unknown size: the runner checks each input
        )
        reasons = explicit_engine_reasons(
            runner.sidecar, precision=precision, profile=wanted, weights_sha256=weights_sha256
        )
        if reasons:
            raise EngineMismatchError(
                f"{Path(engine_path).name} does not fit this run: {'; '.join(reasons)}; leave "
                "out --engine to let the engine cache find or build one"
            )
        return runner
    if onnx_path is None:
        raise ConfigError("a TensorRT runner needs an ONNX file to build from or a built engine")
    if tiling.tile:
        profile = profile_for_tiles(tiling, batch)
    elif max_side:
        profile = profile_for_tiles(tiling, batch, max_side=max_side)
    else:
        profile = profile_for_tiles(tiling, 1, max_side=DEFAULT_WHOLE_IMAGE_MAX_SIDE)
    config = EngineBuildConfig(
        profile=profile,
        precision=precision,
        contexts=contexts,
        workspace_bytes=workspace_bytes,
        optimization_level=optimization_level,
    )
    record = find_or_build_engine(onnx_path, config, engines_dir, device=device)
    return TensorRTRunner(record.path, device=device, cuda_graphs=cuda_graphs)
