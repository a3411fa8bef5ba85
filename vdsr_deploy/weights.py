"""VDSR weights on disk: safetensors tensors plus JSON metadata. No pickle anywhere.

The metadata (stored under the safetensors header key ``vdsr``) records the architecture
(``depth``, ``channels``), the scales the model was trained for, and how it was trained.
Loading checks every tensor name and shape against the architecture and says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from vdsr_deploy.errors import WeightsError
from vdsr_deploy.fileops import atomic_path
from vdsr_deploy.model import VDSR

METADATA_KEY = "vdsr"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS_NAME = "vdsr_default.safetensors"
_LAYER_NAME = re.compile(r"^body\.(\d+)\.(weight|bias)$")


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about itself."""

    path: Path | None
    depth: int
    channels: int
    scales: tuple[float, ...]
    sha256: str
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "depth": self.depth,
            "channels": self.channels,
            "scales": list(self.scales),
            "sha256": self.sha256,
            "training": self.training,
            "evaluation": self.evaluation,
        }


def default_weights_path() -> Path:
    """The weights shipped inside the package (``vdsr_deploy/assets``)."""
    return Path(str(resources.files("vdsr_deploy.assets").joinpath(DEFAULT_WEIGHTS_NAME)))


def resolve_weights_path(path: Path | str | None) -> Path:
    """``path`` if given, else the shipped default; a clear error if the file is missing."""
    resolved = Path(path) if path is not None else default_weights_path()
    if not resolved.is_file():
        if path is None:
            raise WeightsError(
                f"{resolved}: the shipped default weights are missing from this install; "
                "pass --weights FILE.safetensors"
            )
        raise WeightsError(f"{resolved}: weights file not found")
    return resolved


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of tensor names, shapes and fp32 values: identical for identical weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def save_weights(
    model: VDSR,
    path: Path | str,
    *,
    scales: tuple[float, ...] = (2.0, 3.0, 4.0),
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as safetensors with its metadata, atomically (temp file + rename)."""
    from safetensors.torch import save_file

    target = Path(path)
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "architecture": "vdsr",
        "depth": model.depth,
        "channels": model.channels,
        "scales": list(scales),
        "weights_sha256": state_dict_sha256(state),
        "training": training or {},
        "evaluation": evaluation or {},
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return target


def _expected_shapes(depth: int, channels: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(depth):
        c_in = 1 if layer == 0 else channels
        c_out = 1 if layer == depth - 1 else channels
        shapes[f"body.{2 * layer}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"body.{2 * layer}.bias"] = (c_out,)
    return shapes


def validate_state_dict(
    state: dict[str, torch.Tensor], depth: int, channels: int, source: str
) -> None:
    """Raise :class:`WeightsError` naming the first problem found."""
    found_layers = len([n for n in state if n.endswith(".weight")])
    if found_layers != depth:
        raise WeightsError(f"{source}: expected {depth} conv layers, found {found_layers}")
    expected = _expected_shapes(depth, channels)
    for name in state:
        if not _LAYER_NAME.match(name) or name not in expected:
            raise WeightsError(f"{source}: unexpected tensor {name!r} for a {depth}-layer VDSR")
    for name, shape in expected.items():
        if name not in state:
            raise WeightsError(f"{source}: missing tensor {name!r}")
        actual = tuple(state[name].shape)
        if actual != shape:
            raise WeightsError(f"{source}: {name} expected shape {shape}, got {actual}")
        if not torch.isfinite(state[name]).all():
            raise WeightsError(f"{source}: {name} contains NaN or Inf")


def load_weights(
    path: Path | str | None = None, *, device: str = "cpu"
) -> tuple[VDSR, WeightsInfo]:
    """Load a VDSR from safetensors (``None``: the shipped default), validated, in eval mode."""
    from safetensors import SafetensorError, safe_open

    resolved = resolve_weights_path(path)
    try:
        with safe_open(str(resolved), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{resolved}: not a readable safetensors file ({error})") from error
    if METADATA_KEY in header:
        try:
            meta = json.loads(header[METADATA_KEY])
        except json.JSONDecodeError as error:
            raise WeightsError(f"{resolved}: metadata is not valid JSON ({error})") from error
        depth = int(meta.get("depth", 20))
        channels = int(meta.get("channels", 64))
    else:
        meta = {}
        depth = len([n for n in state if n.endswith(".weight")])
        first = state.get("body.0.weight")
        channels = int(first.shape[0]) if first is not None else 64
    validate_state_dict(state, depth, channels, str(resolved))
    model = VDSR(depth=depth, channels=channels)
    model.load_state_dict(state)
    model.eval().to(device)
    info = WeightsInfo(
        path=resolved,
        depth=depth,
        channels=channels,
        scales=tuple(float(s) for s in meta.get("scales", (2, 3, 4))),
        sha256=state_dict_sha256(state),
        training=dict(meta.get("training", {})),
        evaluation=dict(meta.get("evaluation", {})),
    )
    return model, info


def training_summary(training: dict[str, Any]) -> str:
    """One line on how weights were trained, following ``initialised_from`` back to the start:
    e.g. ``fast 3,000 it -> ft_l1 3,300 it (batch 32; 4.1 h wall)``."""
    stages: list[tuple[str, Any, Any]] = []
    node: dict[str, Any] | None = training.get("initialised_from")
    while node:
        stages.append((str(node.get("recipe") or "?"), node.get("iterations"), node.get("wall_seconds")))
        node = node.get("initialised_from")
    stages.reverse()
    recipe = training.get("recipe", {})
    if not recipe and not stages:
        return "no training record"
    stages.append((str(recipe.get("name", "?")), training.get("iterations"), training.get("wall_seconds")))
    parts = [
        f"{name} {iterations:,} it" if isinstance(iterations, int) else f"{name} ? it"
        for name, iterations, _ in stages
    ]
    seconds = [float(wall) for _, _, wall in stages if isinstance(wall, int | float)]
    extras = [f"batch {recipe['batch_size']}"] if "batch_size" in recipe else []
    if len(seconds) == len(stages):
        extras.append(f"{sum(seconds) / 3600:.1f} h wall")
    return " -> ".join(parts) + (f" ({'; '.join(extras)})" if extras else "")
