"""benchmarks/pytorch_vdsr.py: pytorch-vdsr's pickled model converts to our layout and gives
their network's outputs, and a pickle naming anything outside the allow-list is refused."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from vdsr_deploy.model.weights import load_weights

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pytorch_vdsr.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("pytorch_vdsr_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Conv_ReLU_Block(nn.Module):  # their name
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.relu(self.conv(x))
        return out


class Net(nn.Module):
    """pytorch-vdsr's ``vdsr.Net`` (same layers, names and forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.residual_layer = nn.Sequential(*[Conv_ReLU_Block() for _ in range(18)])
        self.input = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
        self.output = nn.Conv2d(64, 1, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.input(x))
        out = self.output(self.residual_layer(out))
        return out + x


def save_as_theirs(obj: object, path: Path) -> None:
    """``torch.save`` in the legacy format, with the classes named as in their ``vdsr`` module."""
    fake = types.ModuleType("vdsr")
    fake.Net, fake.Conv_ReLU_Block = Net, Conv_ReLU_Block  # type: ignore[attr-defined]
    Net.__module__ = Conv_ReLU_Block.__module__ = "vdsr"
    sys.modules["vdsr"] = fake
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    finally:
        del sys.modules["vdsr"]  # loading must not need it


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_converted_weights_give_their_networks_outputs(tmp_path: Path) -> None:
    script = load_script()
    torch.manual_seed(0)
    theirs = Net().eval()
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.mul_(0.5)  # keep the untrained residual small and finite
    save_as_theirs({"epoch": 50, "model": theirs}, tmp_path / "model_epoch_50.pth")
    source_sha, _, difference = script.convert(tmp_path / "model_epoch_50.pth", tmp_path / "ours.safetensors")
    assert difference < 1e-5 and len(source_sha) == 64
    ours, info = load_weights(tmp_path / "ours.safetensors")
    assert info.training["source"]["sha256"] == source_sha
    assert all(not torch.any(b) for name, b in ours.named_parameters() if name.endswith("bias"))
    x = torch.rand(2, 1, 23, 31, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


class Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo this must never run",))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_pickle_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    script = load_script()
    with pytest.raises(script.UnsafePickle, match="system"):
        script.RestrictedUnpickler(io.BytesIO(pickle.dumps(Payload()))).load()
    torch.save({"epoch": 1, "model": Payload()}, tmp_path / "evil.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(script.UnsafePickle):
        script.read_their_weights(tmp_path / "evil.pth")
