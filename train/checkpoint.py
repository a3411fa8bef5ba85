"""The resumable training checkpoint (``last.safetensors``): writing it and reading it back.

Model, EMA and optimizer tensors are stored as safetensors; everything else (step, recipe,
best validation, wall time, folders, optimizer scalars and parameter groups) as JSON under
one metadata key: no pickle. The model's tensors carry the weights format's prefix, so the
checkpoint also loads as weights (:func:`vdsr_deploy.model.weights.load_weights`). Restoring a
checkpoint restores the optimizer exactly, so a resumed run equals the uninterrupted one
bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from train.ema import WeightAverage
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.fileops import atomic_path, with_default_permissions
from vdsr_deploy.model.weights import CHECKPOINT_METADATA_KEY, CHECKPOINT_MODEL_PREFIX

CHECKPOINT_NAME = "last.safetensors"
_EMA_PREFIX = "ema."
_OPTIMIZER_PREFIX = "optim."


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    ema: WeightAverage | None = None,
) -> None:
    """Model, EMA and optimizer tensors as safetensors; everything else as JSON metadata."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {
        f"{CHECKPOINT_MODEL_PREFIX}{k}": v.detach().float().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    if ema is not None:
        tensors.update(
            {f"{_EMA_PREFIX}{k}": v.detach().float().contiguous().clone() for k, v in ema.model.state_dict().items()}
        )
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for index, param_state in optimizer_state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                tensors[f"{_OPTIMIZER_PREFIX}{index}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = float(value)
    meta = {**state, "optimizer_scalars": scalars, "param_groups": optimizer_state["param_groups"]}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={CHECKPOINT_METADATA_KEY: json.dumps(meta)})
        with_default_permissions(temporary)


def read_checkpoint(path: Path, *, tensors: bool = True) -> tuple[Any, dict[str, torch.Tensor]]:
    """The checkpoint's JSON metadata and (when ``tensors``) its tensors by name;
    TrainingError naming ``path`` when it is not a training checkpoint."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})[CHECKPOINT_METADATA_KEY])
            found = {name: handle.get_tensor(name) for name in handle.keys()} if tensors else {}  # noqa: SIM118
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise TrainingError(f"{path}: not a vdsr training checkpoint ({error})") from error
    return meta, found


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    ema: WeightAverage | None = None,
) -> dict[str, Any]:
    """Restore ``model``, ``optimizer`` and (when the checkpoint has one) ``ema``; the
    checkpoint's metadata. An EMA the checkpoint lacks restarts from the restored model."""
    meta, tensors = read_checkpoint(path)
    model_state = {
        k[len(CHECKPOINT_MODEL_PREFIX) :]: v
        for k, v in tensors.items()
        if k.startswith(CHECKPOINT_MODEL_PREFIX)
    }
    try:
        model.load_state_dict(model_state)
    except RuntimeError as error:
        raise TrainingError(
            f"{path}: checkpoint does not match the model in the config ({error})"
        ) from error
    optimizer.load_state_dict(_optimizer_state(meta, tensors, list(model.parameters())))
    if ema is not None:
        ema_state = {k[len(_EMA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_EMA_PREFIX)}
        ema.model.load_state_dict(ema_state or model.state_dict())
    return dict(meta)


def _optimizer_state(
    meta: Any, tensors: dict[str, torch.Tensor], parameters: list[nn.Parameter]
) -> dict[str, Any]:
    """The optimizer's ``state_dict`` as :func:`save_checkpoint` split it: tensors by name,
    scalars (``step`` and the like) from the metadata, widened back to their tensors."""
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    for name, value in tensors.items():
        if name.startswith(_OPTIMIZER_PREFIX):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = value
    for index, values in meta["optimizer_scalars"].items():
        for key, value in values.items():
            shape = () if key == "step" else parameters[int(index)].shape
            stored = torch.full(shape, value, dtype=torch.float32)
            optimizer_state["state"].setdefault(int(index), {})[key] = stored
    return optimizer_state
