"""--precision auto for every backend, provider and device (issue 27, kind 1): the decision
follows where the spec computes, whichever option says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec, check_backend_precision
from vdsr_deploy.runtime.resolve import resolve_spec

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PROVIDERS = ("cpu", "cuda", "tensorrt")
DEVICES = ("cpu", "cuda", "cuda:1")


def expected_precision(backend: str, provider: str, device: str) -> str:
    """Written out, not derived from the code under test: FP16 wherever the work runs on a
    GPU (TensorRT always; ONNX Runtime with its CUDA or TensorRT provider; PyTorch on a CUDA
    device), FP32 on the CPU (no faster CPU path on a CPU without VNNI/bf16 flags)."""
    on_gpu = {
        "tensorrt": True,
        "onnxruntime": provider in ("cuda", "tensorrt"),
        "torch": device.startswith("cuda"),
    }[backend]
    return "fp16" if on_gpu else "fp32"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_precision_for_every_backend_provider_and_device(
    backend: str, provider: str, device: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("vdsr_deploy.precision.decision.cpu_flags", lambda: frozenset({"avx2"}))
    spec = RunnerSpec(backend=backend, device=device, precision="auto", provider=provider)
    resolved, choice = resolve_spec(spec, tmp_path)
    assert resolved.precision == choice.precision == expected_precision(backend, provider, device)
    assert resolved.backend == backend  # a named backend is never switched
    assert (resolved.provider, resolved.device) == (provider, device)  # nor its provider and device
    check_backend_precision(resolved.backend, resolved.precision)  # one it runs
    assert choice.requested == "auto" and choice.reason
    assert not list(tmp_path.iterdir())  # nothing built or measured for a decision without fast paths


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_concrete_precision_is_kept_for_every_backend(backend: str, tmp_path: Path) -> None:
    for precision in REGISTRY[backend].precisions:
        spec = RunnerSpec(backend=backend, device="cuda", precision=precision, provider="cuda")
        resolved, choice = resolve_spec(spec, tmp_path)
        assert resolved == spec and choice.precision == precision and choice.requested == precision
