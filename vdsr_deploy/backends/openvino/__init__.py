"""The OpenVINO runtime: the exported FP32 ONNX in f32 or bf16 and the project's INT8 QDQ
ONNX, on OpenVINO's CPU plugin (:mod:`~vdsr_deploy.backends.openvino.runner`), with
OpenVINO's model cache so a second start skips compilation. It runs an ONNX file (the same
files ONNX Runtime runs). This module is its descriptor (:data:`BACKEND`) and imports no
openvino."""

from __future__ import annotations

import importlib.util

from vdsr_deploy.backends.descriptor import Backend, OpenRequest
from vdsr_deploy.environment import cpu_flags, package_version
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.precision.decision import BF16_FLAGS
from vdsr_deploy.runner import Runner

INSTALL = "pip install 'vdsr-deploy[openvino]'"
CACHE_FOLDER = "vdsr-openvino-cache"
"""OpenVINO's compiled-model cache, under the run's cache folder (``OpenRequest.cache_dir``);
named ``vdsr-...`` so that ``vdsr cache --clear`` removes it with the other entries."""


def installed() -> bool:
    """Whether the openvino module is installed."""
    return importlib.util.find_spec("openvino") is not None


def _compute_device(device: str, provider: str) -> str:
    return "cpu"


def _unavailable(device: str, precision: str, provider: str) -> str | None:
    if not installed():
        return f"openvino is not installed: {INSTALL}"
    if device.startswith("cuda"):
        return f"--device {device}: OpenVINO runs on the CPU here (use --device cpu, or another backend for the GPU)"
    if precision == "bf16" and not cpu_flags() & BF16_FLAGS:
        return (
            f"OpenVINO bf16 needs {' or '.join(sorted(BF16_FLAGS))}, which this CPU lacks "
            "(it would run f32 or emulate bf16): use -p fp32 or -p int8"
        )
    return None


def _versions() -> dict[str, str | None]:
    return {"openvino": package_version("openvino")}


def _open(request: OpenRequest) -> Runner:
    from vdsr_deploy.backends.openvino.runner import OpenVinoOptions, OpenVinoRunner

    if request.artifact is None:
        raise ConfigError("OpenVINO runs an ONNX file: none was given or made")
    options = OpenVinoOptions(
        precision=request.precision,
        threads=request.threads,
        cache_dir=request.cache_dir / CACHE_FOLDER if request.cache_dir is not None else None,
    )
    return OpenVinoRunner(request.artifact, options)


BACKEND = Backend(
    name="openvino",
    summary="OpenVINO (CPU): the FP32 ONNX in f32 or bf16 (bf16 hardware only) and the INT8 QDQ ONNX",
    precisions=("fp32", "bf16", "int8"),
    artifact="onnx",
    compute_device=_compute_device,
    unavailable=_unavailable,
    versions=_versions,
    open=_open,
)
