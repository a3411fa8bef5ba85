"""The TensorRT simulator keeps the rules of tests/trtsim/RULES.md: each rule checked on
the simulated API directly (so a simulator that stopped enforcing one would fail here,
not silently let the end-to-end tests pass)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import trtsim

from vdsr_deploy.export.onnx import build_graph, export_metadata
from vdsr_deploy.model.network import VDSR


@pytest.fixture
def trt() -> Iterator[object]:
    trtsim.install(trtsim.SimGpu(total_bytes=64 << 20))
    try:
        import tensorrt

        yield tensorrt
    finally:
        trtsim.uninstall()


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    import onnx

    torch.manual_seed(0)
    model = VDSR(depth=2, channels=4)
    path = tmp_path / "tiny-fp16.onnx"
    onnx.save(build_graph(model, "fp16", export_metadata(model, None, "fp16")), str(path))
    return path


class Log:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def log(self, severity: object, msg: str) -> None:
        self.errors.append(msg)


def build(trt: object, onnx_file: Path, *, strongly_typed: bool = True, side: int = 16) -> tuple[bytes, Log]:
    logger = Log()
    builder = trt.Builder(logger)  # type: ignore[attr-defined]
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0  # type: ignore[attr-defined]
    network = builder.create_network(flags)
    assert trt.OnnxParser(network, logger).parse_from_file(str(onnx_file))  # type: ignore[attr-defined]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", trt.Dims([1, 1, 1, 1]), trt.Dims([2, 1, side, side]), trt.Dims([2, 1, side, side]))  # type: ignore[attr-defined]
    assert config.add_optimization_profile(profile) == 0
    blob = builder.build_serialized_network(network, config)
    assert blob is not None
    return bytes(blob), logger


def test_r2_a_profile_needs_min_opt_max_in_order_and_a_dynamic_input_needs_one(trt: object, onnx_file: Path) -> None:
    logger = Log()
    builder = trt.Builder(logger)  # type: ignore[attr-defined]
    network = builder.create_network(0)
    trt.OnnxParser(network, logger).parse_from_file(str(onnx_file))  # type: ignore[attr-defined]
    config = builder.create_builder_config()
    bad = builder.create_optimization_profile()
    bad.set_shape("input", trt.Dims([1, 1, 8, 8]), trt.Dims([1, 1, 4, 4]), trt.Dims([1, 1, 16, 16]))  # type: ignore[attr-defined]
    assert config.add_optimization_profile(bad) == -1
    assert builder.build_serialized_network(network, config) is None
    assert "no optimization profile" in logger.errors[-1]


def test_r3_strongly_typed_keeps_the_onnx_fp16_layers(trt: object, onnx_file: Path) -> None:
    for typed, expected in ((True, "Half"), (False, "Float")):
        blob, logger = build(trt, onnx_file, strongly_typed=typed)
        engine = trt.Runtime(logger).deserialize_cuda_engine(blob)  # type: ignore[attr-defined]
        text = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)  # type: ignore[attr-defined]
        assert expected in text and ("Half" in text) == typed


def test_r4_to_r6_shapes_addresses_and_bound_buffers(trt: object, onnx_file: Path) -> None:
    blob, logger = build(trt, onnx_file)
    engine = trt.Runtime(logger).deserialize_cuda_engine(blob)  # type: ignore[attr-defined]
    context = engine.create_execution_context()
    assert context.set_optimization_profile_async(0, 0)
    assert not context.set_input_shape("input", (3, 1, 16, 16))  # batch above the profile's max
    assert not context.set_input_shape("input", (1, 1, 17, 16))
    assert "outside profile" in logger.errors[-1]
    assert context.set_input_shape("input", (2, 1, 16, 16))
    assert not context.execute_async_v3(0)  # no addresses bound yet
    x = torch.rand(2, 1, 16, 16)
    y = torch.zeros(2, 1, 16, 16)
    assert context.set_tensor_address("input", x.data_ptr()) and context.set_tensor_address("output", y.data_ptr())
    assert context.execute_async_v3(0)
    assert float(y.abs().sum()) > 0  # written at the bound address
    other = engine.create_execution_context()
    assert not other.set_optimization_profile_async(0, 0)  # R9: profile 0 is held by `context`


def test_r7_r8_engines_belong_to_their_gpu_and_contexts_need_device_memory(trt: object, onnx_file: Path) -> None:
    blob, logger = build(trt, onnx_file, side=512)  # 2 x 512 x 512 x (2 x 4 x 2 + 8) B = 12 MiB
    runtime = trt.Runtime(logger)  # type: ignore[attr-defined]
    assert runtime.deserialize_cuda_engine(b"not an engine") is None
    engine = runtime.deserialize_cuda_engine(blob)
    contexts = [engine.create_execution_context() for _ in range(6)]  # 64 MiB GPU
    assert contexts[0] is not None and contexts[-1] is None
    assert "OutOfMemory" in logger.errors[-1]
    trtsim.install(trtsim.SimGpu(name="NVIDIA Other GPU", compute_capability=(8, 0)))
    import tensorrt

    assert tensorrt.Runtime(logger).deserialize_cuda_engine(blob) is None
    assert "built for" in logger.errors[-1]


def test_r10_r11_timing_cache_per_device_and_builds_differ(trt: object, onnx_file: Path) -> None:
    first, _ = build(trt, onnx_file)
    second, _ = build(trt, onnx_file)
    assert first != second
    logger = Log()
    config = trt.Builder(logger).create_builder_config()  # type: ignore[attr-defined]
    cache = config.create_timing_cache(b"")
    data = bytes(cache.serialize())
    trtsim.install(trtsim.SimGpu(name="NVIDIA Other GPU"))
    import tensorrt

    other = tensorrt.Builder(logger).create_builder_config()
    assert not other.set_timing_cache(other.create_timing_cache(data), ignore_mismatch=False)
    assert other.set_timing_cache(other.create_timing_cache(data), ignore_mismatch=True)
