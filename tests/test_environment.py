"""One home for machine/version facts and report paths (issue 15 part B)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdsr_deploy import environment
from vdsr_deploy.environment import describe_weights, portable_path
from vdsr_deploy.model.weights import default_weights_path


def test_portable_paths_name_no_machine_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert portable_path(default_weights_path()) == "vdsr_deploy/assets/vdsr_default.safetensors"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert portable_path(tmp_path / "runs" / "x.safetensors") == "runs/x.safetensors"
    assert portable_path(Path("runs/x.safetensors")) == "runs/x.safetensors"
    assert portable_path("/somewhere/else/engines/m.onnx") == "m.onnx"
    assert portable_path(None) is None


def test_the_two_hashes_are_named_apart() -> None:
    text = describe_weights({"path": "w.safetensors", "weights_digest": "a" * 64, "file_sha256": "b" * 64})
    assert text == "w.safetensors (weights digest aaaaaaaaaaaa, file sha256 bbbbbbbbbbbb)"
    assert "weights digest cccc" in describe_weights({"path": "old.safetensors", "sha256": "c" * 64})


def test_machine_facts_come_from_one_module() -> None:
    machine = environment.machine_info()
    assert {"cpu", "logical_cpus", "cpu_flags", "memory_gib", "gpu", "nice"} <= set(machine)
    assert set(environment.notable_cpu_flags()) <= set(environment.CPU_FLAGS)
    from vdsr_deploy.runtime.info import versions  # every runtime's, from the registry

    assert versions()["python"] and environment.package_version("no-such-dist-xyz") is None
    import vdsr_deploy.bench.record as bench

    assert bench.machine_info is environment.machine_info  # bench records what environment says
