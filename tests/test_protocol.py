from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vdsr_deploy import protocol
from vdsr_deploy.errors import InvalidInputError

# Oracle pixels of lr_rgb that disagree with every other pixel's MATLAB recipe (all others
# match to 1e-12, as do butterfly at every scale and head at x2); see docs/design.md (evaluation protocol).
ORACLE_LR_OUTLIERS = {"head_x3": [(76, 68, 2)], "head_x4": [(20, 54, 1), (57, 51, 2), (58, 51, 2)]}


def oracle_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "oracles" / "matlab").glob("*.npz"))
    if not files:
        pytest.skip("no MATLAB oracles")
    return files


def scale_of(path: Path) -> int:
    return int(path.stem.split("_x")[1])


def test_bicubic_y_matches_matlab(shared_data: Path) -> None:
    for path in oracle_files(shared_data):
        data = np.load(path)
        result = protocol.imresize(data["lr_y"], scale_of(path))
        assert result.shape == data["bicubic_y"].shape
        assert np.max(np.abs(result - data["bicubic_y"])) <= 1e-9, path.name


def test_bicubic_rgb_matches_matlab_after_clipping(shared_data: Path) -> None:
    # MATLAB saved bicubic_rgb clipped to [0, 255], made from the LR of the HR image
    for path in oracle_files(shared_data):
        data = np.load(path)
        scale = scale_of(path)
        lr = protocol.imresize(data["hr_rgb_uint8"].astype(np.float64) / 255.0, 1.0 / scale) * 255.0
        result = np.clip(protocol.imresize(lr, scale), 0, 255)
        assert np.max(np.abs(result - data["bicubic_rgb"])) <= 1e-9, path.name


def test_lr_from_hr_matches_matlab(shared_data: Path) -> None:
    for path in oracle_files(shared_data):
        data = np.load(path)
        hr = data["hr_rgb_uint8"].astype(np.float64) / 255.0
        lr = protocol.imresize(hr, 1.0 / scale_of(path)) * 255.0
        assert lr.shape == data["lr_rgb"].shape
        diff = np.abs(lr - data["lr_rgb"])
        for pixel in ORACLE_LR_OUTLIERS.get(path.stem, []):
            diff[pixel] = 0.0
        assert np.max(diff) <= 1e-9, path.name


def test_y_from_rgb_matches_matlab(shared_data: Path) -> None:
    for path in oracle_files(shared_data):
        data = np.load(path)
        y = protocol.rgb2y(data["hr_rgb_uint8"].astype(np.float64) / 255.0) * 255.0
        assert np.max(np.abs(y - data["hr_y"])) <= 1e-9
        # lr_ycbcr is stored in [0, 1] (not 0..255 as the oracle README says), and was made
        # from the true LR image, before the lr_rgb outliers
        lr = protocol.imresize(
            data["hr_rgb_uint8"].astype(np.float64) / 255.0, 1.0 / scale_of(path)
        )
        assert np.max(np.abs(protocol.rgb2ycbcr(lr) - data["lr_ycbcr"])) <= 1e-9
        assert np.max(np.abs(data["lr_ycbcr"][..., 0] * 255.0 - data["lr_y"])) <= 1e-9


# --- the protocol's constants, checked without the MATLAB oracles (they skip when absent) ---

# MATLAB rgb2ycbcr on doubles (BT.601 studio range): rows Y, Cb, Cr; columns R, G, B.
BT601 = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])


def test_rgb2ycbcr_uses_the_bt601_studio_range_coefficients() -> None:
    for channel in range(3):
        unit = np.zeros(3)
        unit[channel] = 1.0
        expected = (np.array([16.0, 128.0, 128.0]) + BT601[:, channel]) / 255.0
        np.testing.assert_allclose(protocol.rgb2ycbcr(unit), expected, rtol=0, atol=1e-15)
        assert protocol.rgb2y(unit) == pytest.approx(expected[0], abs=1e-15)
    np.testing.assert_allclose(protocol.rgb2ycbcr(np.zeros(3)) * 255.0, [16, 128, 128], atol=1e-12)
    np.testing.assert_allclose(protocol.rgb2ycbcr(np.ones(3)) * 255.0, [235, 128, 128], atol=1e-12)


def test_ycbcr2rgb_inverts_bt601(rng: np.random.Generator) -> None:
    np.testing.assert_allclose(protocol.ycbcr2rgb(np.array([235.0, 128, 128]) / 255), 1.0, atol=1e-12)
    red = (np.array([16.0, 128.0, 128.0]) + BT601[:, 0]) / 255.0
    np.testing.assert_allclose(protocol.ycbcr2rgb(red), [1.0, 0.0, 0.0], atol=1e-12)
    rgb = rng.random((7, 5, 3))
    assert np.allclose(protocol.ycbcr2rgb(protocol.rgb2ycbcr(rgb)), rgb, atol=1e-12)


