"""The device pipeline's logic on the CPU device: out-of-memory retries with halved tiles
(a fake runner raises torch.cuda.OutOfMemoryError), the runner adapter, ``--tile auto``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.imageio import read_image, write_image
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.planes.device_pipeline import (
    DeviceUpscaler,
    activation_bytes_per_pixel,
    auto_tile,
    int32_pixel_limit,
    use_device_path,
)
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runner import Runner, RunnerInfo


class OutOfMemoryAbove(Runner):
    """Runs ``inner`` but raises CUDA out-of-memory for tiles with a side above ``limit``."""

    def __init__(self, inner: Runner, limit: int) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.shapes: list[tuple[int, ...]] = []

    @property
    def info(self) -> RunnerInfo:
        return RunnerInfo("fake-oom", "cpu", "fp32")

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self.shapes.append(batch.shape)
        if max(batch.shape[2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.infer(batch)


def _image(rng: np.random.Generator, shape: tuple[int, int, int] = (45, 39, 3)) -> NDArray[np.uint8]:
    return rng.integers(0, 256, shape).astype(np.uint8)


@pytest.fixture
def inner(tiny_model: VDSR) -> TorchRunner:
    return TorchRunner(tiny_model, device="cpu")


def test_out_of_memory_halves_the_tile_and_keeps_the_result(
    rng: np.random.Generator, inner: TorchRunner
) -> None:
    samples = _image(rng, (100, 80, 3))
    whole = PipelineConfig(scale=2.0, tiling=TileConfig(tile=0, halo=4), batch=2)
    with inner:
        expected = DeviceUpscaler(inner, whole).upscale(samples)
        notes: list[str] = []
        fake = OutOfMemoryAbove(inner, limit=60)
        with fake:
            upscaler = DeviceUpscaler(fake, whole, on_note=notes.append)
            got = upscaler.upscale(samples)
            assert upscaler.tile_limit == 50  # 200x160 whole -> 100 (still too large) -> 50
            calls = len(fake.shapes)
            fake.limit = 1000  # the memory is back (another process finished, say)
            again = upscaler.upscale(samples)
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999
    np.testing.assert_array_equal(again, expected)
    assert notes == [
        "out of device memory at tile 200 (batch 1): halved the tile to 100 and retried",
        "out of device memory at tile 100 (batch 2): halved the tile to 50 and retried",
    ]
    # issue 22 (defect 8): the next image starts from the configured tile again (it was
    # held at 50 for every later image)
    assert fake.shapes[calls:] == [(1, 1, 200, 160)] and upscaler.tile_limit == 0


def test_out_of_memory_frees_the_failed_calls_memory_before_retrying(
    rng: np.random.Generator, inner: TorchRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22 (defect 8): the cache was emptied inside ``except``, while the traceback
    still held the failed call's tensors; now it is emptied after they are released."""
    import gc
    import sys
    import weakref

    from vdsr_deploy.planes import device_pipeline

    failed: list[weakref.ref[torch.Tensor]] = []

    class Remembers(OutOfMemoryAbove):
        def _infer_tensor(self, batch: torch.Tensor, stream: object) -> torch.Tensor:
            if max(batch.shape[2:]) > self.limit:
                failed.append(weakref.ref(batch))
            return super()._infer_tensor(batch, stream)  # type: ignore[arg-type]

    seen: list[tuple[bool, bool]] = []

    def free(device: torch.device) -> None:
        gc.collect()  # reference cycles aside: what is still referenced stays alive
        seen.append((sys.exc_info()[0] is None, all(ref() is None for ref in failed)))

    monkeypatch.setattr(device_pipeline, "free_device_memory", free)
    config = PipelineConfig(scale=2.0, tiling=TileConfig(tile=0, halo=4), batch=2)
    with inner, Remembers(inner, limit=60) as fake:
        DeviceUpscaler(fake, config).upscale(_image(rng, (50, 40, 3)))
    assert failed and seen and all(no_exception and released for no_exception, released in seen)


