from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from train.batches import batch_stream
from train.budget import StepTimes, iterations_for_budget, measure_step_times
from train.config import TrainConfig, load_config
from train.data import PatchSampler, dihedral, find_images, prepare_pairs
from train.loop import train
from train.step import make_optimizer, training_step
from vdsr_deploy import protocol
from vdsr_deploy.errors import ConfigError, TrainingError
from vdsr_deploy.model.weights import load_weights


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    (tmp_path / "bad.toml").write_text('name = "x"\nlearning_rate = 0.1\n')
    with pytest.raises(ConfigError, match="unknown training setting"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="no such config"):
        load_config("nonexistent-recipe")


def test_degradation_equals_matlab_oracle(shared_data: Path) -> None:
    data = np.load(shared_data / "oracles" / "matlab" / "butterfly_x3.npz")
    hr_y = data["hr_y"] / 255.0
    assert np.max(np.abs(protocol.degrade(hr_y, 3) * 255.0 - data["bicubic_y"])) <= 1e-9


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (h, w) in enumerate(sizes):
        base = rng.random((h // 4 + 1, w // 4 + 1, 3))
        smooth = np.kron(base, np.ones((4, 4, 1)))[:h, :w]
        Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / f"img{index}.png")


def tiny_config(**changes: object) -> TrainConfig:
    """A 3-layer, 4-channel Adam recipe on 15x15 patches for fast CPU tests."""
    base = TrainConfig(
        name="tiny", depth=3, channels=4, patch_size=15, batch_size=4, optimizer="adam", lr=1e-3,
        weight_decay=0.0, clip="none", loss="l1", precision="fp32",
    )  # fmt: skip
    return base.replace(**changes)


def test_pairs_and_sampler(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(45, 53), (61, 47), (20, 20)])
    pairs = prepare_pairs(find_images([tmp_path / "hr"]), [2, 3], patch_size=21)
    assert len(pairs) == 4  # the 20x20 image is smaller than a patch
    for pair in pairs:
        assert pair.target.shape == pair.network_input.shape
        assert pair.target.shape[0] % pair.scale == 0
        expected = protocol.degrade(pair.target.astype(np.float64), pair.scale)
        assert np.max(np.abs(pair.network_input - expected)) < 1e-6
    sampler = PatchSampler(pairs, patch_size=21, seed=5)
    a_in, a_out = sampler.batch(3, 8)
    b_in, _ = sampler.batch(3, 8)
    c_in, _ = sampler.batch(4, 8)
    assert a_in.shape == a_out.shape == (8, 1, 21, 21)
    assert np.array_equal(a_in, b_in) and not np.array_equal(a_in, c_in)
    square = np.arange(9.0).reshape(3, 3).astype(np.float32)
    assert len({dihedral(square, k).tobytes() for k in range(8)}) == 8


def test_data_errors(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="does not exist"):
        find_images([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no images found"):
        find_images([tmp_path / "empty"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"junk")
    with pytest.raises(TrainingError, match=r"x\.png"):
        prepare_pairs(find_images([tmp_path / "broken"]), [2], 11)


def test_tiny_training_reduces_loss_and_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(48, 52), (57, 45)])
    write_images(tmp_path / "val", [(36, 36)])
    config = TrainConfig(
        name="tiny",
        depth=4,
        channels=8,
        patch_size=17,
        batch_size=8,
        optimizer="adam",
        lr=2e-3,
        weight_decay=0.0,
        schedule="cosine",
        clip="none",
        loss="mean",
        iterations=60,
        precision="fp32",
        log_every=10,
        validate_every=30,
        checkpoint_every=20,
        seed=1,
    )
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "run", resume=True)
    half = config.replace(iterations=30)
    first = train(
        half, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "run", val_dir=tmp_path / "val"
    )
    assert first.iterations_done == 30 and not first.interrupted
    with pytest.raises(TrainingError, match="exists: pass --resume"):
        train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "run")
    result = train(
        config,
        data_dirs=[tmp_path / "hr"],
        out_dir=tmp_path / "run",
        val_dir=tmp_path / "val",
        resume=True,
    )
    assert result.iterations_done == 60
    entries = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    losses = [e["loss"] for e in entries if e["event"] == "train"]
    assert losses[-1] < losses[0]
    assert any(e["event"] == "validate" for e in entries)
    assert result.final_weights is not None
    _, info = load_weights(result.final_weights)
    assert info.training["recipe"]["name"] == "tiny" and info.training["iterations"] == 60


