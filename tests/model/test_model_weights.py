from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vdsr_deploy.errors import ConfigError, WeightsError
from vdsr_deploy.model.network import VDSR, count_weights, flops_per_pixel, multiply_adds_per_pixel
from vdsr_deploy.model.weights import load_weights, save_weights, training_summary


def test_paper_architecture() -> None:
    model = VDSR()
    convs = [m for m in model.body if isinstance(m, torch.nn.Conv2d)]
    relus = [m for m in model.body if isinstance(m, torch.nn.ReLU)]
    assert len(convs) == 20 and len(relus) == 19
    assert convs[0].in_channels == 1 and convs[-1].out_channels == 1
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert count_weights(model) == 664_704 == multiply_adds_per_pixel()
    assert flops_per_pixel() == 1_329_408
    assert model.receptive_field_radius == 20


def test_global_residual_zero_body_is_identity() -> None:
    model = VDSR(depth=3, channels=4)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(2, 1, 9, 7)
    assert torch.equal(model(x), x)


def test_he_init_std() -> None:
    torch.manual_seed(0)
    model = VDSR()
    weight = model.body[2].weight
    assert weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert torch.count_nonzero(model.body[2].bias) == 0


def test_keyword_only_hyperparameters() -> None:
    with pytest.raises(TypeError):
        VDSR(20, 64)  # type: ignore[misc]
    with pytest.raises(ConfigError, match="depth"):
        VDSR(depth=1)


def test_weights_round_trip(tmp_path: Path, tiny_model: VDSR) -> None:
    path = save_weights(
        tiny_model, tmp_path / "w.safetensors", scales=(2.0, 3.0), training={"recipe": "x"}
    )
    model, info = load_weights(path)
    assert (info.depth, info.channels, info.scales) == (4, 8, (2.0, 3.0))
    assert info.training == {"recipe": "x"}
    x = torch.rand(1, 1, 11, 13)
    assert torch.equal(model(x), tiny_model(x))
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_weights_validation_messages(tmp_path: Path, tiny_model: VDSR) -> None:
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    short = {k: v for k, v in state.items() if not k.startswith("body.6")}
    save_file(
        short, str(tmp_path / "short.safetensors"), metadata={"vdsr": '{"depth": 4, "channels": 8}'}
    )
    with pytest.raises(WeightsError, match="expected 4 conv layers, found 3"):
        load_weights(tmp_path / "short.safetensors")
    wrong = {**state, "body.2.weight": torch.zeros(8, 8, 5, 5)}
    save_file(
        wrong, str(tmp_path / "wrong.safetensors"), metadata={"vdsr": '{"depth": 4, "channels": 8}'}
    )
    with pytest.raises(
        WeightsError, match=r"body.2.weight expected shape \(8, 8, 3, 3\), got \(8, 8, 5, 5\)"
    ):
        load_weights(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")


def test_training_summary_follows_the_fine_tuning_chain() -> None:
    stage_one = {"recipe": "fast", "iterations": 3000, "wall_seconds": 7200.0, "initialised_from": None}
    training = {
        "recipe": {"name": "ft_l1", "batch_size": 32},
        "iterations": 3300,
        "wall_seconds": 7560.0,
        "initialised_from": stage_one,
    }
    assert training_summary(training) == "fast 3,000 it -> ft_l1 3,300 it (batch 32; 4.1 h wall)"
    assert training_summary({"recipe": {"name": "fast"}, "iterations": 5}) == "fast 5 it"
    assert training_summary({}) == "no training record"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", ["body.0.weight", "body.0.bias", "body.6.weight", "body.6.bias"])
def test_non_finite_weights_are_refused_on_load(tmp_path: Path, tiny_model: VDSR, name: str, value: float) -> None:
    """Issue 27 (kind 3): the finiteness check was only ever given finite weights. One
    non-finite value in any tensor (first or last layer, weight or bias) is refused with the
    tensor's name; the same file with that value finite loads."""
    state = {k: v.clone().contiguous() for k, v in tiny_model.state_dict().items()}
    meta = {"vdsr": '{"depth": 4, "channels": 8}'}
    save_file(state, str(tmp_path / "finite.safetensors"), metadata=meta)
    load_weights(tmp_path / "finite.safetensors")
    state[name].view(-1)[state[name].numel() // 2] = value
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(WeightsError, match=rf"bad\.safetensors: {name} contains NaN or Inf"):
        load_weights(tmp_path / "bad.safetensors")


def test_non_finite_weights_are_one_line_from_the_cli(tmp_path: Path, tiny_model: VDSR) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from vdsr_deploy.cli import app

    state = {k: v.clone().contiguous() for k, v in tiny_model.state_dict().items()}
    state["body.2.weight"][0, 0, 1, 1] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"), metadata={"vdsr": '{"depth": 4, "channels": 8}'})
    Image.new("L", (13, 11)).save(tmp_path / "a.png")
    for backend in ("torch", "onnxruntime"):
        result = CliRunner().invoke(
            app,
            ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / backend), "-w", str(tmp_path / "nan.safetensors"),
             "-b", backend, "--engines-dir", str(tmp_path / "e"), "--quiet"],
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        assert "body.2.weight contains NaN or Inf" in result.output and "Traceback" not in result.output
        assert not (tmp_path / backend / "a.png").exists()


def test_read_channels_reads_the_header_like_load_weights(tiny_weights: Path) -> None:
    """``--tile auto`` sizes activations by the width on every run: read from the header
    (no torch import), equal to what loading the weights says."""
    from vdsr_deploy.model.weights import load_weights, read_channels

    assert read_channels(tiny_weights) == load_weights(tiny_weights)[1].channels == 8
    assert read_channels(None) == load_weights(None)[1].channels == 64
