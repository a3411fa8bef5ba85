"""The CUDA layer (cuda-python) and the PyTorch CUDA runner on a real GPU; no TensorRT needed.
Skips cleanly without cuda-python, a driver or a GPU.

Run with: pytest -m gpu tests/gpu
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import BackendUnavailableError
from vdsr_deploy.model.network import VDSR


def _why_not() -> str | None:
    if not cuda.cuda_python_available():
        return "cuda-python is not installed"
    try:
        cuda.require_device(0)
    except (BackendUnavailableError, cuda.CudaCallError) as error:
        return str(error)
    return None


REASON = _why_not()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(REASON is not None, reason=f"needs cuda-python and a CUDA GPU ({REASON})"),
]


def test_device_info_and_versions() -> None:
    info = cuda.device_info(0)
    assert info.name and info.compute_capability >= (7, 0)
    assert info.total_memory > 1 << 30 and info.multiprocessors > 0
    assert info.sm.startswith("sm")
    assert cuda.driver_version() > 0 and cuda.runtime_version() > 0  # minor-version compatibility: either may be newer


def test_require_device_makes_it_current_and_names_it() -> None:
    info = cuda.require_device(0)
    assert info == cuda.device_info(0) and info.index == 0
    with pytest.raises(BackendUnavailableError, match="does not exist"):
        cuda.require_device(cuda.device_count())


def test_torch_cuda_fp32_matches_cpu_and_fp16_stays_close() -> None:
    torch.manual_seed(0)
    model = VDSR(depth=4, channels=8).eval()
    batch = np.random.default_rng(1).random((3, 1, 29, 35), dtype=np.float32)
    with TorchRunner(model, device="cpu") as runner:
        reference = runner.infer(batch)
    with TorchRunner(model, device="cuda") as runner:
        fp32 = runner.infer(batch)
    with TorchRunner(model, device="cuda", precision="fp16") as runner:
        fp16 = runner.infer(batch)
    assert np.max(np.abs(fp32 - reference)) < 1e-5  # TF32 off: summation order only
    assert np.max(np.abs(fp16 - reference)) < 2e-2  # FP16 bound of tests/gpu/test_tensorrt_gpu.py
