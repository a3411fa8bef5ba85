"""Recipe options for the next GPU stage: EMA of the weights, patch size, x2/x3/x4 mix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from train.config import TrainConfig, load_config
from train.data import PatchSampler, TrainingPair, find_images, prepare_pairs
from train.ema import WeightAverage
from train.loop import train
from vdsr_deploy.errors import ConfigError, TrainingError
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import load_weights


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (h, w) in enumerate(sizes):
        base = rng.random((h // 4 + 1, w // 4 + 1, 3))
        smooth = np.kron(base, np.ones((4, 4, 1)))[:h, :w]
        Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / f"img{index}.png")


def tiny_config(**changes: object) -> TrainConfig:
    base = TrainConfig(
        name="tiny", depth=3, channels=4, patch_size=15, batch_size=4, optimizer="adam", lr=1e-3,
        weight_decay=0.0, clip="none", loss="l1", precision="fp32", seed=3,
    )  # fmt: skip
    return base.replace(**changes)


def set_parameters(model: VDSR, value: float) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(value)


@pytest.mark.parametrize("decay", [0.5, 0.75])
def test_ema_math_is_exact(decay: float) -> None:
    # dyadic weights and decays: every product and sum is exact in float32, so the average
    # must equal the recurrence d * a + (1 - d) * w bit for bit
    model = VDSR(depth=2, channels=2)
    set_parameters(model, 1.0)
    ema = WeightAverage(model, decay)
    expected = 1.0
    for value in (2.0, -4.0, 0.5, 8.0, 0.0):
        set_parameters(model, value)
        ema.update(model)
        expected = decay * expected + (1 - decay) * value
        for parameter in ema.model.parameters():
            assert torch.all(parameter == expected)
    # the model itself is untouched and the average needs no gradient
    assert all(torch.all(p == 0.0) for p in model.parameters())
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_closed_form_at_a_typical_decay() -> None:
    torch.manual_seed(0)
    model = VDSR(depth=2, channels=3)
    start = [p.detach().clone().double() for p in model.parameters()]
    ema = WeightAverage(model, 0.9)
    history = []
    for _ in range(25):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        history.append([p.detach().clone().double() for p in model.parameters()])
        ema.update(model)
    n = len(history)
    for index, parameter in enumerate(ema.model.parameters()):
        closed = 0.9**n * start[index] + sum(
            0.1 * 0.9 ** (n - 1 - k) * history[k][index] for k in range(n)
        )
        assert torch.allclose(parameter.double(), closed, atol=1e-5)
    with pytest.raises(TrainingError, match="decay"):
        WeightAverage(model, 1.0)


def test_recipe_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scale_mix"):
        TrainConfig(scales=(2, 3, 4), scale_mix=(1.0, 1.0))
    with pytest.raises(ConfigError, match="scale_mix"):
        TrainConfig(scales=(2, 3), scale_mix=(1.0, 0.0))
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    (tmp_path / "r.toml").write_text('name = "r"\nscale_mix = [2, 1, 1]\nema_decay = 0.999\npatch_size = 64\n')
    config = load_config(tmp_path / "r.toml")
    assert (config.scale_mix, config.ema_decay, config.patch_size) == ((2.0, 1.0, 1.0), 0.999, 64)


def test_patch_size_is_respected(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(70, 75), (50, 90), (40, 40)])
    pairs = prepare_pairs(find_images([tmp_path / "hr"]), [2, 3], patch_size=48)
    assert {p.name for p in pairs} == {"img0", "img1"}  # 40x40 is smaller than a patch
    inputs, targets = PatchSampler(pairs, patch_size=48, seed=0).batch(0, 5)
    assert inputs.shape == targets.shape == (5, 1, 48, 48)
    result = train(
        tiny_config(patch_size=48, iterations=2, log_every=1),
        data_dirs=[tmp_path / "hr"],
        out_dir=tmp_path / "run",
    )
    assert result.final_weights is not None
    _, info = load_weights(result.final_weights)
    assert info.training["recipe"]["patch_size"] == 48


def _pairs(scales: list[int], sizes: list[int]) -> list[TrainingPair]:
    pairs = []
    for scale in scales:
        for size in sizes:
            plane = np.zeros((size, size), dtype=np.float32)
            pairs.append(TrainingPair(f"{size}", scale, plane, plane))
    return pairs


def test_scale_mix_sets_the_share_of_each_scale() -> None:
    pairs = _pairs([2, 3, 4], [20, 40])
    plain = PatchSampler(pairs, patch_size=8, seed=0)
    areas = np.array([p.target.size for p in pairs], dtype=np.float64)
    assert np.array_equal(plain.weights, areas / areas.sum())  # default unchanged
    mixed = PatchSampler(pairs, patch_size=8, seed=0, scale_mix={2: 2.0, 3: 1.0, 4: 1.0})
    share = {s: mixed.weights[[p.scale == s for p in pairs]].sum() for s in (2, 3, 4)}
    assert share == pytest.approx({2: 0.5, 3: 0.25, 4: 0.25})
    # within a scale, pixels stay equally likely: the 40x40 image is drawn 4x as often
    assert mixed.weights[1] == pytest.approx(4 * mixed.weights[0])
    with pytest.raises(TrainingError, match="no weight for scale"):
        PatchSampler(pairs, patch_size=8, seed=0, scale_mix={2: 1.0, 3: 1.0})


def test_scale_mix_reaches_the_batches(tmp_path: Path) -> None:
    pairs = _pairs([2, 3], [30])
    for index, pair in enumerate(pairs):  # tell the scales apart by value
        pair.network_input[:] = index
    sampler = PatchSampler(pairs, patch_size=8, seed=1, augment=False, scale_mix={2: 3.0, 3: 1.0})
    inputs, _ = sampler.batch(0, 4000)
    assert float(np.mean(inputs[:, 0, 0, 0] == 0)) == pytest.approx(0.75, abs=0.03)


def test_training_with_ema_validates_both_and_keeps_the_better(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(48, 52), (57, 45)])
    write_images(tmp_path / "val", [(36, 36)])
    config = tiny_config(iterations=8, ema_decay=0.5, validate_every=4, checkpoint_every=2, log_every=4)
    common = {"data_dirs": [tmp_path / "hr"], "val_dir": tmp_path / "val"}
    whole = train(config, out_dir=tmp_path / "whole", **common)  # type: ignore[arg-type]
    entries = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    validations = [e for e in entries if e["event"] == "validate"]
    assert [e["step"] for e in validations] == [4, 8]
    assert all({"ema_x2", "ema_x3", "ema_x4", "ema_mean"} <= set(e) for e in validations)
    last = validations[-1]
    assert whole.final_weights is not None
    final, final_info = load_weights(whole.final_weights)
    ema_weights, _ = load_weights(tmp_path / "whole" / "ema.safetensors")
    chosen = "ema" if last["ema_mean"] > last["mean"] else "weights"
    assert final_info.evaluation["final_weights"] == chosen
    if chosen == "ema":
        assert all(torch.equal(a, b) for a, b in zip(final.parameters(), ema_weights.parameters(), strict=True))
    # the checkpoint holds the average, and a resumed run continues it exactly
    with safe_open(str(tmp_path / "whole" / "last.safetensors"), framework="pt") as handle:
        assert any(name.startswith("ema.") for name in handle.keys())  # noqa: SIM118
    train(config.replace(iterations=4), out_dir=tmp_path / "split", **common)  # type: ignore[arg-type]
    train(config, out_dir=tmp_path / "split", resume=True, **common)  # type: ignore[arg-type]
    resumed, _ = load_weights(tmp_path / "split" / "ema.safetensors")
    for a, b in zip(resumed.parameters(), ema_weights.parameters(), strict=True):
        assert torch.equal(a, b)
