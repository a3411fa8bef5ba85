"""Training recipes: a frozen, validated dataclass loaded from a flat TOML file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from vdsr_deploy.errors import ConfigError
from vdsr_deploy.protocol import check_scale

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine")
CLIP_MODES = ("value_lr", "value_base_lr", "norm_lr", "none")
LOSSES = ("half_sum", "mean", "l1")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """One training recipe. ``value_lr`` clipping is the paper's: every gradient element is
    clipped to ``[-theta/lr, theta/lr]`` with the current lr; ``norm_lr`` clips the global
    gradient norm to ``theta/lr`` instead; ``value_base_lr`` clips every element to
    ``[-theta/base_lr, theta/base_lr]`` with the recipe's base lr, so the step bound of a
    clipped element (``lr * theta / base_lr``) shrinks as the lr decays. ``half_sum`` loss is ``0.5 * sum / batch`` (the
    Euclidean loss of the paper's framework); ``mean`` is the per-pixel mean squared error;
    ``l1`` the per-pixel mean absolute error. ``scale_mix``: the share of patches cut at each
    of ``scales`` (relative weights, e.g. ``[2, 1, 1]``; empty: in proportion to the pixels
    of each scale's images, i.e. about equal). ``ema_decay`` > 0 keeps an exponential moving
    average of the weights (``train.ema``), validated alongside them; the better of the two
    becomes the final weights."""

    name: str = "paper"
    depth: int = 20
    channels: int = 64
    scales: tuple[int, ...] = (2, 3, 4)
    patch_size: int = 41
    batch_size: int = 64
    augment: bool = True
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"
    lr_milestones: tuple[int, ...] = (2490, 4980, 7470)
    lr_gamma: float = 0.1
    warmup_iterations: int = 0
    min_lr: float = 0.0
    clip: str = "value_lr"
    theta: float = 0.01
    loss: str = "half_sum"
    iterations: int = 9960
    precision: str = "bf16"
    channels_last: bool = True
    fp32_final_iterations: int = 0
    log_every: int = 20
    validate_every: int = 500
    checkpoint_every: int = 200
    seed: int = 0
    scale_mix: tuple[float, ...] = ()
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        scale_problem = _scale_problem(self.scales)
        checks: list[tuple[bool, str]] = [
            (self.depth >= 2, f"depth: expected >= 2, got {self.depth}"),
            (self.channels >= 1, f"channels: expected >= 1, got {self.channels}"),
            (scale_problem is None, scale_problem or ""),
            (self.patch_size >= 3, f"patch_size: expected >= 3, got {self.patch_size}"),
            (self.batch_size >= 1, f"batch_size: expected >= 1, got {self.batch_size}"),
            (
                self.optimizer in OPTIMIZERS,
                f"optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}",
            ),
            (self.lr > 0, f"lr: expected > 0, got {self.lr}"),
            (
                self.schedule in SCHEDULES,
                f"schedule: expected one of {SCHEDULES}, got {self.schedule!r}",
            ),
            (
                list(self.lr_milestones) == sorted(self.lr_milestones),
                f"lr_milestones: expected increasing, got {self.lr_milestones}",
            ),
            (self.clip in CLIP_MODES, f"clip: expected one of {CLIP_MODES}, got {self.clip!r}"),
            (self.theta > 0, f"theta: expected > 0, got {self.theta}"),
            (self.loss in LOSSES, f"loss: expected one of {LOSSES}, got {self.loss!r}"),
            (self.iterations >= 1, f"iterations: expected >= 1, got {self.iterations}"),
            (
                self.precision in PRECISIONS,
                f"precision: expected one of {PRECISIONS}, got {self.precision!r}",
            ),
            (
                0 <= self.fp32_final_iterations <= self.iterations,
                "fp32_final_iterations: expected 0..iterations",
            ),
            (self.warmup_iterations >= 0, "warmup_iterations: expected >= 0"),
            (
                not self.scale_mix
                or (len(self.scale_mix) == len(self.scales) and min(self.scale_mix) > 0),
                f"scale_mix: expected one positive weight per scale {self.scales}, "
                f"got {self.scale_mix}",
            ),
            (0.0 <= self.ema_decay < 1.0, f"ema_decay: expected 0 (off) .. <1, got {self.ema_decay}"),
            (
                self.log_every >= 1 and self.validate_every >= 1 and self.checkpoint_every >= 1,
                "log/validate/checkpoint intervals must be >= 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"training config {self.name!r}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        merged = {**self.to_dict(), **changes}
        return config_from_dict(merged, source="override")


def config_from_dict(values: dict[str, Any], *, source: str) -> TrainConfig:
    known = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown training setting(s) {', '.join(unknown)}")
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("scales", "lr_milestones", "adam_betas", "scale_mix") and isinstance(value, list):
            value = tuple(value)
        converted[key] = value
    try:
        return TrainConfig(**converted)
    except TypeError as error:
        raise ConfigError(f"{source}: {error}") from error


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped in ``train/configs`` (every ``*.toml`` there)."""
    folder = resources.files("train.configs")
    return sorted(entry.name[: -len(".toml")] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def builtin_config_path(name: str) -> Path:
    return Path(str(resources.files("train.configs").joinpath(f"{name}.toml")))


def load_config(name_or_path: str | Path) -> TrainConfig:
    """A TOML file path, or the name of a built-in recipe (:func:`builtin_recipes`)."""
    path = Path(name_or_path)
    if not path.is_file():
        builtin = builtin_config_path(str(name_or_path))
        if not builtin.is_file():
            raise ConfigError(
                f"{name_or_path}: no such config file or built-in recipe "
                f"(built-in: {', '.join(builtin_recipes())})"
            )
        path = builtin
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read training config ({error})") from error
    return config_from_dict(values, source=str(path))


def _scale_problem(scales: tuple[int, ...]) -> str | None:
    """Why ``scales`` cannot be trained on (none; one not an integer factor > 1:
    :func:`vdsr_deploy.protocol.check_scale`), or None."""
    if not scales:
        return f"scales: expected at least one scale, got {scales}"
    for scale in scales:
        try:
            check_scale(scale, integer=True)
        except ConfigError as error:
            return str(error)
    return None
