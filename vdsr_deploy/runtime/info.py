"""What this machine offers: versions (every runtime's, from the registry), providers, GPU,
default weights; for ``vdsr info`` and the records reports keep."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from vdsr_deploy import __version__
from vdsr_deploy.backends.registry import backend_versions
from vdsr_deploy.environment import gpu_name, package_version


def system_info() -> dict[str, Any]:
    """A flat dict for ``vdsr info`` (imports each runtime only to ask its version)."""
    import torch

    from vdsr_deploy.backends.onnxruntime import installed as onnxruntime_installed
    from vdsr_deploy.backends.onnxruntime.options import available_providers
    from vdsr_deploy.backends.tensorrt.library import tensorrt_status
    from vdsr_deploy.model.weights import default_weights_path
    from vdsr_deploy.runtime.cache import cache_dir_source, default_cache_dir

    weights = default_weights_path()
    gpu = gpu_name() or "none (PyTorch sees no CUDA device)"
    ort_dist = package_version("onnxruntime-gpu", "onnxruntime")
    return {
        "vdsr-deploy": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": f"{torch.__version__} (threads {torch.get_num_threads()})",
        "gpu": gpu,
        "onnx": package_version("onnx"),
        "onnxruntime": ort_dist if onnxruntime_installed() else "not installed",
        "onnxruntime providers": ", ".join(available_providers()) or "-",
        "openvino": package_version("openvino") or "not installed",
        "tensorrt": tensorrt_status(),
        "cuda-python": package_version("cuda-python", "cuda-bindings") or "not installed",
        "default weights": str(weights) + ("" if weights.is_file() else " (MISSING)"),
        **_weights_record(weights),
        "cache dir": f"{default_cache_dir()} ({cache_dir_source()}; vdsr cache lists or clears it)",
    }


def _weights_record(path: Path) -> dict[str, str]:
    """How the default weights were trained and what they scored (from their metadata)."""
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.model.weights import load_weights, training_summary

    try:
        _, info = load_weights(path)
    except VdsrError as error:
        return {"weights record": f"unreadable ({error})"}
    record = {
        "weights digest": f"{info.sha256} (tensors only: what ONNX metadata and engines record)",
        "weights file sha256": f"{info.file_sha256} (the file's bytes, as sha256sum prints)",
        "weights training": training_summary(info.training),
    }
    set5 = info.evaluation.get("set5", {})
    if set5:
        record["weights Set5 PSNR"] = " / ".join(
            f"{key} {value['psnr']:.2f}" for key, value in sorted(set5.items()) if "psnr" in value
        )
    return record


def versions() -> dict[str, str | None]:
    """Versions of Python, the core libraries and every runtime of the registry (from package
    metadata: nothing heavy imported)."""
    return {
        "vdsr_deploy": __version__,
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "onnx": package_version("onnx"),
        **backend_versions(),
    }


def runtime_environment() -> dict[str, Any]:
    """Versions, threads, ONNX Runtime providers and GPU: what a parity report records."""
    import torch

    from vdsr_deploy.backends.onnxruntime.options import available_providers

    return {
        "vdsr_deploy": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": package_version("onnxruntime", "onnxruntime-gpu"),
        "onnxruntime_providers": available_providers(),
        "openvino": package_version("openvino"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
