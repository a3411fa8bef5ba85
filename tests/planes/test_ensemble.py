"""The x8 self-ensemble: transforms, the average by hand, exactness with tiling, every command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.cli import app
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights
from vdsr_deploy.planes import colour
from vdsr_deploy.planes.ensemble import TRANSFORMS, dihedral, ensemble_plane, ensemble_planes, inverse_dihedral
from vdsr_deploy.planes.image import upscale_pixels
from vdsr_deploy.planes.pipeline import FLUSH, PipelineConfig, upscale_plane
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo

torch.manual_seed(11)
MODEL = VDSR(depth=5, channels=4).eval()  # receptive-field radius 5
RADIUS = MODEL.receptive_field_radius
F32 = NDArray[np.float32]


class ShiftRunner(Runner):
    """Not rotation- or mirror-invariant, and per tile independent of the batch: the output
    pixel is ``x + 0.5 * (pixel above) - 0.25 * (pixel to the left)`` (zero outside), so
    averaging by hand is bit-exact and a wrong inverse transform shows."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("shift", "cpu", "fp32")

    def _infer(self, batch: F32) -> F32:
        self.calls.append(batch.shape)
        above = np.zeros_like(batch)
        above[:, :, 1:, :] = batch[:, :, :-1, :]
        left = np.zeros_like(batch)
        left[:, :, :, 1:] = batch[:, :, :, :-1]
        result: F32 = batch + np.float32(0.5) * above - np.float32(0.25) * left
        return result


def plane(height: int, width: int, seed: int = 0) -> F32:
    return np.random.default_rng(seed).random((height, width), dtype=np.float32)


def by_hand(image: F32, run: Callable[[F32], F32]) -> F32:
    """The eight transformed runs, mapped back, averaged in float64 (written out with numpy
    alone, independently of :mod:`vdsr_deploy.planes.ensemble`)."""
    outputs = []
    for quarter_turns in range(4):
        for mirrored in (False, True):
            transformed = np.rot90(image, quarter_turns)
            transformed = np.fliplr(transformed) if mirrored else transformed
            result = run(np.ascontiguousarray(transformed))
            result = np.fliplr(result) if mirrored else result
            outputs.append(np.rot90(result, -quarter_turns))
    return np.mean(np.stack(outputs).astype(np.float64), axis=0).astype(np.float32)


def test_transforms_are_the_dihedral_group_and_invert() -> None:
    image = plane(3, 5)
    seen = set()
    for index in range(TRANSFORMS):
        transformed = dihedral(image, index)
        assert transformed.shape == ((3, 5) if index % 2 == 0 else (5, 3))
        assert np.array_equal(inverse_dihedral(transformed, index), image)
        seen.add(transformed.tobytes() + bytes(transformed.shape))
    assert len(seen) == 8
    assert np.array_equal(dihedral(image, 1), np.rot90(image))
    assert np.array_equal(dihedral(image, 4), image[:, ::-1])
    with pytest.raises(ValueError):
        dihedral(image, 8)


def test_training_augmentation_uses_the_same_transforms() -> None:
    from train.data import dihedral as train_dihedral

    image = plane(4, 6)
    for index in range(TRANSFORMS):
        assert np.array_equal(train_dihedral(image, index), dihedral(image, index))


@pytest.mark.parametrize("tile", [0, 16])
def test_equals_averaging_the_eight_runs_by_hand_exactly(tile: int) -> None:
    image = plane(23, 17)
    with ShiftRunner() as runner:
        ensembled = ensemble_plane(image, runner, TileConfig(tile=tile, halo=2), batch=3)
        single = upscale_plane(image, runner, TileConfig(tile=0), batch=1)

        def run(x: F32) -> F32:
            return upscale_plane(x, runner, TileConfig(tile=0), batch=1)

        expected = by_hand(image, run)
    assert ensembled.dtype == np.float32 and ensembled.shape == image.shape
    assert np.array_equal(ensembled, expected)
    assert not np.allclose(ensembled, single, atol=1e-3)  # the ensemble does change the output


def test_equals_averaging_the_eight_runs_by_hand_on_vdsr() -> None:
    image = plane(19, 26, seed=3)

    def run(x: F32) -> F32:
        with torch.inference_mode():
            return MODEL(torch.from_numpy(x)[None, None]).numpy()[0, 0]

    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        ensembled = ensemble_plane(image, runner, TileConfig(tile=0), batch=4)
    np.testing.assert_allclose(ensembled, by_hand(image, run), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("height", "width", "tile", "batch"),
    [(37, 23, 16, 1), (23, 37, 17, 3), (41, 29, 24, 8), (1, 13, 12, 2), (31, 31, 16, 5)],
)
def test_tiled_equals_untiled(height: int, width: int, tile: int, batch: int) -> None:
    image = plane(height, width, seed=height * width)
    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        untiled = ensemble_plane(image, runner, TileConfig(tile=0), batch=1)
        tiled = ensemble_plane(image, runner, TileConfig(tile=tile, halo=RADIUS), batch=batch)
        too_small_halo = ensemble_plane(image, runner, TileConfig(tile=tile, halo=RADIUS - 2), batch=batch)
    np.testing.assert_allclose(tiled, untiled, rtol=0, atol=1e-5)
    if min(height, width) > tile:
        assert np.max(np.abs(too_small_halo - untiled)) > 1e-4  # the halo rule still matters


