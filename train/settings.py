"""What a run trains on and where it starts: the recipe and folders of a new run, those a
resumed run continues with (recorded in its checkpoint; a differing recipe or data folder
is refused), and the weights a new run may start from.

Nothing here trains or writes: these are the checks made before a run touches its folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from train.checkpoint import CHECKPOINT_NAME, read_checkpoint
from train.config import TrainConfig, config_from_dict
from vdsr_deploy.environment import portable_path
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.model.weights import load_weights


@dataclass(frozen=True)
class RunSettings:
    """What a run trains on: the recipe and the folders. A resumed run keeps them."""

    config: TrainConfig
    data_dirs: tuple[Path, ...]
    val_dir: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dirs": [str(d) for d in self.data_dirs],
            "val_dir": str(self.val_dir) if self.val_dir else None,
        }


def read_run_settings(checkpoint: Path) -> RunSettings:
    """The recipe and folders recorded in a training checkpoint (tensors are not read).
    Checkpoints written before the folders were recorded give no ``data_dirs``."""
    meta, _ = read_checkpoint(checkpoint, tensors=False)
    try:
        config = config_from_dict(dict(meta["config"]), source=str(checkpoint))
    except (KeyError, TypeError) as error:
        raise TrainingError(f"{checkpoint}: not a vdsr training checkpoint ({error})") from error
    val_dir = meta.get("val_dir")
    return RunSettings(
        config=config,
        data_dirs=tuple(Path(d) for d in meta.get("data_dirs") or ()),
        val_dir=Path(val_dir) if val_dir else None,
    )


def resumed_config(out_dir: Path, *, iterations: int | None = None) -> TrainConfig:
    """The recipe of the run in ``out_dir`` (optionally with another iteration count): what
    ``vdsr train --resume`` continues when no recipe is given."""
    checkpoint = out_dir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise TrainingError(f"{checkpoint}: nothing to resume from")
    config = read_run_settings(checkpoint).config
    return config if iterations is None else config.replace(iterations=iterations)


def run_settings(
    out_dir: Path,
    config: TrainConfig | None,
    data_dirs: Sequence[Path] | None,
    val_dir: Path | None,
    *,
    resume: bool,
    init_weights: Path | None,
) -> tuple[RunSettings, list[str]]:
    """The settings of the run :func:`train.loop.train` is asked for, and warnings: a new
    run needs a recipe and data and must not overwrite a run in ``out_dir``; a resumed one
    continues the checkpoint there (:func:`settings_for_resume`)."""
    last_path = out_dir / CHECKPOINT_NAME
    if last_path.exists() and not resume:
        raise TrainingError(
            f"{last_path} exists: pass --resume to continue that run, or pick another --out"
        )
    if resume and not last_path.exists():
        raise TrainingError(f"{last_path}: nothing to resume from")
    if resume and init_weights is not None:
        raise TrainingError("--init-weights starts a new run; it cannot be combined with --resume")
    if resume:
        return settings_for_resume(last_path, config, data_dirs, val_dir)
    if config is None:
        raise TrainingError("a new run needs a recipe (config)")
    if not data_dirs:
        raise TrainingError("a new run needs at least one data folder (--data)")
    return RunSettings(config, tuple(Path(d) for d in data_dirs), val_dir), []


def _same_folder(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def settings_for_resume(
    checkpoint: Path,
    config: TrainConfig | None,
    data_dirs: Sequence[Path] | None,
    val_dir: Path | None,
) -> tuple[RunSettings, list[str]]:
    """The settings a resumed run continues with, and warnings.

    What is not given comes from the checkpoint. A recipe or data folders that differ from
    the checkpoint's are refused (the run would silently become another run); a different
    iteration count is accepted with a warning (it extends or shortens the run, and a cosine
    schedule is recomputed for the new length); a different validation folder likewise.
    """
    recorded = read_run_settings(checkpoint)
    warnings: list[str] = []
    chosen = recorded.config
    if config is not None:
        _check_same_recipe(checkpoint, recorded.config, config)
        if config.iterations != recorded.config.iterations:
            warnings.append(
                f"--iterations {config.iterations} changes the run being resumed "
                f"({recorded.config.iterations} in {checkpoint})"
                + ("; its cosine schedule is recomputed for the new length" if config.schedule == "cosine" else "")
            )
        chosen = config
    chosen_data = _resumed_data_dirs(checkpoint, recorded.data_dirs, data_dirs)
    chosen_val = recorded.val_dir
    if val_dir is not None:
        if recorded.val_dir is not None and not _same_folder(val_dir, recorded.val_dir):
            warnings.append(
                f"--val {val_dir} differs from the run being resumed ({recorded.val_dir}): "
                "the best checkpoint is now chosen on another set"
            )
        chosen_val = val_dir
    return RunSettings(chosen, chosen_data, chosen_val), warnings


def _check_same_recipe(checkpoint: Path, recorded: TrainConfig, given: TrainConfig) -> None:
    """TrainingError listing the fields (other than ``iterations``) that differ."""
    before, after = recorded.to_dict(), given.to_dict()
    differing = [k for k in before if k != "iterations" and before[k] != after[k]]
    if differing:
        listed = "; ".join(
            f"{key} is {before[key]!r} there, {after[key]!r} given" for key in differing[:4]
        ) + (f"; and {len(differing) - 4} more" if len(differing) > 4 else "")
        raise TrainingError(
            f"{checkpoint}: --config differs from the run being resumed ({listed}); "
            "a resumed run keeps its recipe: leave --config out, or start a new run from "
            f"its weights with --init-weights {checkpoint} --out NEW_FOLDER"
        )


def _resumed_data_dirs(
    checkpoint: Path, recorded: tuple[Path, ...], given_dirs: Sequence[Path] | None
) -> tuple[Path, ...]:
    """The recorded data folders; ``given_dirs`` must name the same ones (in order), and
    are used only for an older checkpoint that did not record them."""
    if given_dirs:
        given = tuple(Path(d) for d in given_dirs)
        if recorded and (
            len(given) != len(recorded)
            or not all(_same_folder(a, b) for a, b in zip(given, recorded, strict=True))
        ):
            raise TrainingError(
                f"{checkpoint}: --data {' '.join(map(str, given))} differs from the run being "
                f"resumed ({' '.join(map(str, recorded))}); leave --data out to "
                "continue on the same images"
            )
        return recorded or given
    if recorded:
        return recorded
    raise TrainingError(
        f"{checkpoint} does not record its data folders (an older checkpoint): pass --data"
    )


def load_initial_weights(
    path: Path, config: TrainConfig
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of ``path`` (checked against the recipe) and what to record about it
    (``initialised_from``: a new run started from other weights keeps their record)."""
    source, info = load_weights(path)
    if (info.depth, info.channels) != (config.depth, config.channels):
        raise TrainingError(
            f"{path}: expected depth {config.depth} x {config.channels} channels (the recipe), "
            f"got depth {info.depth} x {info.channels}"
        )
    record = {
        "path": portable_path(path),
        "weights_digest": info.sha256,
        "iterations": info.training.get("iterations"),
        "wall_seconds": info.training.get("wall_seconds"),
        "recipe": info.training.get("recipe", {}).get("name"),
        "initialised_from": info.training.get("initialised_from"),
    }
    return source.state_dict(), record
