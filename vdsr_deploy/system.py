"""What this machine offers: versions, runtimes, providers, GPU, default weights."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
from pathlib import Path
from typing import Any

from vdsr_deploy import __version__


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def system_info() -> dict[str, Any]:
    """A flat dict for ``vdsr info`` (imports each runtime only to ask its version)."""
    import torch

    from vdsr_deploy.backends.factory import default_engines_dir, onnxruntime_installed
    from vdsr_deploy.backends.onnxruntime import available_providers
    from vdsr_deploy.backends.tensorrt.library import tensorrt_status
    from vdsr_deploy.weights import default_weights_path

    weights = default_weights_path()
    cuda = torch.cuda.is_available()
    gpu = (
        f"{torch.cuda.get_device_name(0)} (compute {'.'.join(map(str, torch.cuda.get_device_capability(0)))})"
        if cuda
        else "none (PyTorch sees no CUDA device)"
    )
    ort_dist = _version("onnxruntime-gpu") or _version("onnxruntime")
    return {
        "vdsr-deploy": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": f"{torch.__version__} (threads {torch.get_num_threads()})",
        "gpu": gpu,
        "onnx": _version("onnx"),
        "onnxruntime": ort_dist if onnxruntime_installed() else "not installed",
        "onnxruntime providers": ", ".join(available_providers()) or "-",
        "tensorrt": tensorrt_status(),
        "cuda-python": _version("cuda-python") or _version("cuda-bindings") or "not installed",
        "default weights": str(weights) + ("" if weights.is_file() else " (MISSING)"),
        **_weights_record(weights),
        "engines dir": str(default_engines_dir()),
    }


def _weights_record(path: Path) -> dict[str, str]:
    """How the default weights were trained and what they scored (from their metadata)."""
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.weights import load_weights, training_summary

    try:
        _, info = load_weights(path)
    except VdsrError as error:
        return {"weights record": f"unreadable ({error})"}
    record = {"weights training": training_summary(info.training)}
    set5 = info.evaluation.get("set5", {})
    if set5:
        record["weights Set5 PSNR"] = " / ".join(
            f"{key} {value['psnr']:.2f}" for key, value in sorted(set5.items()) if "psnr" in value
        )
    return record