def test_out_of_memory_below_the_smallest_tile_is_a_clear_error(
    rng: np.random.Generator, inner: TorchRunner
) -> None:
    config = PipelineConfig(scale=2.0, tiling=TileConfig(tile=64, halo=10), batch=4)
    with (
        inner,
        OutOfMemoryAbove(inner, limit=10) as fake,
        pytest.raises(VdsrError, match=r"out of device memory even at tile 64 .* below 52 px"),
    ):
        DeviceUpscaler(fake, config).upscale(_image(rng))


def test_the_device_path_is_chosen_for_cuda_runners_only(inner: TorchRunner) -> None:
    class OnCuda(OutOfMemoryAbove):
        @property
        def tensor_device(self) -> str:
            return "cuda:0"

    assert not use_device_path(inner)
    assert use_device_path(OnCuda(inner, limit=1000))


# --tile auto


def test_auto_tile_is_whole_image_when_it_fits() -> None:
    per_pixel = activation_bytes_per_pixel(64, "fp16")
    sizes = [(2160, 3840), (1080, 1920)]
    budget = 4 * 2160 * 3840 * per_pixel
    assert auto_tile(sizes, budget_bytes=budget, batch=4, halo=20, bytes_per_pixel=per_pixel) == 0


def test_auto_tile_is_the_largest_multiple_that_fits() -> None:
    per_pixel = activation_bytes_per_pixel(64, "fp32")
    assert per_pixel == 2 * 64 * 4 + 12
    budget = 1 << 30
    tile = auto_tile([(24000, 24000)], budget_bytes=budget, batch=2, halo=20, bytes_per_pixel=per_pixel)
    assert tile % 32 == 0
    assert 2 * tile * tile * per_pixel <= budget < 2 * (tile + 32) ** 2 * per_pixel


def test_auto_tile_keeps_feature_maps_within_32_bit_indexing() -> None:
    limit = int32_pixel_limit(64)
    assert limit == (2**31 - 1) // 64
    huge_budget = 1 << 50
    assert auto_tile([(5000, 5000)], budget_bytes=huge_budget, batch=1, halo=20, bytes_per_pixel=268,
                     max_pixels=limit) == 0  # fmt: skip
    tile = auto_tile([(12000, 12000)], budget_bytes=huge_budget, batch=1, halo=20, bytes_per_pixel=268,
                     max_pixels=limit)  # fmt: skip
    assert tile == 5792 - 5792 % 32 and 64 * tile * tile < 2**31


def test_auto_tile_never_exceeds_the_image_and_refuses_tiny_budgets() -> None:
    assert auto_tile([(100, 3000)], budget_bytes=100 * 3000 * 10 - 1, batch=1, halo=20,
                     bytes_per_pixel=10) <= 3000  # fmt: skip
    with pytest.raises(ConfigError, match="fits no tile"):
        auto_tile([(4000, 4000)], budget_bytes=1000, batch=1, halo=20, bytes_per_pixel=524)
    with pytest.raises(ConfigError, match="no images"):
        auto_tile([], budget_bytes=1 << 30, batch=1, halo=20, bytes_per_pixel=524)


# the batch job on the device path


def test_job_on_the_device_path_writes_what_the_host_path_writes(
    tmp_path: Path, rng: np.random.Generator, inner: TorchRunner
) -> None:
    sources = tmp_path / "in"
    sources.mkdir()
    write_image(sources / "rgba.png", rng.random((33, 47, 4)), bit_depth=8)
    write_image(sources / "gray16.png", rng.random((29, 21, 1)), bit_depth=16)
    write_image(sources / "rgb.jpg", rng.random((40, 31, 3)), bit_depth=8)
    pipeline = PipelineConfig(scale=2.5, tiling=TileConfig(tile=40, halo=8), batch=3)
    outputs = {}
    with inner:
        for device_path in (False, True):
            config = JobConfig(inputs=(str(sources),), output=tmp_path / f"out-{device_path}", pipeline=pipeline,
                               memory_mb=16)  # fmt: skip
            summary = run_job(config, inner, device_path=device_path)
            assert summary.ok and len(summary.done) == 3
            written = sorted(p for p in config.output.iterdir() if not p.name.startswith("."))
            outputs[device_path] = {p.name: read_image(p) for p in written}
    assert outputs[True].keys() == outputs[False].keys() and len(outputs[True]) == 3
    for name, host in outputs[False].items():
        device = outputs[True][name]
        assert device.bit_depth == host.bit_depth and device.samples.shape == host.samples.shape, name
        diff = np.abs(device.samples.astype(int) - host.samples.astype(int))
        assert diff.max() <= 1, name
        if host.bit_depth == 8:
            assert (diff == 0).all(axis=2).mean() >= 0.9999, name


