"""Opening runners (runtime.prepare) and the registry's decisions: availability as reasons,
``auto`` as a decision with its reason,
the device index and the ONNX Runtime TensorRT-provider cache key."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from vdsr_deploy.backends import device, registry
from vdsr_deploy.backends import onnxruntime as onnxruntime_backend
from vdsr_deploy.backends.device import cuda_index
from vdsr_deploy.backends.registry import REGISTRY, BackendChoice, RunnerSpec, choose_backend, unavailable_reason
from vdsr_deploy.backends.tensorrt.library import tensorrt_available
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime import prepare as factory
from vdsr_deploy.runtime.prepare import open_runner

TILES = TileConfig(tile=64, halo=8)


def test_cuda_index() -> None:
    assert cuda_index("cuda") == 0 and cuda_index("auto") == 0 and cuda_index("cuda:3") == 3
    for bad in ("cpu", "cuda:x", "gpu:1"):
        with pytest.raises(ConfigError, match="cuda or cuda:N"):
            cuda_index(bad)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    monkeypatch.setattr(device, "cuda_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "cuda_available", lambda: True)
    monkeypatch.setattr(device, "cuda_available", lambda: True)


def test_auto_without_a_gpu_takes_the_cpu_path(no_gpu: None) -> None:
    choice = choose_backend(RunnerSpec())
    assert choice.backend == "onnxruntime" and choice.reason.startswith("no CUDA GPU: ONNX Runtime")
    bf16 = choose_backend(RunnerSpec(precision="bf16"))
    assert bf16.backend == "torch" and "bf16" in bf16.reason
    cpu = choose_backend(RunnerSpec(device="cpu"))
    assert cpu.backend == "onnxruntime" and cpu.reason.startswith("device cpu:")
    assert choose_backend(RunnerSpec(backend="torch")).reason == "asked for"


def test_auto_without_onnxruntime_takes_pytorch(
    no_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime_backend, "installed", lambda: False)
    choice = choose_backend(RunnerSpec())
    assert choice.backend == "torch" and "onnxruntime is not installed" in choice.reason


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_auto_with_a_gpu_but_no_tensorrt_takes_pytorch_cuda(one_gpu: None) -> None:
    choice = choose_backend(RunnerSpec())
    assert choice.backend == "torch"
    assert choice.reason.startswith("PyTorch on CUDA, not TensorRT: TensorRT is not usable here")


def test_auto_with_tensorrt_but_no_cuda_python_takes_pytorch_cuda(
    one_gpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # type: ignore[attr-defined]
    fake.__version__ = "10.13.0.35"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    from vdsr_deploy.backends.tensorrt import cuda

    monkeypatch.setattr(cuda, "cuda_python_available", lambda: False)
    choice = choose_backend(RunnerSpec())
    assert choice.backend == "torch" and "cuda-python is not installed" in choice.reason
    monkeypatch.setattr(cuda, "cuda_python_available", lambda: True)
    assert choose_backend(RunnerSpec()) == BackendChoice(
        "tensorrt", "TensorRT, cuda-python and a CUDA GPU are usable"
    )
    assert choose_backend(RunnerSpec(device="cpu")).backend == "onnxruntime"


def test_unavailable_reasons_on_this_machine(no_gpu: None) -> None:
    assert unavailable_reason(RunnerSpec(backend="onnxruntime")) is None
    assert unavailable_reason(RunnerSpec(backend="torch", device="cpu")) is None
    assert "fp16 needs a CUDA device" in str(
        unavailable_reason(RunnerSpec(backend="torch", device="cpu", precision="fp16"))
    )
    assert "TensorRT" in str(unavailable_reason(RunnerSpec(backend="tensorrt")))
    with pytest.raises(BackendUnavailableError, match="fp16 needs a CUDA device"):
        open_runner(
            RunnerSpec(backend="torch", device="cpu", precision="fp16"), tiling=TILES, batch=1
        )


def test_onnxruntime_gets_the_device_index_and_a_cache_per_profile_and_precision(
    tmp_path: Path, tiny_weights: Path
) -> None:
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(tiny_weights)
    onnx_path = ensure_onnx(model, info, "fp32", tmp_path / "exports")  # checked, not opened

    def options(**changes: Any) -> Any:
        values: dict[str, Any] = {
            "backend": "onnxruntime",
            "provider": "tensorrt",
            "device": "cuda:1",
            "onnx": onnx_path,
            "engines_dir": tmp_path,
        }
        values.update(changes)
        tiling = values.pop("tiling", TILES)
        runner = open_runner(RunnerSpec(**values), tiling=tiling, batch=4)
        return runner.options

    base = options()
    assert base.device_id == 1 and base.profile.max == (4, 1, 64, 64)
    assert base.cache_dir.parent == tmp_path / "ort-trt-cache"
    assert base.cache_dir.name == "fp32_1x1x1-4x64x64-4x64x64"
    assert options(precision="fp16").cache_dir != base.cache_dir
    assert options(tiling=TileConfig(tile=128, halo=8)).cache_dir != base.cache_dir
    assert options(tiling=TileConfig(tile=0)).cache_dir.name == "fp32_dynamic"
    assert options(provider="cuda").cache_dir is None
    assert options(provider="cpu", device="cpu").device_id == 0


def test_tensorrt_gets_the_device_index_and_graph_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    # the opener's result stands in for a runner: open_runner sets its model identity
    opened = types.SimpleNamespace()
    monkeypatch.setattr(factory, "create_tensorrt_runner", lambda **kwargs: seen.update(kwargs) or opened)
    monkeypatch.setitem(
        REGISTRY, "tensorrt", dataclasses.replace(REGISTRY["tensorrt"], unavailable=lambda *args: None)
    )
    fake = types.ModuleType("tensorrt")
    fake.Builder = object  # type: ignore[attr-defined]
    fake.__version__ = "10.13.0.35"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    engine = tmp_path / "given.engine"
    open_runner(
        RunnerSpec(
            backend="tensorrt", device="cuda:2", precision="fp16", engine=engine, cuda_graphs=False
        ),
        tiling=TILES,
        batch=4,
    )
    assert seen["device"] == 2 and seen["engine_path"] == engine and seen["precision"] == "fp16"
    assert seen["cuda_graphs"] is False
