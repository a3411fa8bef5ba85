"""Static INT8 (QDQ) quantization: the stable core, on a tiny model in a second.

A QDQ model is written, its inner convolutions really are INT8 (weights stored as int8
behind DequantizeLinear) while the first/last convolutions and the residual Add stay
float, it runs in ONNX Runtime, and it stays close to the FP32 model without being it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from numpy.typing import NDArray
from onnx import numpy_helper
from PIL import Image

from vdsr_deploy import protocol
from vdsr_deploy.errors import BuildError, ConfigError, InvalidInputError
from vdsr_deploy.export.onnx import export_onnx
from vdsr_deploy.export.quantize import QuantizeConfig, calibration_planes, quantize_int8
from vdsr_deploy.model.network import VDSR

ort = pytest.importorskip("onnxruntime")
CONFIG = QuantizeConfig(tiles=6, tile=16, scales=(2, 3))


def photos(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(4)
    paths = []
    for index in range(count):
        coarse = rng.random((10, 12, 3))
        smooth = np.clip(protocol.imresize(coarse, output_shape=(50, 61)), 0, 1)
        path = folder / f"p{index}.png"
        Image.fromarray((smooth * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[NDArray[np.float32]], object]:
    root = tmp_path_factory.mktemp("int8")
    torch.manual_seed(5)
    model = VDSR(depth=5, channels=8).eval()
    fp32 = export_onnx(model, root / "m-fp32.onnx").path
    planes = calibration_planes(photos(root / "calib"), CONFIG)
    result = quantize_int8(fp32, root / "m-int8.onnx", planes, CONFIG)
    return fp32, root / "m-int8.onnx", planes, result


def run(path: Path, plane: NDArray[np.float32]) -> NDArray[np.float32]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    output: NDArray[np.float32] = session.run(None, {name: plane[None, None]})[0][0, 0]
    return output


def test_calibration_planes_are_degraded_tiles_and_deterministic(tmp_path: Path) -> None:
    paths = photos(tmp_path / "calib")
    planes = calibration_planes(paths, CONFIG)
    assert len(planes) == 6 and all(p.shape == (16, 16) and p.dtype == np.float32 for p in planes)
    again = calibration_planes(paths, CONFIG)
    assert all(np.array_equal(a, b) for a, b in zip(planes, again, strict=True))
    other = calibration_planes(paths, QuantizeConfig(tiles=6, tile=16, scales=(2, 3), seed=1))
    assert not all(np.array_equal(a, b) for a, b in zip(planes, other, strict=True))
    # image i is degraded at scales[i % 2]: the first tile lies inside that degraded plane
    from vdsr_deploy.imageio.folders import hr_luma

    degraded = protocol.degrade(protocol.modcrop(hr_luma(paths[0]), 2), 2).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(degraded, (16, 16))
    assert np.any(np.all(windows == planes[0], axis=(2, 3)))


def test_a_qdq_model_with_int8_inner_convolutions(quantized: tuple) -> None:
    _, int8, _, result = quantized
    model = onnx.load(str(int8))
    onnx.checker.check_model(model)
    nodes = list(model.graph.node)
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert len(convs) == 5
    producers = {output: node for node in nodes for output in node.output}
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def weight_dtype(conv: onnx.NodeProto) -> np.dtype:
        source = conv.input[1]
        if source in producers and producers[source].op_type == "DequantizeLinear":
            return initializers[producers[source].input[0]].dtype
        return initializers[source].dtype

    assert [weight_dtype(c) for c in convs] == [np.float32, np.int8, np.int8, np.int8, np.float32]
    inner_inputs = [producers[c.input[0]].op_type for c in convs[1:-1]]
    assert inner_inputs == ["DequantizeLinear"] * 3  # activations quantized too
    add = next(n for n in nodes if n.op_type == "Add")
    assert add.name == "global_residual" and add.input[0] == model.graph.input[0].name
    assert result.quantized_convs == 3
    assert result.float_nodes == (convs[0].name, convs[-1].name, "global_residual")
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["vdsr.precision"] == "int8"
    settings = json.loads(metadata["vdsr.quantization"])
    assert settings["calibration_tiles"] == 6 and settings["format"] == "QDQ"
    assert not list(int8.parent.glob(".*.tmp"))


def test_int8_runs_and_stays_close_to_fp32(quantized: tuple) -> None:
    fp32, int8, _, _ = quantized
    rng = np.random.default_rng(8)
    hr = np.clip(protocol.imresize(rng.random((9, 11)), output_shape=(36, 45)), 0, 1)
    plane = protocol.degrade(protocol.modcrop(hr, 3), 3).astype(np.float32)
    reference, candidate = run(fp32, plane), run(int8, plane)
    assert candidate.shape == reference.shape == plane.shape
    assert np.all(np.isfinite(candidate))
    difference = np.abs(candidate - reference)
    residual = np.abs(reference - plane)  # what the network adds; random weights: large
    assert difference.max() > 0  # really quantized
    # measured: mean error 1.6% of the mean residual, PSNR vs FP32 36.4 dB
    assert difference.mean() < 0.03 * residual.mean()
    assert protocol.psnr(reference, candidate) > 33.0


def test_quantization_errors(quantized: tuple, tmp_path: Path) -> None:
    fp32, int8, planes, _ = quantized
    with pytest.raises(BuildError, match="already exists"):
        quantize_int8(fp32, int8, planes, CONFIG)
    with pytest.raises(BuildError, match="expected an FP32 vdsr-deploy ONNX, got precision int8"):
        quantize_int8(int8, tmp_path / "again.onnx", planes, CONFIG)
    with pytest.raises(InvalidInputError, match="at least one calibration tile"):
        quantize_int8(fp32, tmp_path / "none.onnx", [], CONFIG)
    assert not (tmp_path / "none.onnx").exists()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tiny / "t.png")
    with pytest.raises(InvalidInputError, match="smaller than a 16px tile"):
        calibration_planes([tiny / "t.png"], CONFIG)
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tiny / "exact.png")
    exact = calibration_planes([tiny / "exact.png"], QuantizeConfig(tiles=2, tile=16, scales=(2,)))
    assert [p.shape for p in exact] == [(16, 16)] * 2  # an image of exactly one tile is enough
    with pytest.raises(ConfigError, match="method"):
        QuantizeConfig(method="mse")
    with pytest.raises(ConfigError, match="scales"):
        QuantizeConfig(scales=(1,))


def _weight_dtypes(model: onnx.ModelProto) -> list[np.dtype]:
    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dtypes = []
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        source = conv.input[1]
        if source in producers and producers[source].op_type == "DequantizeLinear":
            source = producers[source].input[0]
        dtypes.append(initializers[source].dtype)
    return dtypes


def test_float_convs_stay_fp32(quantized: tuple, tmp_path: Path) -> None:
    fp32, _, planes, _ = quantized
    config = QuantizeConfig(tiles=6, tile=16, scales=(2, 3), float_convs=(1, 3))
    result = quantize_int8(fp32, tmp_path / "mixed.onnx", planes, config)
    model = onnx.load(str(result.path))
    assert _weight_dtypes(model) == [np.float32, np.float32, np.int8, np.float32, np.float32]
    assert result.quantized_convs == 1 and len(result.float_nodes) == 5
    assert json.loads({p.key: p.value for p in model.metadata_props}["vdsr.quantization"])["float_convs"] == [1, 3]
    plane = planes[0]
    assert np.all(np.isfinite(run(result.path, plane)))
    with pytest.raises(ConfigError, match="expected indices below 5"):
        quantize_int8(fp32, tmp_path / "bad.onnx", planes, QuantizeConfig(float_convs=(5,)))
    with pytest.raises(ConfigError, match="float_convs: expected distinct"):
        QuantizeConfig(float_convs=(2, 2))


def _relu_ranges(path: Path) -> dict[str, float]:
    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        n.input[0]: float(initializers[n.input[1]]) * 255.0
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0].startswith("relu")
    }


def test_guard_share_widens_ranges_between_the_planes_and_the_guard(quantized: tuple, tmp_path: Path) -> None:
    """share 0: the ranges of the planes alone; 1: MinMax over planes and guard; 0.5: the
    geometric middle."""
    from vdsr_deploy.export.quantize import activation_maxima

    fp32, _, planes, _ = quantized
    guard = [np.tile(np.repeat([0.06, 0.92], 2), 8)[None].repeat(16, 0).astype(np.float32)]
    photo = activation_maxima(fp32, planes)
    both = activation_maxima(fp32, [*planes, *guard])
    assert all(both[name] >= value for name, value in photo.items()) and both != photo
    ranges = {}
    for share in (0.0, 0.5, 1.0):
        config = QuantizeConfig(tiles=6, tile=16, scales=(2, 3), guard_share=share)
        path = quantize_int8(fp32, tmp_path / f"g{share}.onnx", planes, config, guard_planes=guard).path
        ranges[share] = _relu_ranges(path)
    assert ranges[0.0] and set(ranges[0.0]) <= set(photo)
    for name, value in ranges[0.0].items():
        assert value == pytest.approx(photo[name], rel=1e-5)
        assert ranges[1.0][name] == pytest.approx(both[name], rel=1e-5)
        assert ranges[0.5][name] == pytest.approx((photo[name] * both[name]) ** 0.5, rel=1e-5)
    config = QuantizeConfig(tiles=6, tile=16, scales=(2, 3), guard_share=0.0, guard_convs=(2,))
    picked = _relu_ranges(quantize_int8(fp32, tmp_path / "picked.onnx", planes, config, guard_planes=guard).path)
    model = onnx.load(str(fp32))
    third = next(n.output[0] for n in model.graph.node if n.op_type == "Relu" and n.input[0] == _conv_outputs(model)[2])
    for name, value in picked.items():
        assert value == pytest.approx(both[name] if name == third else photo[name], rel=1e-5)
    with pytest.raises(ConfigError, match="guard_share"):
        QuantizeConfig(guard_share=1.5)
    with pytest.raises(ConfigError, match="guard_convs: expected indices below 5"):
        quantize_int8(fp32, tmp_path / "bad.onnx", planes, QuantizeConfig(guard_convs=(7,)), guard_planes=guard)


def _conv_outputs(model: onnx.ModelProto) -> list[str]:
    return [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
