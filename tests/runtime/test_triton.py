"""`vdsr export --triton`: a model repository whose configs pass Triton's own schema.

No Triton server runs here; configs are parsed with tritonclient's model_config_pb2 (the
schema the server loads) plus the load-time rules checked by ``validate_config``. The
TensorRT model is written from an engine sidecar with two optimisation profiles (the plan
file's bytes are a stand-in: no TensorRT here to build one, and nothing here loads it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vdsr_deploy.backends.tensorrt.sidecar import EngineSidecar, write_sidecar
from vdsr_deploy.io_names import profile_for_tiles
from vdsr_deploy.planes.tiling import TileConfig

pytest.importorskip("tritonclient.grpc.model_config_pb2")

from vdsr_deploy.runtime.triton import (
    TritonConfigError,
    check_repository,
    export_triton,
    validate_config,
)

TILING = TileConfig(tile=64, halo=20)


def fake_engine(folder: Path, batch: int = 4, contexts: int = 2) -> Path:
    engine = folder / "vdsr_fp16.engine"
    engine.write_bytes(b"stand-in plan")
    profile = profile_for_tiles(TILING, batch)
    sidecar = EngineSidecar(
        engine_file=engine.name,
        engine_sha256="0" * 64,
        engine_bytes=13,
        onnx_file="vdsr_fp16.onnx",
        onnx_sha256="1" * 64,
        weights_sha256=None,
        precision="fp16",
        profiles=(profile,) * contexts,
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA H100",
        compute_capability=(9, 0),
        workspace_bytes=1 << 30,
        optimization_level=3,
        tf32=True,
        build_seconds=1.0,
        layers=22,
        fp16_layers=20,
    )
    write_sidecar(engine.with_suffix(".json"), sidecar)
    return engine


@pytest.fixture
def repository(tmp_path: Path, tiny_weights: Path) -> Path:
    export_triton(
        tmp_path / "repo",
        weights=tiny_weights,
        tiling=TILING,
        batch=4,
        engines_dir=tmp_path / "engines",
        engine=fake_engine(tmp_path),
    )
    return tmp_path / "repo"


def test_repository_layout_and_configs_pass_the_schema(repository: Path) -> None:
    assert check_repository(repository) == ["vdsr_onnx", "vdsr_trt"]
    assert (repository / "vdsr_onnx" / "1" / "model.onnx").stat().st_size > 1000
    assert (repository / "vdsr_trt" / "1" / "model.plan").read_bytes() == b"stand-in plan"
    text = (repository / "vdsr_trt" / "config.pbtxt").read_text()
    config = validate_config(text, folder="vdsr_trt", profiles=2)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4  # the profile's max
    assert [list(t.dims) for t in (*config.input, *config.output)] == [[1, -1, -1], [1, -1, -1]]
    assert [list(g.profile) for g in config.instance_group] == [["0"], ["1"]]  # one per profile
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    onnx = validate_config((repository / "vdsr_onnx" / "config.pbtxt").read_text(), folder="vdsr_onnx")
    assert onnx.platform == "onnxruntime_onnx" and onnx.instance_group[0].count == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (("max_batch_size: 4", "max_batch_sizes: 4"), "not a Triton model config"),  # unknown field
        (("TYPE_FP32", "TYPE_FLOAT32"), "not a Triton model config"),  # unknown enum value
        (("dims: [ 1, -1, -1 ] } ]\noutput", "dims: [ 1, 0, -1 ] } ]\noutput"), "dims [1, 0, -1]"),
        (('name: "vdsr_trt"', 'name: "vdsr"'), "differs from its folder"),
        (('profile: [ "1" ]', 'profile: [ "2" ]'), "the engine has 2 profile"),
        (("KIND_GPU", "KIND_CPU"), "on the GPU"),
        (('name: "input"', 'name: "images"'), "expected ['input']"),
        (("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 8 ]"), "preferred_batch_size"),
    ],
)
def test_a_broken_config_fails_validation(repository: Path, change: tuple[str, str], message: str) -> None:
    text = (repository / "vdsr_trt" / "config.pbtxt").read_text()
    assert change[0] in text
    with pytest.raises(TritonConfigError, match=re.escape(message)):
        validate_config(text.replace(change[0], change[1], 1), folder="vdsr_trt", profiles=2)


def test_a_repository_with_a_broken_config_or_missing_model_fails(repository: Path) -> None:
    config = repository / "vdsr_onnx" / "config.pbtxt"
    config.write_text(config.read_text().replace("dynamic_batching", "dynamic_batchin"))
    with pytest.raises(TritonConfigError, match=r"vdsr_onnx/config\.pbtxt: not a Triton model config"):
        check_repository(repository)
    config.write_text(config.read_text().replace("dynamic_batchin", "dynamic_batching"))
    (repository / "vdsr_trt" / "1" / "model.plan").unlink()
    with pytest.raises(TritonConfigError, match=r"model\.plan is missing"):
        check_repository(repository)


def test_cli_export_triton_without_tensorrt(tmp_path: Path, tiny_weights: Path) -> None:
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    args = ["export", "--triton", str(tmp_path / "repo"), "--weights", str(tiny_weights)]
    args += ["--engines-dir", str(tmp_path / "engines"), "--batch", "8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "vdsr_trt left out" in result.output
    assert check_repository(tmp_path / "repo") == ["vdsr_onnx"]
    again = CliRunner().invoke(app, args)  # an existing model folder is never replaced silently
    assert again.exit_code == 1 and "already exists (use --overwrite" in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
