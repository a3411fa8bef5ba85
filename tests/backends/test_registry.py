"""The registry is the one list of runtimes: every backend in it is reachable from the CLI,
validate and bench, and reported by `vdsr info`, with no other table to update."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vdsr_deploy.backends.registry import BACKEND_CHOICES, REGISTRY, RunnerSpec, backend_versions
from vdsr_deploy.bench.config import SUPPORTED
from vdsr_deploy.cli import app
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.parity.run import CANDIDATES, REFERENCE
from vdsr_deploy.precision.names import PRECISIONS
from vdsr_deploy.runtime.info import versions


@pytest.mark.parametrize("command", ["upscale", "validate", "bench", "eval"])
def test_every_backend_is_a_cli_choice(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for name in REGISTRY:
        assert name in text, f"vdsr {command} --help does not offer {name}"


def test_every_backend_and_precision_is_validated_and_benched() -> None:
    pairs = {(c.backend, c.precision) for c in CANDIDATES.values() if c.tiled}
    for name, backend in REGISTRY.items():
        assert set(backend.precisions) <= set(PRECISIONS), name
        assert SUPPORTED[name] == backend.precisions
        for precision in backend.precisions:
            assert (name, precision) in pairs or (name, precision) == REFERENCE
            assert RunnerSpec(backend=name, precision=precision).backend == name
        for precision in set(PRECISIONS) - set(backend.precisions):
            with pytest.raises(ConfigError, match=f"{name} has no {precision} path"):
                RunnerSpec(backend=name, precision=precision)
    assert ("auto", *REGISTRY) == BACKEND_CHOICES


def test_every_backend_reports_its_versions() -> None:
    reported = versions()
    for backend in REGISTRY.values():
        assert set(backend.versions()) <= set(reported)
    assert set(backend_versions()) <= set(reported)


def test_descriptors_agree_with_their_runners() -> None:
    from vdsr_deploy.backends.tensorrt.build_config import PRECISIONS as TENSORRT_PRECISIONS
    from vdsr_deploy.backends.torch.runner import PRECISIONS as TORCH_PRECISIONS

    assert set(REGISTRY["torch"].precisions) == set(TORCH_PRECISIONS)
    assert REGISTRY["tensorrt"].precisions == TENSORRT_PRECISIONS


def test_each_backend_says_where_it_computes() -> None:
    assert REGISTRY["onnxruntime"].compute_device("auto", "cpu") == "cpu"
    assert REGISTRY["onnxruntime"].compute_device("cuda:1", "cuda") == "cuda:1"
    assert REGISTRY["tensorrt"].compute_device("auto", "cpu") == "cuda"
    assert REGISTRY["torch"].compute_device("cpu", "cpu") == "cpu"
    assert REGISTRY["torch"].on_cuda("cuda:0")
