"""The device path (colour, MATLAB bicubic, tiles, finishing on a torch device) against the
CPU float64 reference path, on torch's CPU device so CI runs it (and on CUDA when present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.imageio import quantize
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.device_colour import DeviceColour
from vdsr_deploy.planes.device_pipeline import DeviceUpscaler
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner

SCALES = (2.0, 3.0, 4.0, 2.5)
CHANNELS = (1, 2, 3, 4)  # gray, gray + alpha, RGB, RGBA


def _samples(rng: np.random.Generator, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    """A smooth picture with noise (like a photo: most values away from the clip limits)."""
    peak = 255 if bits == 8 else 65535
    h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.35 * np.sin(xx[..., None] / 5.0 + np.arange(c)) * np.cos(yy[..., None] / 7.0)
    noisy = np.clip(base + rng.normal(0.0, 0.08, shape), 0.0, 1.0)
    result: np.ndarray = np.round(noisy * peak).astype(np.uint8 if bits == 8 else np.uint16)
    return result


def _identity_model() -> VDSR:
    model = VDSR(depth=3, channels=4).eval()
    last = list(model.body.modules())[-1]
    assert isinstance(last, torch.nn.Conv2d)
    with torch.no_grad():
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
    return model


def _reference(samples: np.ndarray, runner: Runner, config: PipelineConfig, bits: int) -> np.ndarray:
    peak = np.float32(65535.0 if samples.dtype == np.uint16 else 255.0)
    return quantize(upscale_pixels(samples.astype(np.float32) / peak, runner, config), bits)


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    assert a.shape == b.shape and a.dtype == b.dtype
    diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return float(np.all(diff == 0, axis=2).mean()), int(diff.max())


def test_planes_are_bit_identical_to_colour_prepare_and_finish(rng: np.random.Generator) -> None:
    device = DeviceColour("cpu")  # float64, like the reference
    for channels in CHANNELS:
        for bits in (8, 16):
            samples = _samples(rng, (15, 19, channels), bits)
            pixels = samples.astype(np.float32) / np.float32(255 if bits == 8 else 65535)
            for scale in SCALES:
                ref = colour.prepare(pixels, scale)
                planes = device.prepare_rows(torch.from_numpy(samples), scale, 0, ref.shape[0])
                np.testing.assert_array_equal(planes.y.numpy(), ref.y)
                if ref.chroma is not None:
                    assert planes.chroma is not None
                    np.testing.assert_array_equal(planes.chroma.permute(1, 2, 0).numpy(), ref.chroma)
                if ref.alpha is not None:
                    assert planes.alpha is not None
                    np.testing.assert_array_equal(planes.alpha.numpy(), ref.alpha)
                for out_bits in (8, 16):
                    expected = quantize(colour.finish(ref, ref.y), out_bits)
                    got = device.quantize(device.finish(planes, planes.y), out_bits).numpy()
                    np.testing.assert_array_equal(got, expected)


def test_rows_of_a_band_equal_rows_of_the_whole_image(rng: np.random.Generator) -> None:
    device = DeviceColour("cpu")
    samples = torch.from_numpy(_samples(rng, (29, 17, 4), 8))
    whole = device.prepare_rows(samples, 3.0, 0, 87)
    band = device.prepare_rows(samples, 3.0, 40, 61)
    np.testing.assert_array_equal(band.y.numpy(), whole.y[40:61].numpy())
    assert band.alpha is not None and whole.alpha is not None
    np.testing.assert_array_equal(band.alpha.numpy(), whole.alpha[40:61].numpy())


def test_float32_compute_stays_within_one_level(rng: np.random.Generator) -> None:
    device = DeviceColour("cpu", compute_dtype="float32")
    samples = _samples(rng, (41, 37, 3), 8)
    ref = colour.prepare(samples.astype(np.float32) / np.float32(255), 2.0)
    planes = device.prepare_rows(torch.from_numpy(samples), 2.0, 0, ref.shape[0])
    share, worst = _agreement(device.quantize(device.finish(planes, planes.y), 8).numpy(),
                              quantize(colour.finish(ref, ref.y), 8))  # fmt: skip
    assert worst <= 1 and share >= 0.999


# every channel layout, bit depth and scale appears; tiled (tile 40, halo 8) and whole
CASES = [
    (1, 8, 2.0, 40), (2, 16, 3.0, 0), (3, 8, 4.0, 40), (4, 16, 2.5, 40),
    (3, 16, 2.0, 0), (4, 8, 3.0, 40), (1, 16, 4.0, 40), (2, 8, 2.5, 0),
]  # fmt: skip


@pytest.mark.parametrize("kind", ["tiny", "identity"])
@pytest.mark.parametrize(("channels", "bits", "scale", "tile"), CASES)
def test_device_path_matches_cpu_path_end_to_end(
    rng: np.random.Generator, kind: str, channels: int, bits: int, scale: float, tile: int
) -> None:
    """>= 99.99% identical 8-bit pixels, never more than one level apart (16-bit outputs of
    16-bit inputs too): odd sizes; a tiny seeded model, and a zero-residual model so the
    colour path alone is compared."""
    torch.manual_seed(0)
    model = VDSR(depth=3, channels=6).eval() if kind == "tiny" else _identity_model()
    samples = _samples(rng, (21, 25, channels), bits)
    config = PipelineConfig(scale=scale, tiling=TileConfig(tile=tile, halo=8), batch=3)
    with TorchRunner(model, device="cpu") as runner:
        device = DeviceUpscaler(runner, config)
        for out_bits in sorted({8, bits}):
            got = device.upscale(samples, bit_depth=out_bits)
            share, worst = _agreement(got, _reference(samples, runner, config, out_bits))
            assert worst <= 1, out_bits
            if out_bits == 8:
                assert share >= 0.9999
            if kind == "identity":
                assert share == 1.0  # float64 colour path: bit-identical to the reference


def test_bad_samples_are_refused() -> None:
    device = DeviceColour("cpu")
    with pytest.raises(InvalidInputError, match="uint8 or uint16"):
        device.upload(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(InvalidInputError, match=r"C in 1\.\.4"):
        device.upload(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(InvalidInputError, match="start < stop"):
        device.prepare_rows(torch.zeros((4, 4, 3), dtype=torch.uint8), 2.0, 3, 3)
    with pytest.raises(InvalidInputError, match="float32 or float64"):
        DeviceColour("cpu", compute_dtype="float16")


def test_contributions_are_cached_per_size_and_scale() -> None:
    device = DeviceColour("cpu")
    first = device.contributions(10, 25, 2.5)
    assert device.contributions(10, 25, 2.5) is first
    assert device.contributions(10, 20, 2.0) is not first


@pytest.mark.gpu
def test_cuda_device_path_matches_cpu_path(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    model = VDSR(depth=4, channels=8).eval()
    config = PipelineConfig(scale=2.0, tiling=TileConfig(tile=64, halo=8), batch=2)
    samples = _samples(rng, (61, 45, 4), 8)
    with TorchRunner(model, device="cpu") as cpu_runner:
        expected = _reference(samples, cpu_runner, config, 8)
    with TorchRunner(model, device="cuda") as runner:
        got = DeviceUpscaler(runner, config).upscale(samples, bit_depth=8)
    share, worst = _agreement(got, expected)
    assert worst <= 1 and share >= 0.9999


def test_divisions_are_true_divisions_on_the_device() -> None:
    """Issue 22 (defect 6): dividing a CUDA tensor by a Python number makes PyTorch multiply
    by its reciprocal (126 of 256 uint8 values then differ from the reference's float32 true
    division). Every division of the colour pipeline must divide by a device tensor; and on
    the CPU the samples' float32 values equal the reference's for every uint8 and uint16."""
    import torch
    from torch.overrides import TorchFunctionMode

    divisors: list[object] = []

    class Divisions(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            if func in (torch.Tensor.__truediv__, torch.Tensor.div, torch.div, torch.true_divide):
                divisors.append(args[1])
            return func(*args, **(kwargs or {}))

    colour = DeviceColour("cpu", compute_dtype="float32")
    for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
        values = np.arange(peak + 1, dtype=dtype)
        for channels in (1, 2, 3):
            samples = np.repeat(values.reshape(1, -1, 1), channels, axis=2)
            device_samples = torch.from_numpy(samples)
            with Divisions():
                planes = colour.prepare_rows(device_samples, 1.0, 0, 1)
                colour.finish(planes, planes.y)
    assert divisors and all(isinstance(d, torch.Tensor) for d in divisors), divisors[:3]
    for dtype, peak in ((np.uint8, 255.0), (np.uint16, 65535.0)):
        values = np.arange(int(peak) + 1, dtype=dtype)
        reference = values.astype(np.float32) / np.float32(peak)
        ours = colour.divide(torch.from_numpy(values).to(torch.float32), peak).numpy()
        np.testing.assert_array_equal(ours, reference)


def test_preparing_rows_never_waits_for_the_device() -> None:
    """Issue 22 (defect 5): ``int(indices.min())`` on a CUDA tensor waits for the device's
    queued work (the previous band's inference); which input rows a band needs is now read
    from the host copy of the index table. No tensor is read back while preparing/finishing."""
    import torch
    from torch.overrides import TorchFunctionMode

    reads: list[str] = []

    class HostReads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = getattr(func, "__name__", "")
            if name in ("__int__", "__float__", "__bool__", "__index__", "item", "tolist", "numpy", "cpu"):
                reads.append(name)
            return func(*args, **(kwargs or {}))

    colour = DeviceColour("cpu", compute_dtype="float32")
    samples = torch.from_numpy(_samples(np.random.default_rng(0), (20, 24, 4), 8))
    colour.prepare_rows(samples, 2.0, 0, 40)  # tables cached (made on the host) first
    with HostReads():
        for start in range(0, 40, 8):
            planes = colour.prepare_rows(samples, 2.0, start, start + 8)
            colour.quantize(colour.finish(planes, planes.y), 8)
    assert reads == []


def test_upscale_enqueues_every_band_before_waiting_for_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 22 (defect 5): DeviceUpscaler.upscale waited for each band's download before
    queueing the next band; now every band is enqueued first."""
    from vdsr_deploy.planes import device_pipeline

    events: list[str] = []

    class Rows:
        def __init__(self, index: int) -> None:
            self.index = index

        def result(self) -> np.ndarray:
            events.append(f"wait {self.index}")
            return np.zeros((1, 2, 1), np.uint8)

    def bands(self: object, samples: np.ndarray, *, bit_depth: int) -> object:
        for index in range(3):
            events.append(f"enqueue {index}")
            yield device_pipeline.Band(index, None, Rows(index))  # type: ignore[arg-type]

    monkeypatch.setattr(DeviceUpscaler, "bands", bands)
    upscaler = object.__new__(DeviceUpscaler)
    upscaler.upscale(np.zeros((1, 1, 1), np.uint8))
    assert events == ["enqueue 0", "enqueue 1", "enqueue 2", "wait 0", "wait 1", "wait 2"]