def test_many_images_share_batches_and_keep_their_keys() -> None:
    images = {"a": plane(17, 11, 1), "b": plane(11, 17, 2), "c": plane(9, 9, 3)}
    with ShiftRunner() as runner:
        stream = [("a", images["a"]), FLUSH, ("b", images["b"]), ("c", images["c"])]
        results = dict(ensemble_planes(stream, runner, TileConfig(tile=0), batch=8, max_images_in_flight=1))
        alone = {k: ensemble_plane(v, runner, TileConfig(tile=0), batch=1) for k, v in images.items()}
        batched_calls = list(runner.calls)
    assert set(results) == set(images)
    for key, image in images.items():
        assert results[key].shape == image.shape
        assert np.array_equal(results[key], alone[key])
    # one image's four same-orientation planes went through in one runner call
    assert any(shape[0] >= 4 for shape in batched_calls)


def test_upscale_pixels_applies_the_ensemble_from_its_config() -> None:
    pixels = np.random.default_rng(5).random((13, 10, 3), dtype=np.float32)
    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        config = PipelineConfig(scale=2, tiling=TileConfig(tile=0), batch=2, ensemble=True)
        ensembled = upscale_pixels(pixels, runner, config)
        prepared = colour.prepare(pixels, 2)
        expected = colour.finish(prepared, ensemble_plane(prepared.y, runner, TileConfig(tile=0), batch=2))
        plain = upscale_pixels(pixels, runner, PipelineConfig(scale=2, tiling=TileConfig(tile=0)))
    assert np.array_equal(ensembled, expected)
    assert not np.array_equal(ensembled, plain)


# -- every command ----------------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    return save_weights(MODEL, tmp_path / "tiny5.safetensors")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_upscale_ensemble(tmp_path: Path, weights: Path) -> None:
    source = tmp_path / "in.png"
    pixels = (np.random.default_rng(2).random((21, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(source)
    common = [str(source), "-s", "2", "-w", str(weights), "--backend", "torch", "--device", "cpu"]
    common += ["--tile", "16", "--halo", str(RADIUS), "--batch", "3", "-q"]
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "ens"), "--ensemble")
    assert code == 0, text
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "plain"))
    assert code == 0, text
    ensembled = np.asarray(Image.open(tmp_path / "ens" / "in.png"), dtype=np.float32)
    plain = np.asarray(Image.open(tmp_path / "plain" / "in.png"), dtype=np.float32)
    with TorchRunner(MODEL, device="cpu", channels_last=False) as runner:
        config = PipelineConfig(scale=2, tiling=TileConfig(tile=0), ensemble=True)
        expected = upscale_pixels(pixels.astype(np.float32) / 255, runner, config)
    assert ensembled.shape == (42, 60, 3)
    assert np.max(np.abs(ensembled - np.rint(expected * 255))) <= 1  # tiled CLI == untiled library
    assert np.max(np.abs(ensembled - plain)) > 1
    # resuming the ensemble folder without --ensemble must not pass the outputs off as its own
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "ens"))
    assert code == 0, text
    assert "skipped" in text and "0 done" in text


def test_cli_eval_ensemble(tmp_path: Path, weights: Path) -> None:
    folder = tmp_path / "hr"
    folder.mkdir()
    hr = (np.random.default_rng(4).random((41, 53, 3)) * 255).astype(np.uint8)
    Image.fromarray(hr).save(folder / "x.png")
    scores = {}
    for flag in ("--ensemble", None):
        out = tmp_path / f"reports-{flag}"
        args = ["eval", str(folder), "-s", "2", "-w", str(weights), "--device", "cpu", "--out", str(out)]
        code, text = invoke(*args, *([flag] if flag else []))
        assert code == 0, text
        report = json.loads((out / "hr.json").read_text())
        assert report["ensemble"] is (flag is not None)
        scores[flag] = report["summaries"][0]["psnr"]
        if flag:
            assert "x8 ensemble" in (out / "hr.md").read_text()
    assert scores["--ensemble"] != scores[None]


def test_cli_validate_ensemble(tmp_path: Path, weights: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = (np.random.default_rng(6).random((19, 26, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    out = tmp_path / "out"
    code, text = invoke(
        "validate", str(folder), "-w", str(weights), "--tile", "24", "--halo", str(RADIUS), "--no-edge-cases",
        "-r", "onnxruntime-fp32", "-r", "untiled", "--engines-dir", str(tmp_path / "engines"),
        "--ensemble", "-o", str(out),
    )  # fmt: skip
    assert code == 0, text
    report = json.loads((out / "validate.json").read_text())
    assert report["ensemble"] is True and report["passed"] is True
    assert [p["status"] for p in report["pairs"]] == ["passed", "passed"]
    assert "self-ensemble" in (out / "validate.md").read_text()


def test_cli_bench_ensemble(tmp_path: Path, weights: Path) -> None:
    results = {}
    for flag in ("--ensemble", None):
        out = tmp_path / f"bench-{flag}"
        code, text = invoke(
            "bench", "-b", "torch", "-t", "16", "--batch", "4", "--size", "30x22", "--warmup", "0",
            "--repeats", "1", "--halo", str(RADIUS), "-w", str(weights), "--device", "cpu", "-o", str(out),
            *([flag] if flag else []),
        )  # fmt: skip
        assert code == 0, text
        results[flag] = json.loads((out / "bench.json").read_text())
    ens, plain = results["--ensemble"], results[None]
    assert ens["config"]["ensemble"] is True and plain["config"]["ensemble"] is False
    ens_run, plain_run = ens["results"][0], plain["results"][0]
    assert ens_run["output_shape"] == plain_run["output_shape"]
    assert ens_run["tiles_per_image"] == 8 * plain_run["tiles_per_image"]
    assert ens_run["network_pixels_per_image"] == 8 * plain_run["network_pixels_per_image"]
    assert "self-ensemble" in (tmp_path / "bench---ensemble" / "bench.md").read_text()
