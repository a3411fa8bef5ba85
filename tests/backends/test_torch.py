"""The PyTorch runner's device form on torch's CPU device (CUDA: tests/gpu)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.torch.runner import ShapeGraphs, TorchRunner
from vdsr_deploy.model.network import VDSR


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


# -- one CUDA graph per shape: the bookkeeping, with a fake capture (CUDA: tests/gpu) ---


class FakeGraph:
    """Replays ``forward`` eagerly; counts launches."""

    def __init__(self, forward: Any, shape: tuple[int, ...]) -> None:
        self.forward, self.shape, self.launches = forward, shape, 0

    def launch(self, batch: torch.Tensor, stream: Any) -> torch.Tensor:
        assert tuple(batch.shape) == self.shape
        self.launches += 1
        return self.forward(batch)


def test_shape_graphs_capture_once_per_shape_and_drop_the_least_recent() -> None:
    captured: list[FakeGraph] = []

    def capture(shape: tuple[int, ...]) -> FakeGraph:
        captured.append(FakeGraph(lambda x: x * 2, shape))
        return captured[-1]

    graphs = ShapeGraphs(capture, limit=2)
    a, b, c = torch.ones(2, 1, 4, 4), torch.ones(1, 1, 4, 4), torch.ones(1, 1, 8, 4)
    for batch in (a, a, b, a, c, b):
        result = graphs.launch(batch, stream=None)  # type: ignore[arg-type]
        assert result is not None and torch.equal(result, batch * 2)
    # a, b captured; c evicts b (a was used more recently); b is captured again
    assert [g.shape for g in captured] == [(2, 1, 4, 4), (1, 1, 4, 4), (1, 1, 8, 4), (1, 1, 4, 4)]
    assert graphs.shapes == [(1, 1, 8, 4), (1, 1, 4, 4)]
    assert graphs.captures == 4 and graphs.launches == 6 and graphs.state == "on"


def test_a_failed_capture_switches_graphs_off_and_the_runner_runs_eagerly() -> None:
    def capture(shape: tuple[int, ...]) -> FakeGraph:
        raise RuntimeError("operation not permitted when stream is capturing")

    graphs = ShapeGraphs(capture)
    assert graphs.launch(torch.ones(1, 1, 4, 4), stream=None) is None  # type: ignore[arg-type]
    assert graphs.state.startswith("off (capture failed for shape (1, 1, 4, 4): operation")
    assert graphs.launch(torch.ones(1, 1, 4, 4), stream=None) is None  # type: ignore[arg-type]
    assert graphs.captures == 0


def test_cpu_runner_reports_graphs_off(tiny_model: VDSR) -> None:
    with TorchRunner(tiny_model, device="cpu") as runner:
        assert runner.info.details["cuda_graphs"] == "off (CPU)"


def test_the_callers_model_is_left_as_it_was(tiny_model: VDSR) -> None:
    before = {name: value.clone() for name, value in tiny_model.state_dict().items()}
    with TorchRunner(tiny_model, device="cpu", precision="bf16", channels_last=True) as runner:
        runner.infer(np.zeros((1, 1, 8, 8), dtype=np.float32))
        with torch.no_grad():  # the caller may still use (and even change) its model
            tiny_model.body[0].bias += 1.0
        after_change = runner.infer(np.zeros((1, 1, 8, 8), dtype=np.float32))
    with torch.no_grad():
        tiny_model.body[0].bias -= 1.0
    for name, value in tiny_model.state_dict().items():
        assert value.dtype == torch.float32 and value.device.type == "cpu"
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    with TorchRunner(tiny_model, device="cpu", precision="bf16") as runner:
        np.testing.assert_array_equal(
            runner.infer(np.zeros((1, 1, 8, 8), dtype=np.float32)), after_change
        )


def test_tf32_goes_through_the_current_api(tiny_model: VDSR) -> None:
    """Issue 22 (defect 9): once anything in the process sets TF32 through torch's
    ``fp32_precision`` API, reading the legacy ``allow_tf32`` flags raises, and the runner
    read them on activation. The runner now reads and sets TF32 through the current API."""
    from vdsr_deploy.backends.torch.runner import set_tf32, tf32_state

    original = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    try:
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # another library, the new API
        with pytest.raises(RuntimeError, match="mix of the legacy and new APIs"):
            _ = torch.backends.cudnn.allow_tf32  # what the runner used to read
        saved = tf32_state()
        TorchRunner(tiny_model, device="cpu", allow_tf32=True)._apply_flags()
        assert tf32_state() == ("tf32", "tf32")
        TorchRunner(tiny_model, device="cpu", allow_tf32=False)._apply_flags()
        assert tf32_state() == ("ieee", "ieee")
        set_tf32(saved)
        assert tf32_state() == saved
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = original
