"""One scale rule (issue 21): every command and config refuses a factor of 1 or 0 with the
same sentence, from :func:`vdsr_deploy.protocol.check_scale`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import handled_error, make_image, write_tiny_recipe
from train.config import TrainConfig
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.export.quantize import QuantizeConfig
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.protocol import check_scale

REFUSED = ("1", "0")


def refusal(value: str) -> str:
    return f"scale: expected a factor > 1, got {value}"


@pytest.mark.parametrize("value", REFUSED)
def test_every_command_refuses_the_same_way(tmp_path: Path, tiny_weights: Path, value: str) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    make_image(hr / "a.png", "RGB", (53, 49))
    weights = ["-w", str(tiny_weights)]
    cpu = ["--device", "cpu", "--engines-dir", str(tmp_path / "eng")]
    commands = {
        "upscale": ["upscale", str(hr), "-o", str(tmp_path / "o"), "-s", value, *weights, *cpu, "-b", "torch"],
        "validate": ["validate", str(hr), "-s", value, *weights, *cpu],
        "validate --hr": ["validate", "--hr", str(hr), "-s", value, *weights, *cpu],
        "bench": ["bench", "-s", value, *weights, *cpu, "-b", "torch"],
        "eval": ["eval", str(hr), "-s", value, *weights, *cpu],
    }
    for name, args in commands.items():
        assert handled_error(*args, code=2) == f"error: {refusal(value)}", name  # a usage error
    recipe = write_tiny_recipe(tmp_path / "tiny.toml", scales=f"[{value}]", iterations=1)
    line = handled_error("train", "-c", str(recipe), "--data", str(hr), "--out", str(tmp_path / "run"), code=2)
    assert line == f"error: training config 'tiny': {refusal(value)}"
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", [1, 0, 1.0, 0.0])
def test_configs_refuse_the_same_way(value: float) -> None:
    text = refusal(str(int(value)))
    for make in (lambda: check_scale(value), lambda: check_scale(value, integer=True),
                 lambda: PipelineConfig(scale=value)):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            make()
        assert str(caught.value) == text
    with pytest.raises(ConfigError) as caught:
        TrainConfig(scales=(int(value),))
    assert str(caught.value).endswith(text)
    with pytest.raises(ConfigError) as caught:
        QuantizeConfig(scales=(int(value),))
    assert str(caught.value) == "scales" + text[len("scale") :]


def test_integer_rule_and_accepted_factors() -> None:
    assert check_scale(2.5) == 2.5 and check_scale(3, integer=True) == 3.0
    for bad in (float("nan"), float("inf"), -2.0):
        with pytest.raises(ConfigError, match="expected a factor > 1"):
            check_scale(bad)
    with pytest.raises(ConfigError, match=r"scale: expected an integer factor .*, got 2\.5"):
        check_scale(2.5, integer=True)
