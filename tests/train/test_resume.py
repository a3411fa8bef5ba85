"""A resumed run continues the run it resumes; every checkpoint loads as weights."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from train.config import TrainConfig, builtin_recipes
from train.loop import train
from train.settings import read_run_settings
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.model.weights import load_weights, read_depth


def write_image(folder: Path, size: tuple[int, int] = (45, 49)) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    base = rng.random((size[0] // 4 + 1, size[1] // 4 + 1, 3))
    smooth = np.kron(base, np.ones((4, 4, 1)))[: size[0], : size[1]]
    Image.fromarray((smooth * 255).astype(np.uint8)).save(folder / "a.png")
    return folder


def recipe(**changes: Any) -> TrainConfig:
    base = TrainConfig(
        name="tiny", depth=3, channels=4, patch_size=15, batch_size=4, optimizer="adam", lr=1e-3,
        weight_decay=0.0, clip="none", loss="l1", precision="fp32", schedule="cosine", iterations=8,
        log_every=2, validate_every=4, checkpoint_every=2, seed=4,
    )  # fmt: skip
    return base.replace(**changes)


def stop_at(step: int) -> Any:
    """An event sink that stops the run (as Ctrl-C does) once ``step`` is logged."""

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "train" and event["step"] >= step:
            raise KeyboardInterrupt

    return on_event


def test_resume_takes_recipe_and_folders_from_the_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    hr = write_image(tmp_path / "hr")
    run = tmp_path / "run"
    stopped = train(recipe(), data_dirs=[hr], out_dir=run, val_dir=hr, on_event=stop_at(4))
    assert stopped.interrupted and stopped.iterations_done == 4 and stopped.final_weights is None
    settings = read_run_settings(run / "last.safetensors")
    assert settings.config == recipe() and settings.data_dirs == (hr.resolve(),)
    assert settings.val_dir == hr.resolve()

    events: list[dict[str, Any]] = []
    resumed = train(None, out_dir=run, resume=True, on_event=events.append)  # no recipe, no --data
    assert not resumed.interrupted and resumed.iterations_done == 8 and resumed.iterations == 8
    start = next(e for e in events if e["event"] == "start")
    assert (start["step"], start["iterations"], start["resumed"]) == (4, 8, True)
    assert not [e for e in events if e["event"] == "warning"]
    again: list[dict[str, Any]] = []
    train(None, out_dir=run, resume=True, on_event=again.append)  # a finished run says so
    assert any("already did 8 of 8 iterations" in e["message"] for e in again if e["event"] == "warning")

    # the same run in one go gives the same weights: the resumed run is that run
    whole = train(recipe(), data_dirs=[hr], out_dir=tmp_path / "whole", val_dir=hr)
    assert whole.final_weights is not None and resumed.final_weights is not None
    a, _ = load_weights(whole.final_weights)
    b, _ = load_weights(resumed.final_weights)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name


def test_resume_refuses_another_recipe_or_data_and_warns_on_iterations(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    hr = write_image(tmp_path / "hr")
    other = write_image(tmp_path / "other")
    run = tmp_path / "run"
    train(recipe(), data_dirs=[hr], out_dir=run, on_event=stop_at(2))
    with pytest.raises(TrainingError, match=r"--config differs .*lr is 0\.001 there, 0\.01 given"):
        train(recipe(lr=1e-2), out_dir=run, resume=True)
    with pytest.raises(TrainingError, match=r"--data .*other differs from the run being resumed .*hr"):
        train(None, data_dirs=[other], out_dir=run, resume=True)
    events: list[dict[str, Any]] = []
    result = train(recipe(iterations=6), data_dirs=[hr], out_dir=run, resume=True, on_event=events.append)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "--iterations 6" in warnings[0] and "(8 in" in warnings[0]
    assert result.iterations_done == 6


def test_every_file_a_run_writes_loads_as_weights(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    hr = write_image(tmp_path / "hr")
    run = tmp_path / "run"
    previous = os.umask(0o022)
    try:
        result = train(recipe(), data_dirs=[hr], out_dir=run, val_dir=hr)
    finally:
        os.umask(previous)
    assert result.final_weights is not None and result.best_weights is not None
    assert result.checkpoint == run / "last.safetensors" and result.weights == result.final_weights
    final, _ = load_weights(result.final_weights)
    for path in (run / "last.safetensors", result.best_weights, result.final_weights):
        _, info = load_weights(path)
        assert (info.depth, info.channels) == (3, 4) and read_depth(path) == 3
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # like every other output
    checkpoint_model, info = load_weights(run / "last.safetensors")
    assert info.training["iterations"] == 8 and info.training["recipe"]["name"] == "tiny"
    for name, tensor in final.state_dict().items():
        assert torch.equal(tensor, checkpoint_model.state_dict()[name]), name
    # a new run can start from a checkpoint too (fine-tuning a stopped run)
    tuned = train(
        recipe(iterations=2), data_dirs=[hr], out_dir=tmp_path / "tuned", init_weights=run / "last.safetensors"
    )
    assert tuned.final_weights is not None
    _, tuned_info = load_weights(tuned.final_weights)
    assert tuned_info.training["initialised_from"]["iterations"] == 8


def test_builtin_recipes_are_found_in_the_folder() -> None:
    names = builtin_recipes()
    assert {"paper", "fast", "ft_l1", "gpu_l1"} <= set(names)


def test_sigterm_stops_after_the_step_keeps_the_checkpoint_and_restores_the_handler(
    tmp_path: Path,
) -> None:
    import signal

    torch.set_num_threads(1)
    hr = write_image(tmp_path / "hr")
    previous = signal.getsignal(signal.SIGTERM)

    def terminate_after_step_2(event: dict[str, Any]) -> None:
        if event["event"] == "train" and event["step"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill` or a scheduler sends

    result = train(
        recipe(log_every=1), data_dirs=[hr], out_dir=tmp_path / "run", on_event=terminate_after_step_2
    )
    assert result.interrupted and result.iterations_done == 2 and result.final_weights is None
    assert read_run_settings(tmp_path / "run" / "last.safetensors").config == recipe(log_every=1)
    assert signal.getsignal(signal.SIGTERM) is previous
    events: list[dict[str, Any]] = []
    resumed = train(None, out_dir=tmp_path / "run", resume=True, on_event=events.append)
    assert next(e["step"] for e in events if e["event"] == "start") == 2
    assert resumed.iterations_done == 8 and not resumed.interrupted
