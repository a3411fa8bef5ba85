"""What a benchmark times: settings and sweeps are validated."""

from __future__ import annotations

import pytest

from vdsr_deploy.bench import BenchConfig, BenchSetting, sweep
from vdsr_deploy.errors import ConfigError


def test_settings_and_sweep_are_validated() -> None:
    with pytest.raises(ConfigError):
        BenchSetting("onnxruntime", "bf16")
    with pytest.raises(ConfigError):
        BenchSetting("tensorrt", "int8")  # INT8 is an ONNX Runtime (CPU) path
    with pytest.raises(ConfigError):
        BenchConfig(settings=(BenchSetting(), BenchSetting()))  # duplicate names
    with pytest.raises(ConfigError):
        BenchConfig(settings=(BenchSetting(),), baseline="missing")
    settings, notes = sweep(["torch", "onnxruntime"], ["fp32", "bf16"], [0, 64], [1])
    assert len(settings) == 6
    assert notes == ["onnxruntime has no bf16 path: left out"]