def test_resumed_training_equals_uninterrupted_bit_for_bit(tmp_path: Path) -> None:
    """60 iterations stopped at 30 and resumed give exactly the weights of 60 in one go:
    the checkpoint restores the weights, Adam's moments and step, and the data position."""
    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(40, 43), (37, 45)])
    config = tiny_config(loss="mean", schedule="cosine", iterations=60, log_every=10, seed=6)
    data = [tmp_path / "hr"]
    whole = train(config, data_dirs=data, out_dir=tmp_path / "whole", device="cpu")

    def stop_at_30(event: dict[str, object]) -> None:
        if event.get("event") == "train" and event.get("step") == 30:
            raise KeyboardInterrupt  # what Ctrl-C does, at a fixed iteration

    first = train(config, data_dirs=data, out_dir=tmp_path / "split", device="cpu", on_event=stop_at_30)
    assert first.interrupted and first.iterations_done == 30 and first.final_weights is None
    second = train(config, data_dirs=data, out_dir=tmp_path / "split", device="cpu", resume=True)
    assert second.iterations_done == 60 and not second.interrupted
    assert whole.final_weights is not None and second.final_weights is not None
    a, _ = load_weights(whole.final_weights)
    b, _ = load_weights(second.final_weights)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    losses = {
        name: [json.loads(line)["loss"] for line in (tmp_path / name / "log.jsonl").read_text().splitlines()
               if json.loads(line)["event"] == "train"]
        for name in ("whole", "split")
    }  # fmt: skip
    assert losses["split"] == losses["whole"]


def test_fine_tune_from_weights_records_the_source(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(40, 43)])
    config = tiny_config(loss="mean", iterations=4, seed=2)
    source = train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "first")
    assert source.final_weights is not None
    with pytest.raises(TrainingError, match="cannot be combined with --resume"):
        train(
            config,
            data_dirs=[tmp_path / "hr"],
            out_dir=tmp_path / "first",
            resume=True,
            init_weights=source.final_weights,
        )
    with pytest.raises(TrainingError, match="expected depth 5 x 4 channels"):
        train(
            config.replace(depth=5),
            data_dirs=[tmp_path / "hr"],
            out_dir=tmp_path / "wrong",
            init_weights=source.final_weights,
        )
    tuned = train(
        config.replace(iterations=2, lr=1e-12),
        data_dirs=[tmp_path / "hr"],
        out_dir=tmp_path / "tuned",
        init_weights=source.final_weights,
    )
    assert tuned.final_weights is not None
    before, source_info = load_weights(source.final_weights)
    after, info = load_weights(tuned.final_weights)
    # lr 1e-12: the fine-tuned weights are the source weights (plus rounding-level steps).
    for (name, old), new in zip(before.state_dict().items(), after.state_dict().values(), strict=True):
        assert torch.allclose(old, new, atol=1e-6), name
    origin = info.training["initialised_from"]
    assert origin["weights_digest"] == source_info.sha256 and origin["iterations"] == 4


def test_worker_processes_cut_the_same_batches_in_order(tmp_path: Path) -> None:
    write_images(tmp_path / "hr", [(45, 53), (61, 47)])
    sampler = PatchSampler(prepare_pairs(find_images([tmp_path / "hr"]), [2, 3], 21), patch_size=21, seed=3)
    steps = range(5, 12)
    inline = list(batch_stream(sampler, steps, 6))
    workers = list(batch_stream(sampler, steps, 6, workers=2))
    assert len(inline) == len(workers) == 7
    for (a_in, a_out), (b_in, b_out), step in zip(inline, workers, steps, strict=True):
        expected_in, expected_out = sampler.batch(step, 6)
        assert a_in.dtype == torch.float32 and a_in.shape == (6, 1, 21, 21)
        assert np.array_equal(a_in.numpy(), expected_in) and np.array_equal(a_out.numpy(), expected_out)
        assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)


def test_training_with_workers_matches_inline(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(40, 43)])
    config = tiny_config(iterations=5, seed=4)
    # on the CPU: cuDNN's autotuned kernels would make two GPU runs differ in the last bits
    inline = train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "inline", device="cpu")
    ahead = train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "ahead", data_workers=2, device="cpu")
    assert inline.final_weights is not None and ahead.final_weights is not None
    a, _ = load_weights(inline.final_weights)
    b, _ = load_weights(ahead.final_weights)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    with pytest.raises(TrainingError, match="expected >= 0, got -1"):
        train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "bad", data_workers=-1)


