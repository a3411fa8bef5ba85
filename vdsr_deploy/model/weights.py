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
from typing import TYPE_CHECKING, Any

from vdsr_deploy.errors import WeightsError
from vdsr_deploy.fileops import atomic_path, file_sha256, require_regular_file, with_default_permissions

if TYPE_CHECKING:  # torch is imported where used: a run on ONNX Runtime never needs it
    import numpy as np
    import torch

    from vdsr_deploy.model.network import VDSR

METADATA_KEY = "vdsr"
CHECKPOINT_METADATA_KEY = "vdsr_checkpoint"  # training checkpoints (train/checkpoint.py): model.* + optim.*
CHECKPOINT_MODEL_PREFIX = "model."
FORMAT_VERSION = 1
DEFAULT_WEIGHTS_NAME = "vdsr_default.safetensors"
_LAYER_NAME = re.compile(r"^body\.(\d+)\.(weight|bias)$")


@dataclass(frozen=True)
class WeightsInfo:
    """What a weights file says about itself.

    Two hashes, never to be confused: ``sha256`` is the **weights digest**
    (:func:`state_dict_sha256`: tensor names, shapes and fp32 values; the same for the same
    weights in any file, and what ONNX metadata ``vdsr.weights_sha256`` and engine sidecars
    record), ``file_sha256`` the **file sha256** (the bytes on disk, what ``sha256sum``
    prints; it changes when only the metadata does).
    """

    path: Path | None
    depth: int
    channels: int
    scales: tuple[float, ...]
    sha256: str
    training: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    file_sha256: str | None = None

    @property
    def weights_digest(self) -> str:
        return self.sha256

    def to_dict(self) -> dict[str, Any]:
        """For reports: the path without the machine's folders
        (:func:`~vdsr_deploy.environment.portable_path`) and both hashes, named apart."""
        from vdsr_deploy.environment import portable_path

        return {
            "path": portable_path(self.path),
            "depth": self.depth,
            "channels": self.channels,
            "scales": list(self.scales),
            "weights_digest": self.sha256,
            "file_sha256": self.file_sha256,
            "training": self.training,
            "evaluation": self.evaluation,
        }


def default_weights_path() -> Path:
    """The weights shipped inside the package (``vdsr_deploy/assets``)."""
    return Path(str(resources.files("vdsr_deploy.assets").joinpath(DEFAULT_WEIGHTS_NAME)))


def resolve_weights_path(path: Path | str | None) -> Path:
    """``path`` if given, else the shipped default; a clear error if the file is missing."""
    resolved = Path(path) if path is not None else default_weights_path()
    if path is None and not resolved.is_file():
        raise WeightsError(
            f"{resolved}: the shipped default weights are missing from this install; "
            "pass --weights FILE.safetensors"
        )
    return require_regular_file(resolved, "weights file", WeightsError)


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of tensor names, shapes and fp32 values: identical for identical weights."""
    import torch

    return _arrays_sha256(
        {name: tensor.detach().to("cpu", torch.float32).contiguous().numpy() for name, tensor in state.items()}
    )


def _arrays_sha256(arrays: dict[str, np.ndarray[Any, Any]]) -> str:
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name], dtype=np.float32)
        digest.update(name.encode())
        digest.update(str(tuple(int(d) for d in array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def weights_file_sha256(path: Path | str | None = None) -> str:
    """:func:`state_dict_sha256` of a weights file (``None``: the shipped one), read with
    numpy: no torch import, for finding cached artifacts fast. Not a validation (use
    :func:`load_weights` for that)."""
    from safetensors import SafetensorError, safe_open

    resolved = resolve_weights_path(path)
    try:
        with safe_open(str(resolved), framework="np") as handle:
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{resolved}: not a readable safetensors file ({error})") from error
    return _arrays_sha256(arrays)


def save_weights(
    model: VDSR,
    path: Path | str,
    *,
    scales: tuple[float, ...] = (2.0, 3.0, 4.0),
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as safetensors with its metadata, atomically (temp file + rename)."""
    import torch
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
        with_default_permissions(temporary)
    return target


def read_depth(path: Path | str | None = None) -> int:
    """The number of conv layers of a weights file or training checkpoint (``None``: the
    shipped default), from its header only; its receptive radius is ``depth`` pixels."""
    from safetensors import SafetensorError, safe_open

    resolved = resolve_weights_path(path)
    try:
        with safe_open(str(resolved), framework="pt") as handle:
            header = handle.metadata() or {}
            names = list(handle.keys())
        if METADATA_KEY in header:
            return int(json.loads(header[METADATA_KEY]).get("depth", 20))
        if CHECKPOINT_METADATA_KEY in header:
            return int(json.loads(header[CHECKPOINT_METADATA_KEY])["config"]["depth"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{resolved}: not a readable safetensors file ({error})") from error
    return len([n for n in names if n.endswith(".weight")])


def read_channels(path: Path | str | None = None) -> int:
    """The width (feature channels) of a weights file (``None``: the shipped default), from
    its header only, without importing torch (``--tile auto`` sizes activations with it on
    every run); a training checkpoint, or a file whose first layer is not where a weights
    file has it, is read with :func:`load_weights`."""
    from safetensors import SafetensorError, safe_open

    resolved = resolve_weights_path(path)
    try:
        with safe_open(str(resolved), framework="np") as handle:
            if "body.0.weight" in handle.keys():  # noqa: SIM118
                return int(handle.get_slice("body.0.weight").get_shape()[0])
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{resolved}: not a readable safetensors file ({error})") from error
    return load_weights(path)[1].channels


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
    import torch

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

    from vdsr_deploy.model.network import VDSR

    resolved = resolve_weights_path(path)
    try:
        with safe_open(str(resolved), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{resolved}: not a readable safetensors file ({error})") from error
    if CHECKPOINT_METADATA_KEY in header and METADATA_KEY not in header:
        state, meta = _checkpoint_model(state, header[CHECKPOINT_METADATA_KEY], resolved)
        depth, channels = int(meta["depth"]), int(meta["channels"])
    elif METADATA_KEY in header:
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
        file_sha256=file_sha256(resolved),
    )
    return model, info


def _checkpoint_model(
    tensors: dict[str, torch.Tensor], header_value: str, source: Path
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The model tensors of a training checkpoint, and weights metadata made from its record
    (so a stopped run's ``last.safetensors`` works wherever weights do)."""
    try:
        record = json.loads(header_value)
        recipe = dict(record["config"])
        depth, channels = int(recipe["depth"]), int(recipe["channels"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise WeightsError(f"{source}: training checkpoint with unreadable metadata ({error})") from error
    state = {
        name[len(CHECKPOINT_MODEL_PREFIX) :]: tensor
        for name, tensor in tensors.items()
        if name.startswith(CHECKPOINT_MODEL_PREFIX)
    }
    training = {
        "recipe": recipe,
        "iterations": record.get("step"),
        "wall_seconds": record.get("wall_seconds"),
        "checkpoint": True,
        **({"initialised_from": record["initialised_from"]} if record.get("initialised_from") else {}),
    }
    meta = {
        "depth": depth,
        "channels": channels,
        "scales": [float(s) for s in recipe.get("scales", (2, 3, 4))],
        "training": training,
        "evaluation": {"validation": record["best"]} if record.get("best") else {},
    }
    return state, meta


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