def test_job_reports_out_of_memory_retries_as_notes(
    tmp_path: Path, rng: np.random.Generator, inner: TorchRunner
) -> None:
    write_image(tmp_path / "a.png", rng.random((40, 40, 3)), bit_depth=8)
    pipeline = PipelineConfig(scale=2.0, tiling=TileConfig(tile=0, halo=4), batch=1)
    config = JobConfig(inputs=(str(tmp_path / "a.png"),), output=tmp_path / "out", pipeline=pipeline)
    with inner, OutOfMemoryAbove(inner, limit=50) as fake:
        summary = run_job(config, fake, device_path=True)
    assert summary.ok and len(summary.done) == 1
    assert [n.message for n in summary.notes] == [
        "out of device memory at tile 80 (batch 1): halved the tile to 40 and retried"
    ]


def test_cli_tile_auto_sizes_the_tile_from_the_inputs(tmp_path: Path, tiny_weights: Path) -> None:
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    image = tmp_path / "a.png"
    write_image(image, np.random.default_rng(0).random((30, 50, 3)), bit_depth=8)
    base = ["upscale", str(image), "-o", str(tmp_path / "out"), "-w", str(tiny_weights), "-b", "torch",
            "--device", "cpu", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, [*base, "--tile", "auto"])
    assert result.exit_code == 0, result.output
    # a 60x100 output at (2 * 8 channels * 4 + 12) B/pixel fits any CPU budget: whole images
    assert "--tile auto: whole images" in result.output and "whole image, batch" in result.output
    result = CliRunner().invoke(app, base)  # auto is the default
    assert result.exit_code == 0 and "--tile auto: whole images" in result.output, result.output
    result = CliRunner().invoke(app, [*base, "--tile", "big"])
    assert result.exit_code == 2 and "--tile: expected a side in pixels, 0 or auto" in result.output


def test_choose_tile_on_the_cpu_sizes_a_tile_for_the_batch_when_no_whole_image_fits() -> None:
    from vdsr_deploy.job.autotile import choose_tile

    chosen = choose_tile([(6000, 6000)], scale=2.0, batch=4, halo=20, device="cpu", precision="fp32",
                         channels=64, budget=256 << 20)  # fmt: skip
    assert chosen.tile == 352  # isqrt(256 MiB / (4 x 524 B)) = 357, down to a multiple of 32
    assert "x batch 4 within 0.25 GiB given" in chosen.reason


def test_choose_tile_on_the_cpu_runs_an_image_whole_when_one_fits_at_batch_1() -> None:
    from vdsr_deploy.job.autotile import choose_tile

    # a 1024x768 output: 786432 x 524 B = 393 MiB fits 512 MiB alone, not 4 at once
    chosen = choose_tile([(384, 512)], scale=2.0, batch=4, halo=20, device="cpu", precision="fp32",
                         channels=64, budget=512 << 20)  # fmt: skip
    assert chosen.tile == 0 and "whole images" in chosen.reason


