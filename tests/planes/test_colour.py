"""Colour and alpha, end to end, with values: an identity network must give back bicubic.

A VDSR whose last convolution is zero predicts no residual, so the whole toolkit reduces
to the protocol: RGB -> YCbCr (BT.601), MATLAB bicubic of every plane, YCbCr -> RGB, and
alpha = clip(bicubic(alpha)). The expected images here are built from :mod:`protocol`
alone, never from :mod:`vdsr_deploy.planes.colour`, so a swapped, inverted or dropped plane shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image

from vdsr_deploy import protocol
from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.imageio import quantize, read_image, write_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig

TILING = TileConfig(tile=32, halo=3)


def identity_model() -> VDSR:
    torch.manual_seed(0)
    model = VDSR(depth=3, channels=4).eval()
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
    return model


def bicubic_reference(pixels: NDArray[np.floating], scale: float) -> NDArray[np.float64]:
    """What an identity network must produce, from the protocol's functions only."""
    pixels = pixels.astype(np.float64)
    shape = (protocol.output_length(pixels.shape[0], scale), protocol.output_length(pixels.shape[1], scale))
    channels = pixels.shape[2]
    if channels >= 3:
        ycbcr = np.asarray(protocol.imresize(protocol.rgb2ycbcr(pixels[..., :3]), output_shape=shape))
        colour = protocol.ycbcr2rgb(ycbcr)
    else:
        y = np.asarray(protocol.imresize((16 + 219 * pixels[..., 0]) / 255, output_shape=shape))
        colour = ((y * 255 - 16) / 219)[..., None]
    parts = [np.clip(colour, 0, 1)]
    if channels in (2, 4):
        alpha = np.asarray(protocol.imresize(pixels[..., -1], output_shape=shape))
        parts.append(np.clip(alpha, 0, 1)[..., None])
    return np.concatenate(parts, axis=2)


def test_identity_model_is_a_no_op_on_y() -> None:
    plane = np.random.default_rng(3).random((1, 1, 9, 11), dtype=np.float32)
    with torch.no_grad():
        assert torch.equal(identity_model()(torch.from_numpy(plane)), torch.from_numpy(plane))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [2.0, 3.0, 2.5])
def test_identity_pipeline_equals_bicubic_with_alpha(channels: int, scale: float) -> None:
    rng = np.random.default_rng(channels)
    pixels = rng.random((23, 19, channels)).astype(np.float32)
    if channels in (2, 4):
        pixels[..., -1] = np.linspace(0, 1, 19, dtype=np.float32)[None, :] ** 2  # opaque at right
        pixels[:5, :, -1] = 0.0  # a fully transparent strip
    with TorchRunner(identity_model(), device="cpu", channels_last=False) as runner:
        result = upscale_pixels(pixels, runner, PipelineConfig(scale=scale, tiling=TILING, batch=3))
    expected = bicubic_reference(pixels, scale)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=0, atol=2e-6)


def test_identity_job_writes_bicubic_files(tmp_path: Path) -> None:
    """Files in, files out (8-bit RGBA, LA and 16-bit RGBA): within one step of rounding."""
    rng = np.random.default_rng(9)
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgba = rng.integers(0, 256, (21, 17, 4)).astype(np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 17).astype(np.uint8)[None, :]
    Image.fromarray(rgba, mode="RGBA").save(inputs / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(inputs / "la.png")
    deep = rng.random((15, 22, 4))
    write_image(inputs / "rgba16.png", deep, bit_depth=16)
    config = JobConfig(
        inputs=(str(inputs),), output=tmp_path / "out",
        pipeline=PipelineConfig(scale=2.0, tiling=TILING, batch=2),
    )  # fmt: skip
    with TorchRunner(identity_model(), device="cpu", channels_last=False) as runner:
        summary = run_job(config, runner)
    assert len(summary.done) == 3 and not summary.failed
    for name in ("rgba.png", "la.png", "rgba16.png"):
        source = read_image(inputs / name)
        produced = read_image(tmp_path / "out" / name)
        assert produced.bit_depth == source.bit_depth and produced.channels == source.channels
        expected = quantize(bicubic_reference(source.pixels, 2.0), source.bit_depth)
        difference = np.abs(produced.samples.astype(np.int64) - expected.astype(np.int64))
        assert difference.max() <= 1, name  # float32 vs float64 at a rounding boundary
        assert np.mean(difference == 0) > 0.99, name
