"""The bench tests' tiny seeded model (depth 3, 4 channels: fast to time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    return save_weights(VDSR(depth=3, channels=4), tmp_path / "tiny3.safetensors")
