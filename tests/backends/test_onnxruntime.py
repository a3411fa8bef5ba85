"""The ONNX Runtime runner's device form, run for real on the CPU (I/O binding of torch
tensors by pointer), against its host form and PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner, OrtOptions
from vdsr_deploy.export.onnx import export_onnx
from vdsr_deploy.model.network import VDSR


@pytest.fixture
def tiny_onnx(tmp_path: Path, tiny_model: VDSR) -> Path:
    return export_onnx(tiny_model, tmp_path / "tiny.onnx").path


def test_io_binding_on_the_cpu_equals_the_host_form(tiny_onnx: Path, tiny_model: VDSR) -> None:
    batch = np.random.default_rng(0).random((3, 1, 19, 11), dtype=np.float32)
    tensor = torch.from_numpy(batch.copy())
    with OnnxRuntimeRunner(tiny_onnx, OrtOptions(threads=1)) as runner:
        assert runner.tensor_device == "cpu"
        host = runner.infer(batch)
        bound = runner.infer_tensor(tensor)
        wide = torch.from_numpy(np.random.default_rng(1).random((2, 1, 9, 16), dtype=np.float32))
        strided = runner.infer_tensor(wide[:, :, :, ::2])  # made contiguous by the interface
    assert bound.dtype == torch.float32 and tuple(bound.shape) == batch.shape
    assert bound.data_ptr() != tensor.data_ptr()
    np.testing.assert_array_equal(bound.numpy(), host)
    torch.testing.assert_close(tensor, torch.from_numpy(batch), rtol=0, atol=0)  # input untouched
    with torch.no_grad():
        reference = tiny_model(wide[:, :, :, ::2].contiguous())
    torch.testing.assert_close(strided, reference, rtol=0, atol=1e-5)


def test_gpu_providers_name_their_cuda_device(tiny_onnx: Path) -> None:
    runner = OnnxRuntimeRunner(tiny_onnx, OrtOptions(provider="cuda", device_id=3))
    assert runner.tensor_device == "cuda:3"
