"""The PyTorch runner's device form on torch's CPU device (CUDA: tests/gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.torch import TorchRunner
from vdsr_deploy.model import VDSR


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_device_form_equals_host_form_on_cpu(
    tiny_model: VDSR, precision: str, channels_last: bool
) -> None:
    batch = np.random.default_rng(0).random((3, 1, 13, 9), dtype=np.float32)
    runner = TorchRunner(tiny_model, device="cpu", precision=precision, channels_last=channels_last)
    with runner:
        assert runner.tensor_device == "cpu"
        host = runner.infer(batch)
        device = runner.infer_tensor(torch.from_numpy(batch))
    assert device.dtype == torch.float32 and tuple(device.shape) == batch.shape
    np.testing.assert_array_equal(device.numpy(), host)
    with torch.no_grad():
        reference = tiny_model(torch.from_numpy(batch)).numpy()
    if precision == "fp32":
        np.testing.assert_allclose(host, reference, atol=1e-5)


def test_device_form_output_can_be_modified_in_place(tiny_model: VDSR) -> None:
    with TorchRunner(tiny_model, device="cpu") as runner:
        output = runner.infer_tensor(torch.rand(1, 1, 8, 8))
    output.clamp_(0.0, 1.0)  # an inference-mode tensor would refuse this
    assert float(output.max()) <= 1.0