def test_job_fails_only_the_file_whose_colour_planes_run_out_of_memory(
    tmp_path: Path, rng: np.random.Generator, inner: TorchRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vdsr_deploy.planes.device_colour import DeviceColour

    write_image(tmp_path / "big.png", rng.random((40, 40, 3)), bit_depth=8)
    write_image(tmp_path / "small.png", rng.random((10, 12, 3)), bit_depth=8)
    original = DeviceColour.prepare_rows

    def prepare_rows(self: DeviceColour, samples: torch.Tensor, scale: float, start: int, stop: int) -> Any:
        if samples.shape[0] > 20:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return original(self, samples, scale, start, stop)

    monkeypatch.setattr(DeviceColour, "prepare_rows", prepare_rows)
    pipeline = PipelineConfig(scale=2.0, tiling=TileConfig(tile=0, halo=4), batch=1)
    config = JobConfig(inputs=(str(tmp_path / "big.png"), str(tmp_path / "small.png")), output=tmp_path / "out",
                       pipeline=pipeline)  # fmt: skip
    with inner:
        summary = run_job(config, inner, device_path=True)
    assert [item.source.name for item in summary.done] == ["small.png"]
    assert [(f.source.name, f.reason) for f in summary.failed] == [
        ("big.png", "out of device memory for a band of 80x80 output pixels (colour planes): lower --tile "
                    "(CUDA out of memory. Tried to allocate 9.00 GiB)")
    ]  # fmt: skip
    assert not (tmp_path / "out" / "big.png").exists()


# issue 27 (kind 1): every pipeline option on both paths, compared output for output

OPTION_SETS = {
    "whole images, batch 1, png out": dict(scale=2.0, tile=0, halo=0, batch=1, ensemble=False, fmt="png",
                                           memory_mb=1024),
    "odd tiles, batch 2, ensemble, scale 2.5, tiff out": dict(scale=2.5, tile=23, halo=5, batch=2, ensemble=True,
                                                              fmt="tiff", memory_mb=16),
}  # fmt: skip


def _mixed_inputs(folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir()
    write_image(folder / "rgba.png", rng.random((13, 17, 4)), bit_depth=8)  # alpha
    write_image(folder / "gray16.png", rng.random((11, 9, 1)), bit_depth=16)  # 16-bit gray
    write_image(folder / "rgb16.tif", rng.random((9, 14, 3)), bit_depth=16)  # 16-bit colour
    write_image(folder / "graya.png", rng.random((10, 12, 2)), bit_depth=8)  # gray + alpha
    write_image(folder / "rgb.jpg", rng.random((15, 11, 3)), bit_depth=8)


def _run(
    out: Path, inner: TorchRunner, sources: Path, options: dict[str, Any], device_path: bool
) -> dict[str, Any]:
    tiling = TileConfig(tile=options["tile"], halo=options["halo"])
    pipeline = PipelineConfig(
        scale=options["scale"], tiling=tiling, batch=options["batch"], ensemble=options["ensemble"]
    )
    config = JobConfig(inputs=(str(sources),), output=out, pipeline=pipeline, fmt=options["fmt"],
                       memory_mb=options["memory_mb"], load_threads=1, save_threads=1)  # fmt: skip
    summary = run_job(config, inner, device_path=device_path)
    assert summary.ok and len(summary.done) == 5, summary
    return {p.name: read_image(p) for p in out.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("name", list(OPTION_SETS))
def test_every_pipeline_option_gives_the_same_files_on_both_paths(
    name: str, tmp_path: Path, rng: np.random.Generator, inner: TorchRunner
) -> None:
    """The host path and the device path (on torch's CPU device) must honour the same
    options: a setting dropped on one path (e.g. --ensemble) shows as different outputs.
    Inputs: alpha, gray + alpha, 16-bit gray and colour, JPEG; odd sizes."""
    options = OPTION_SETS[name]
    sources = tmp_path / "in"
    _mixed_inputs(sources, rng)
    with inner:
        host = _run(tmp_path / "host", inner, sources, options, device_path=False)
        device = _run(tmp_path / "device", inner, sources, options, device_path=True)
        plain = _run(tmp_path / "plain", inner, sources, {**options, "ensemble": False}, False) if options[
            "ensemble"
        ] else host
    assert device.keys() == host.keys() and len(host) == 5
    for file, expected in host.items():
        got = device[file]
        assert (got.bit_depth, got.samples.shape, got.has_alpha) == (
            expected.bit_depth,
            expected.samples.shape,
            expected.has_alpha,
        ), file
        diff = np.abs(got.samples.astype(np.int64) - expected.samples.astype(np.int64))
        assert diff.max() <= 1, (file, diff.max())  # float rounding: at most 1 LSB
        if expected.bit_depth == 8:
            assert (diff == 0).all(axis=2).mean() >= 0.99, file
        if options["fmt"] is not None:
            assert Path(file).suffix.lstrip(".") in (options["fmt"], "tif"), file
        if options["ensemble"]:  # it changes the output, so dropping it on one path would show above
            assert not np.array_equal(expected.samples, plain[file].samples), file