def test_a_non_finite_loss_stops_training_without_updating(tmp_path: Path) -> None:
    config = TrainConfig(name="tiny", depth=3, channels=4, optimizer="adam", clip="none", loss="mean")
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    optimizer = make_optimizer(model, config)
    before = model.weight.detach().clone()
    inputs = torch.full((2, 1, 5, 5), float("nan"))
    assert training_step(model, optimizer, inputs, torch.zeros(2, 1, 5, 5), config, 1e-3, bf16=False) is None
    assert torch.equal(model.weight, before)
    loss = training_step(model, optimizer, torch.ones(2, 1, 5, 5), torch.zeros(2, 1, 5, 5), config, 1e-3, bf16=False)
    assert loss is not None and float(loss) > 0 and not torch.equal(model.weight, before)


def test_iterations_for_a_time_budget() -> None:
    fp32 = TrainConfig(name="t", precision="fp32", warmup_iterations=10)
    assert iterations_for_budget(fp32, 100.0, StepTimes(mixed=0.5, fp32=0.5)) == 180  # 90 s / 0.5
    assert iterations_for_budget(fp32, 100.0, StepTimes(0.5, 0.5), step_share=1.0) == 200
    mixed = TrainConfig(name="t", precision="bf16", fp32_final_iterations=20, warmup_iterations=0)
    # 90 s: 20 fp32 steps at 1 s, then 70 s of bf16 steps at 0.25 s
    assert iterations_for_budget(mixed, 100.0, StepTimes(mixed=0.25, fp32=1.0)) == 20 + 280
    with pytest.raises(TrainingError, match="does not cover the recipe's 20 final fp32"):
        iterations_for_budget(mixed, 10.0, StepTimes(mixed=0.25, fp32=1.0))
    with pytest.raises(TrainingError, match="the recipe needs at least 11"):
        iterations_for_budget(fp32, 5.0, StepTimes(0.5, 0.5))
    with pytest.raises(TrainingError, match="expected a finite number of seconds > 0, got 0"):
        iterations_for_budget(fp32, 0.0, StepTimes(0.5, 0.5))


def test_step_times_are_measured_on_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock advanced by a fake step: the arithmetic is checked exactly, no timing."""
    import types

    import train.budget as budget

    torch.set_num_threads(1)
    tiny = TrainConfig(name="t", depth=3, channels=4, patch_size=9, batch_size=2, precision="fp32")
    real = measure_step_times(tiny, torch.device("cpu"), warmup=1, repeats=2)  # the real path runs
    assert real.fp32 > 0 and real.mixed == real.fp32
    clock = {"now": 100.0}
    calls: list[tuple[int, tuple[int, ...], bool]] = []

    def fake_step(model: torch.nn.Module, optimizer: object, inputs: torch.Tensor, *args: object, bf16: bool) -> None:
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        calls.append((len(convs), tuple(inputs.shape), bf16))
        assert convs[0].out_channels == 4
        clock["now"] += 0.125 if bf16 else 0.25

    monkeypatch.setattr(budget, "training_step", fake_step)
    monkeypatch.setattr(budget, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    times = measure_step_times(tiny, torch.device("cpu"), warmup=3, repeats=4)
    assert times == StepTimes(mixed=0.25, fp32=0.25)  # warm-up steps are not counted
    assert calls == [(3, (2, 1, 9, 9), False)] * 7
    calls.clear()
    mixed = measure_step_times(tiny.replace(precision="bf16"), torch.device("cpu"), warmup=1, repeats=2)
    assert mixed == StepTimes(mixed=0.125, fp32=0.25)
    assert [bf16 for _, _, bf16 in calls] == [False] * 3 + [True] * 3


def test_a_runtime_error_mid_run_keeps_the_checkpoint_and_says_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import train.loop as loop

    torch.set_num_threads(1)
    write_images(tmp_path / "hr", [(40, 43)])
    config = tiny_config(iterations=10, seed=4)
    real_step = loop.training_step
    calls = {"n": 0}

    def failing_step(*args: object, **kwargs: object) -> torch.Tensor | None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_step(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "training_step", failing_step)
    with pytest.raises(TrainingError, match=r"failed at iteration 3 \(CUDA out of memory.*continue with --resume"):
        train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "run")
    monkeypatch.setattr(loop, "training_step", real_step)
    resumed = train(config, data_dirs=[tmp_path / "hr"], out_dir=tmp_path / "run", resume=True)
    assert resumed.iterations_done == 10 and resumed.final_weights is not None


def _stop_signals_then_exit() -> None:
    import os
    import signal

    from train.batches import _ignore_stop_signals

    _ignore_stop_signals(0)
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)


def test_data_workers_leave_stop_signals_to_the_training_process() -> None:
    import multiprocessing

    process = multiprocessing.get_context("fork").Process(target=_stop_signals_then_exit)
    process.start()
    process.join(10)
    assert process.exitcode == 0  # neither SIGTERM nor SIGINT ended it
