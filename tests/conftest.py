"""Shared fixtures: tiny seeded models, the shared data folder (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import Phase, settings

from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# tests/mutation/run.py: report the first failing example at once (no shrinking, which can
# take minutes on a subtle planted bug) and write no example database into the scratch copy
settings.register_profile(
    "mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate), database=None
)


def _has_cuda() -> bool:
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not _has_cuda():
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def hermetic_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test caches ONNX files, INT8 models and engines in one folder of this session
    (``$VDSR_CACHE_DIR``, inherited by the subprocesses tests start), never in the user's
    cache folder nor in the folder the tests run from."""
    folder = tmp_path_factory.getbasetemp() / "vdsr-cache"
    monkeypatch.setenv("VDSR_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def tiny_model() -> VDSR:
    torch.manual_seed(0)
    return VDSR(depth=4, channels=8).eval()


@pytest.fixture
def tiny_weights(tmp_path: Path, tiny_model: VDSR) -> Path:
    return save_weights(tiny_model, tmp_path / "tiny.safetensors")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
