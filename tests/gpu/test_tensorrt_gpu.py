"""TensorRT on a real GPU: build engines from a tiny seeded VDSR, run them, compare with
PyTorch, and check tiled == untiled. Skips cleanly without TensorRT, cuda-python or a GPU.

Run with: pytest -m tensorrt tests/gpu
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vdsr_deploy.backends.tensorrt import cuda
from vdsr_deploy.backends.tensorrt.build_config import EngineBuildConfig
from vdsr_deploy.backends.tensorrt.builder import (
    build_engine,
    find_or_build_engine,
)
from vdsr_deploy.backends.tensorrt.cache import find_engine
from vdsr_deploy.backends.tensorrt.cuda import DeviceInfo
from vdsr_deploy.backends.tensorrt.keys import sidecar_path
from vdsr_deploy.backends.tensorrt.library import (
    tensorrt_available,
    tensorrt_status,
)
from vdsr_deploy.backends.tensorrt.sidecar import read_sidecar
from vdsr_deploy.errors import BackendUnavailableError, EngineMismatchError
from vdsr_deploy.planes.tiling import TileConfig, extract, place, plan_tiles


def _why_not() -> str | None:
    if not tensorrt_available():
        return f"TensorRT: {tensorrt_status()}"
    try:
        cuda.require_device(0)
    except BackendUnavailableError as error:
        return str(error)
    return None


REASON = _why_not()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.tensorrt,
    pytest.mark.skipif(REASON is not None, reason=f"needs TensorRT and a CUDA GPU ({REASON})"),
]

DEPTH, CHANNELS = 4, 8  # receptive-field radius 4: a halo of 8 is exact
TILING = TileConfig(tile=64, halo=8)
BATCH = 4
# FP32 with TF32 off on both sides: only summation order differs (cuDNN/PyTorch CPU vs the
# TensorRT tactic), ~1e-6 on values of order 1.
FP32_TOLERANCE = 1e-4
# FP16: weights and activations are rounded to FP16 (unit roundoff 2**-11 = 4.9e-4) at each
# of the 4 layers and accumulated over 3*3*8 = 72 terms per output (possibly in FP16 by the
# chosen tactic); with He-initialised weights the activations stay O(1), so each layer adds
# about sqrt(72) * 4.9e-4 * |activation| ~ 4e-3 of error in the worst pixels, and 4 layers
# stay well under 2e-2. That is also the bound the exporter applies to the FP16 ONNX
# (export.VERIFY_TOLERANCE["fp16"]); the mean must stay an order of magnitude lower.
FP16_TOLERANCE = 2e-2
FP16_MEAN_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def model() -> Any:
    import torch

    from vdsr_deploy.model.network import VDSR

    torch.manual_seed(0)
    return VDSR(depth=DEPTH, channels=CHANNELS).eval()


@pytest.fixture(scope="module")
def onnx_files(model: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")  # the exporter verifies with ONNX Runtime
    from vdsr_deploy.export.onnx import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    return {
        p: export_onnx(model, folder / f"tiny-{p}.onnx", precision=p).path for p in ("fp32", "fp16")
    }


@pytest.fixture(scope="module")
def engines_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engines")


def reference(model: Any, batch: np.ndarray) -> np.ndarray:
    """PyTorch fp32 on the CPU (no TF32 there)."""
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(batch)).numpy()


def run(engine_path: Path, batch: np.ndarray, **options: Any) -> np.ndarray:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

    with TensorRTRunner(engine_path, **options) as runner:
        return runner.infer(batch)


def test_fp32_engine_matches_pytorch(
    model: Any, onnx_files: dict[str, Path], engines_dir: Path
) -> None:
    config = EngineBuildConfig.for_tiles(TILING, BATCH, precision="fp32")
    record = build_engine(onnx_files["fp32"], config, engines_dir)
    sidecar = read_sidecar(sidecar_path(record.path))
    assert sidecar.precision == "fp32" and not sidecar.tf32 and sidecar.fp16_layers == 0
    batch = np.random.default_rng(1).random(
        (2 * BATCH + 1, 1, 64, 64), dtype=np.float32
    )  # split: 4+4+1
    result = run(record.path, batch)
    assert float(np.max(np.abs(result - reference(model, batch)))) <= FP32_TOLERANCE


def test_fp16_engine_has_fp16_layers_and_matches_pytorch(
    model: Any, onnx_files: dict[str, Path], engines_dir: Path
) -> None:
    config = EngineBuildConfig.for_tiles(TILING, BATCH, precision="fp16")
    record = build_engine(onnx_files["fp16"], config, engines_dir)
    assert record.sidecar.fp16_layers > 0
    batch = np.random.default_rng(2).random((BATCH, 1, 64, 64), dtype=np.float32)
    difference = np.abs(run(record.path, batch) - reference(model, batch))
    assert np.all(np.isfinite(difference))
    assert float(difference.max()) <= FP16_TOLERANCE
    assert float(difference.mean()) <= FP16_MEAN_TOLERANCE


def test_tiled_equals_untiled_on_tensorrt(
    model: Any, onnx_files: dict[str, Path], engines_dir: Path
) -> None:
    image = np.random.default_rng(3).random((150, 170), dtype=np.float32)
    tiled_engine = find_or_build_engine(
        onnx_files["fp32"],
        EngineBuildConfig.for_tiles(TILING, BATCH, precision="fp32"),
        engines_dir,
    ).path
    whole_engine = find_or_build_engine(
        onnx_files["fp32"],
        EngineBuildConfig.for_tiles(TileConfig(tile=0), 1, max_side=192, precision="fp32"),
        engines_dir,
    ).path
    tiles = plan_tiles(*image.shape, TILING)
    windows = np.stack([extract(image, t)[None] for t in tiles])  # all 64x64: the image is larger
    results = run(tiled_engine, windows)
    stitched = np.empty_like(image)
    for tile, result in zip(tiles, results, strict=True):
        place(stitched, tile, result[0])
    whole = run(whole_engine, image[None, None])[0, 0]
    assert float(np.max(np.abs(stitched - whole))) <= FP32_TOLERANCE
    assert (
        float(np.max(np.abs(whole - reference(model, image[None, None])[0, 0]))) <= FP32_TOLERANCE
    )


def test_cuda_graphs_replay_and_match_plain_enqueue(
    onnx_files: dict[str, Path], engines_dir: Path
) -> None:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

    path = find_or_build_engine(
        onnx_files["fp16"],
        EngineBuildConfig.for_tiles(TILING, BATCH),
        engines_dir,
    ).path
    batch = np.random.default_rng(4).random((3 * BATCH, 1, 64, 64), dtype=np.float32)
    plain = run(path, batch, cuda_graphs=False)
    with TensorRTRunner(path) as runner:
        results = [runner.infer(batch) for _ in range(4)]
        details = runner.info.details
    assert details["cuda_graphs"] == "on", details
    assert (
        details["stats"]["captures"] >= 2
        and details["stats"]["graph_launches"] > details["stats"]["captures"]
    )
    for result in results:
        np.testing.assert_array_equal(result, plain)


def test_cache_reuses_and_explains(onnx_files: dict[str, Path], engines_dir: Path) -> None:
    config = EngineBuildConfig.for_tiles(TILING, BATCH)
    first = find_or_build_engine(onnx_files["fp16"], config, engines_dir)
    again = find_or_build_engine(onnx_files["fp16"], config, engines_dir)
    assert again.path == first.path and not again.built
    gpu = cuda.require_device(0)
    elsewhere = DeviceInfo(index=0, name="Some Other GPU", compute_capability=(7, 5))
    cuda_major = first.sidecar.cuda_major
    assert cuda_major == cuda.runtime_version() // 1000
    assert first.sidecar.multiprocessors == gpu.multiprocessors > 0
    assert (
        find_engine(
            engines_dir,
            onnx_files["fp16"],
            config,
            gpu,
            first.sidecar.tensorrt_version,
            cuda_major=cuda_major,
        )
        == first.path
    )
    with pytest.raises(EngineMismatchError, match="but this GPU is Some Other GPU"):
        find_engine(
            engines_dir,
            onnx_files["fp16"],
            config,
            elsewhere,
            first.sidecar.tensorrt_version,
            cuda_major=cuda_major,
        )


def test_device_form_on_streams_equals_the_host_form(
    onnx_files: dict[str, Path], engines_dir: Path
) -> None:
    """infer_tensor on CUDA tensors, enqueued on two caller streams without host syncs,
    gives what infer gives; buffers the runner owns keep their addresses; partial chunks
    are padded so every chunk replays the one graph of its context."""
    import torch

    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

    path = find_or_build_engine(
        onnx_files["fp16"], EngineBuildConfig.for_tiles(TILING, BATCH), engines_dir
    ).path
    batches = [
        np.random.default_rng(seed).random((BATCH + 1 + seed, 1, 64, 64), dtype=np.float32)
        for seed in range(4)
    ]
    with TensorRTRunner(path) as runner:
        assert runner.tensor_device == "cuda:0"
        host = [runner.infer(b) for b in batches]
        streams = [torch.cuda.Stream(), torch.cuda.Stream()]
        inputs = [torch.from_numpy(b).cuda() for b in batches]
        for stream in streams:
            stream.wait_stream(torch.cuda.current_stream())
        outputs = []
        for index, tensor in enumerate(inputs):
            stream = streams[index % 2]
            with torch.cuda.stream(stream):
                outputs.append(runner.infer_tensor(tensor, stream=stream))
        for stream in streams:
            stream.synchronize()
        stats = runner.info.details["stats"]
    for result, expected in zip(outputs, host, strict=True):
        np.testing.assert_array_equal(result.cpu().numpy(), expected)
    assert stats["captures"] == 2  # one 4x64x64 graph per context, partial chunks padded
    assert stats["graph_launches"] > stats["captures"]
