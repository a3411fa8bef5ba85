"""The model files a run is given: identity for resume (the same from Python as from the CLI)
and receptive radius (from the weights, or from an ONNX file's metadata)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.cli import app
from vdsr_deploy.errors import VdsrError
from vdsr_deploy.job import JobConfig, run_job
from vdsr_deploy.model.identity import model_identity, receptive_radius
from vdsr_deploy.model.onnx_metadata import MetadataKey
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime.prepare import open_runner


def test_identity_names_each_given_file_by_name_size_and_mtime(tmp_path: Path, tiny_weights: Path) -> None:
    size = tiny_weights.stat().st_size
    assert model_identity(tiny_weights) == f"tiny.safetensors:{size}:{tiny_weights.stat().st_mtime_ns}"
    both = model_identity(tiny_weights, tmp_path / "gone.onnx")
    assert both.startswith("tiny.safetensors:") and both.endswith("|gone.onnx:missing")
    assert model_identity(None).startswith("vdsr_default.safetensors:")  # the shipped weights
    spec = RunnerSpec(backend="onnxruntime", weights=tiny_weights, onnx=tmp_path / "gone.onnx")
    assert spec.model_identity() == both


def test_receptive_radius_from_weights_or_onnx_metadata(tmp_path: Path, tiny_weights: Path) -> None:
    assert receptive_radius(tiny_weights) == 4  # the tiny model: 4 conv layers
    assert receptive_radius(None) == 20  # the shipped weights
    model = helper.make_model(helper.make_graph([], "empty", [], []))
    helper.set_model_props(model, {MetadataKey.DEPTH: "7"})
    path = tmp_path / "seven.onnx"
    onnx.save(model, str(path))
    assert receptive_radius(None, path) == 7
    assert receptive_radius(tiny_weights, path) == 4  # weights given: they decide
    with pytest.raises(VdsrError, match="ONNX file not found"):
        receptive_radius(None, tmp_path / "nope.onnx")


def test_run_job_from_python_resumes_by_the_same_model_identity_as_the_cli(
    tmp_path: Path, tiny_weights: Path
) -> None:
    """A Python caller that names no model in its JobConfig gets the identity of the files
    its runner was opened from: outputs the CLI made with the same weights are complete,
    outputs made with other weights are not mistaken for this model's (they were, with the
    empty identity API callers used to get)."""
    source = tmp_path / "a.png"
    Image.fromarray((np.random.default_rng(3).random((23, 19, 3)) * 255).astype(np.uint8)).save(source)
    out = tmp_path / "out"
    cli = ["upscale", str(source), "-o", str(out), "-w", str(tiny_weights), "--backend", "torch"]
    cli += ["--device", "cpu", "--precision", "fp32", "--tile", "0", "-q"]
    result = CliRunner().invoke(app, cli)
    assert result.exit_code == 0, result.output

    config = JobConfig(inputs=(str(source),), output=out, pipeline=PipelineConfig(scale=2.0, tiling=TileConfig(0)))

    def run_with(weights: Path) -> list[str]:
        spec = RunnerSpec(backend="torch", device="cpu", precision="fp32", weights=weights)
        with open_runner(spec, tiling=config.pipeline.tiling, batch=1) as runner:
            assert runner.model_identity == model_identity(weights)
            summary = run_job(config, runner)
        assert not summary.done and not summary.failed
        return [skipped.reason for skipped in summary.skipped]

    assert run_with(tiny_weights) == ["complete (matches the manifest)"]
    other = tmp_path / "other.safetensors"
    shutil.copyfile(tiny_weights, other)
    assert run_with(other) == ["made with other settings (use --overwrite to replace it)"]
