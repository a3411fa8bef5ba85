from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from vdsr_deploy.errors import BuildError
from vdsr_deploy.export.onnx import export_onnx
from vdsr_deploy.io_names import INPUT_NAME, OUTPUT_NAME
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.onnx_metadata import read_metadata
from vdsr_deploy.model.weights import load_weights


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_round_trip(tmp_path: Path, tiny_weights: Path, precision: str) -> None:
    model, info = load_weights(tiny_weights)
    result = export_onnx(model, tmp_path / f"m-{precision}.onnx", precision=precision, info=info)
    onnx.checker.check_model(str(result.path), full_check=True)
    meta = read_metadata(result.path)
    assert meta["vdsr.weights_sha256"] == info.sha256
    assert meta["vdsr.precision"] == precision
    loaded = onnx.load(str(result.path))
    graph_input = loaded.graph.input[0].type.tensor_type
    assert graph_input.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in graph_input.shape.dim] == [
        "batch",
        1,
        "height",
        "width",
    ]
    conv_weight_types = {i.data_type for i in loaded.graph.initializer}
    expected = onnx.TensorProto.FLOAT16 if precision == "fp16" else onnx.TensorProto.FLOAT
    assert conv_weight_types == {expected}
    add = [n for n in loaded.graph.node if n.op_type == "Add"]
    assert len(add) == 1 and add[0].output[0] == OUTPUT_NAME and INPUT_NAME in add[0].input
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for shape in [(2, 1, 23, 17), (1, 1, 5, 41), (3, 1, 1, 1)]:
        batch = np.random.default_rng(0).random(shape, dtype=np.float32)
        (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        with torch.inference_mode():
            reference = model(torch.from_numpy(batch)).numpy()
        tolerance = 1e-4 if precision == "fp32" else 2e-2
        assert np.max(np.abs(out - reference)) <= tolerance
    assert result.max_abs_diff <= (1e-4 if precision == "fp32" else 2e-2)


def test_export_over_an_identical_file_is_success_a_different_one_is_refused(
    tmp_path: Path, tiny_model: VDSR
) -> None:
    path = tmp_path / "m.onnx"
    first = export_onnx(tiny_model, path)
    assert not first.already_in_place
    stamp = path.stat().st_mtime_ns
    again = export_onnx(tiny_model, path)  # what `vdsr export` meets after `vdsr upscale` cached it
    assert again.already_in_place and path.stat().st_mtime_ns == stamp
    torch.manual_seed(1)
    other = VDSR(depth=tiny_model.depth, channels=tiny_model.channels).eval()
    with pytest.raises(BuildError, match="already exists and differs"):
        export_onnx(other, path)
    assert path.read_bytes() == export_onnx(tiny_model, tmp_path / "copy.onnx").path.read_bytes()
    replaced = export_onnx(other, path, overwrite=True)
    assert not replaced.already_in_place and path.read_bytes() != (tmp_path / "copy.onnx").read_bytes()


def test_export_refuses_bad_precision(tmp_path: Path, tiny_model: VDSR) -> None:
    with pytest.raises(Exception, match="precision"):
        export_onnx(tiny_model, tmp_path / "x.onnx", precision="int4")


def test_export_verification_catches_a_wrong_graph(
    tmp_path: Path, tiny_model: VDSR, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vdsr_deploy.export.onnx as export_module

    real_build = export_module.build_graph

    def broken(model: VDSR, precision: str, metadata: dict[str, str]) -> onnx.ModelProto:
        perturbed = VDSR(depth=model.depth, channels=model.channels)
        perturbed.load_state_dict(model.state_dict())
        with torch.no_grad():
            perturbed.body[0].bias += 0.5
        return real_build(perturbed, precision, metadata)

    monkeypatch.setattr(export_module, "build_graph", broken)
    with pytest.raises(BuildError, match="differs from PyTorch"):
        export_onnx(tiny_model, tmp_path / "broken.onnx")
    assert not (tmp_path / "broken.onnx").exists()


def test_onnx_does_not_depend_on_the_torch_version(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vdsr_deploy.fileops import file_sha256

    model, info = load_weights(tiny_weights)
    first = export_onnx(model, tmp_path / "a.onnx", info=info).path
    monkeypatch.setattr(torch, "__version__", "0.0.1-other")
    second = export_onnx(model, tmp_path / "b.onnx", info=info).path
    assert file_sha256(first) == file_sha256(second)
    assert "torch" not in read_metadata(first)["vdsr.versions"]


def test_ensure_onnx_re_exports_an_older_exporters_file(tmp_path: Path, tiny_weights: Path) -> None:
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.onnx_metadata import EXPORTER_VERSION, MetadataKey

    model, info = load_weights(tiny_weights)
    path = ensure_onnx(model, info, "fp32", tmp_path / "engines")
    assert read_metadata(path)[MetadataKey.EXPORTER] == str(EXPORTER_VERSION)
    stamp = path.stat().st_mtime_ns
    assert ensure_onnx(model, info, "fp32", tmp_path / "engines") == path
    assert path.stat().st_mtime_ns == stamp  # current: reused as it is
    old = onnx.load(str(path))
    for entry in old.metadata_props:
        if entry.key == MetadataKey.EXPORTER:
            entry.value = str(EXPORTER_VERSION - 1)
    onnx.save(old, str(path))
    assert ensure_onnx(model, info, "fp32", tmp_path / "engines") == path
    assert read_metadata(path)[MetadataKey.EXPORTER] == str(EXPORTER_VERSION)
    left = [p.name for p in path.parent.iterdir() if not p.name.endswith(".meta.json")]  # + metadata sidecar
    assert left == [path.name]  # no temporary left


@pytest.mark.parametrize("where", ["first shape", "second shape"])
def test_export_refuses_an_fp16_graph_that_overflows_to_nan(
    tmp_path: Path, tiny_model: VDSR, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A first conv scaled by 1e5 overflows float16 (Inf, then NaN); the export must be
    refused as non-finite, not recorded as verified with max_abs_diff 0.0 (issue 27: Python's
    max(0.0, nan) is 0.0, which hid the NaN). Either verification shape may be the bad one."""
    import vdsr_deploy.export.onnx as export_module

    with torch.no_grad():
        tiny_model.body[0].weight.mul_(1e5)
    if where == "second shape":  # the first shape verifies cleanly, the second is NaN
        monkeypatch.setattr(export_module, "VERIFY_SHAPES", ((1, 1, 9, 7), (1, 1, 11, 13)))
        real_run = onnxruntime.InferenceSession.run
        calls: list[int] = []

        def run_then_nan(self: onnxruntime.InferenceSession, *args: object, **kwargs: object) -> object:
            (out,) = real_run(self, *args, **kwargs)
            calls.append(1)
            if len(calls) == 2:
                out = np.full_like(out, np.nan)
            else:
                feed = args[1]
                assert isinstance(feed, dict)
                with torch.inference_mode():
                    out = tiny_model(torch.from_numpy(feed[INPUT_NAME])).numpy()
            return [out]

        monkeypatch.setattr(onnxruntime.InferenceSession, "run", run_then_nan)
    with pytest.raises(BuildError, match="not finite"):
        export_onnx(tiny_model, tmp_path / "overflow.onnx", precision="fp16")
    assert not (tmp_path / "overflow.onnx").exists()


def test_export_refuses_weights_whose_pytorch_output_is_not_finite(tmp_path: Path, tiny_model: VDSR) -> None:
    with torch.no_grad():
        tiny_model.body[0].bias.fill_(float("inf"))
    with pytest.raises(BuildError, match="not finite"):
        export_onnx(tiny_model, tmp_path / "inf.onnx", precision="fp32")
