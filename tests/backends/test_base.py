"""The runner interface: both forms validate the same way; a host-only runner's device
form is a round trip through its host form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from vdsr_deploy.errors import InvalidInputError, VdsrError
from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.runner import Runner, RunnerInfo


class Doubling(Runner):
    """Host form only: 2 * x."""

    def __init__(self, profile: ShapeProfile | None = None) -> None:
        super().__init__()
        self._profile = profile
        self.calls = 0

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo(backend="fake", device="cpu", precision="fp32")

    @property
    def profile(self) -> ShapeProfile | None:
        return self._profile

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.calls += 1
        return batch * 2


def test_default_device_form_round_trips_through_the_host_form() -> None:
    batch = torch.rand(3, 1, 7, 5, generator=torch.Generator().manual_seed(0))
    with Doubling() as runner:
        assert runner.tensor_device == "cpu"
        result = runner.infer_tensor(batch)
        assert runner.calls == 1
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float32 and result.device == batch.device
    torch.testing.assert_close(result, batch * 2, rtol=0, atol=0)
    assert result.data_ptr() != batch.data_ptr()


def test_device_form_accepts_non_contiguous_input() -> None:
    wide = torch.rand(2, 1, 6, 10, generator=torch.Generator().manual_seed(1))
    view = wide[:, :, :, ::2]
    assert not view.is_contiguous()
    with Doubling() as runner:
        torch.testing.assert_close(runner.infer_tensor(view), view * 2, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (torch.zeros(2, 3, 4, 4), r"expected input of shape \(N, 1, H, W\), got \(2, 3, 4, 4\)"),
        (torch.zeros(1, 4, 4), r"got \(1, 4, 4\)"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.float64), "expected float32 input, got torch.float64"),
        (torch.zeros(1, 1, 4, 4, device="meta"), "expected a tensor on cpu, got one on meta"),
        (torch.zeros(1, 1, 9, 4), "outside the profile"),
    ],
)
def test_device_form_validates_like_the_host_form(batch: torch.Tensor, message: str) -> None:
    profile = ShapeProfile(min=(1, 1, 1, 1), opt=(1, 1, 8, 8), max=(4, 1, 8, 8))
    with Doubling(profile) as runner, pytest.raises(InvalidInputError, match=message):
        runner.infer_tensor(batch)
    assert runner.calls == 0


def test_device_form_outside_the_with_block_is_refused() -> None:
    runner = Doubling()
    with pytest.raises(VdsrError, match="outside its 'with' block"):
        runner.infer_tensor(torch.zeros(1, 1, 4, 4))


def test_a_runner_returning_the_wrong_shape_is_caught() -> None:
    class Cropping(Doubling):
        def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            return batch[:, :, 1:]

    with Cropping() as runner, pytest.raises(VdsrError, match="expected output"):
        runner.infer_tensor(torch.zeros(1, 1, 4, 4))


PROFILE = ShapeProfile(min=(1, 1, 2, 3), opt=(2, 1, 8, 6), max=(3, 1, 9, 7))


@pytest.mark.parametrize(
    "shape, inside",
    [
        ((3, 1, 9, 7), True),  # the largest allowed
        ((1, 1, 2, 3), True),  # the smallest allowed
        ((1, 1, 10, 7), False),  # too tall
        ((1, 1, 9, 8), False),  # too wide
        ((4, 1, 9, 7), False),  # too many in a batch
        ((1, 1, 1, 7), False),  # too short
        ((1, 1, 9, 2), False),  # too narrow
    ],
)
@pytest.mark.parametrize("form", ["host", "device"])
def test_the_profile_guard_holds_on_every_axis_both_ways_in_both_forms(
    shape: tuple[int, int, int, int], inside: bool, form: str
) -> None:
    """Issue 27 (kind 3): a shape guard tested only with a too-tall input."""
    batch = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    with Doubling(PROFILE) as runner:
        call = (lambda: runner.infer(batch.numpy())) if form == "host" else (lambda: runner.infer_tensor(batch))
        if inside:
            np.testing.assert_array_equal(np.asarray(call()), batch.numpy() * 2)
        else:
            expected = rf"input shape \({shape[0]}, 1, {shape[2]}, {shape[3]}\) is outside"
            with pytest.raises(InvalidInputError, match=expected):
                call()
            assert runner.calls == 0
