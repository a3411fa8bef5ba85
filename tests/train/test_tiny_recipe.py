"""The ``tiny`` recipe (issue 26): a demo of the whole training machinery in about 2
CPU-minutes: loop, validation, checkpoints, --resume and the final table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from train.config import builtin_recipes, load_config
from vdsr_deploy.cli import app
from vdsr_deploy.model.weights import load_weights


def test_tiny_is_a_builtin_recipe_that_validates_and_checkpoints_within_its_run() -> None:
    assert "tiny" in builtin_recipes()
    recipe = load_config("tiny")
    assert recipe.name == "tiny" and recipe.scales == (2, 3, 4)
    assert (recipe.depth, recipe.channels) == (8, 32)  # small: the demo shows machinery, not quality
    # at least two validations and several checkpoints happen before the end
    assert recipe.iterations // recipe.validate_every >= 2 and recipe.iterations // recipe.checkpoint_every >= 3
    assert recipe.precision == "fp32"  # bf16 is emulated (slow) on most CPUs


def test_tiny_runs_stops_resumes_and_ends_with_its_table(tmp_path: Path) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray((rng.random((50, 46, 3)) * 255).astype(np.uint8)).save(hr / f"{name}.png")
    run = tmp_path / "run"
    common = ["--out", str(run), "--device", "cpu"]
    result = CliRunner().invoke(app, ["train", "-c", "tiny", "--data", str(hr), "--val", str(hr), *common,
                                      "--iterations", "3"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training finished" in result.output and "3 of 3" in result.output
    result = CliRunner().invoke(app, ["train", "--resume", *common, "--iterations", "5"])
    assert result.exit_code == 0, result.output
    assert "resuming at iteration 3 of 5" in result.output and re.search(r"5 of 5", result.output)
    assert "best validation PSNR" in result.output
    _, info = load_weights(run / "final.safetensors")
    assert info.training["recipe"]["name"] == "tiny" and info.training["iterations"] == 5