def test_bicubic_weights_are_keys_a_minus_half() -> None:
    # x2 upscaling: u = x/2 + 1/4, so every output pixel sits 0.25 or 0.75 px from its
    # nearest inputs; Keys a = -0.5 gives these taps (a = -0.75, PIL/OpenCV's, does not)
    weights, _ = protocol.resize_contributions(10, 20, 2.0, True)
    taps = {tuple(np.round(row[row != 0], 10)) for row in weights}
    assert taps == {(-0.0234375, 0.2265625, 0.8671875, -0.0703125),
                    (-0.0703125, 0.8671875, 0.2265625, -0.0234375)}  # fmt: skip


def test_imresize_by_hand() -> None:
    """A unit impulse [0, 1, 0, 0] resized along one axis, worked out with pencil and paper.

    x2: output x (1-based) reads input u = x/2 + 1/4; the border mirrors (input 0 is input
    1, input -1 is input 2), so the first output also gets the impulse's mirror image at
    distance 1.75. x0.5: the kernel is stretched to 8 px and halved (antialiasing).
    """
    impulse = np.array([0.0, 1.0, 0.0, 0.0])[:, None]
    up = protocol.imresize(impulse, 2)
    assert up.shape == (8, 2) and np.array_equal(up[:, 0], up[:, 1])
    expected_up = [-0.0703125 - 0.0234375, 0.2265625, 0.8671875, 0.8671875, 0.2265625,
                   -0.0703125, -0.0234375, 0.0]  # fmt: skip
    np.testing.assert_allclose(up[:, 0], expected_up, rtol=0, atol=1e-15)
    down = protocol.imresize(np.array([0.0, 1, 0, 0, 0, 0, 0, 0])[:, None], 0.5)
    expected_down = [0.5 * 0.8671875 + 0.5 * -0.0703125, 0.5 * 0.2265625, 0.5 * -0.0234375, 0.0]
    np.testing.assert_allclose(down[:, 0], expected_down, rtol=0, atol=1e-15)
    assert protocol.output_length(13, 1 / 3) == 5 and protocol.output_length(7, 2.5) == 18


def test_imresize_sizes_and_constant_image() -> None:
    image = np.full((13, 7), 0.25)
    for scale in (2, 3, 4, 1.5, 2.7, 1 / 3, 0.5):
        out = protocol.imresize(image, scale)
        assert out.shape == (protocol.output_length(13, scale), protocol.output_length(7, scale))
        assert np.allclose(out, 0.25)
    assert protocol.imresize(np.zeros((1, 1)), 3).shape == (3, 3)


def test_imresize_uint8_rounds_and_saturates() -> None:
    image = np.array([[0, 255, 0], [255, 0, 255]], dtype=np.uint8)
    out = protocol.imresize(image, 2)
    assert out.dtype == np.uint8
    reference = protocol.imresize(image.astype(np.float64), 2)
    assert np.array_equal(out, np.clip(np.floor(reference + 0.5), 0, 255).astype(np.uint8))


def test_imresize_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="expected a positive finite scale"):
        protocol.imresize(np.zeros((4, 4)), 0)
    with pytest.raises(InvalidInputError, match="expected an"):
        protocol.imresize(np.zeros(4), 2)


def test_psnr_and_ssim() -> None:
    a = np.zeros((20, 20))
    b = a + 0.1
    assert protocol.psnr(a, b) == pytest.approx(20.0)
    assert protocol.psnr(a * 255, b * 255, peak=255.0) == pytest.approx(20.0)
    framed = np.pad(b, 3, constant_values=9.0)  # the border differs wildly and is shaved
    assert protocol.psnr(np.pad(a, 3), framed, border=3) == pytest.approx(20.0)
    assert protocol.psnr(a, a) == float("inf")
    assert protocol.ssim(a, a) == pytest.approx(1.0)
    noisy = np.random.default_rng(0).random((32, 32))
    assert protocol.ssim(noisy, noisy * 0.5) < 1.0
    # flat images: only the luminance term is left, c1 / (c^2 + c1) with c1 = (0.01 peak)^2
    assert protocol.ssim(np.zeros((11, 11)), np.full((11, 11), 0.01)) == pytest.approx(0.5)
    assert protocol.ssim(np.zeros((11, 11)), np.full((11, 11), 2.55), peak=255.0) == pytest.approx(0.5)


def test_ssim_of_one_window_by_hand() -> None:
    """11x11 images are one window: Gaussian sigma 1.5 weights, K1 0.01, K2 0.03, written out."""
    rng = np.random.default_rng(7)
    x, y = rng.random((11, 11)), rng.random((11, 11))
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cxy = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert protocol.ssim(x, y) == pytest.approx(expected, rel=1e-12)
    assert protocol.ssim(np.pad(x, 2), np.pad(y, 2), border=2) == pytest.approx(expected, rel=1e-12)


def test_modcrop_keeps_top_left() -> None:
    image = np.arange(7 * 11).reshape(7, 11)
    cropped = protocol.modcrop(image, 3)
    assert cropped.shape == (6, 9)
    assert np.array_equal(cropped, image[:6, :9])
