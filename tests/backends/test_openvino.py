"""The OpenVINO backend: its descriptor (availability reasons, with or without openvino),
the runner on tiny seeded models (FP32 against ONNX Runtime, the INT8 QDQ model, dynamic
shapes, the model cache, interrupts) and its place in upscale and validate."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vdsr_deploy import environment
from vdsr_deploy.backends import openvino as openvino_backend
from vdsr_deploy.backends.descriptor import OpenRequest
from vdsr_deploy.backends.registry import REGISTRY, RunnerSpec, choose_backend, unavailable_reason
from vdsr_deploy.cli import app
from vdsr_deploy.errors import ConfigError, VdsrError
from vdsr_deploy.model.network import VDSR

BACKEND = REGISTRY["openvino"]


# ----------------------------------------------------------------------------------------
# The descriptor: no openvino needed


def test_descriptor_declares_a_cpu_onnx_runtime() -> None:
    assert BACKEND.name == "openvino"
    assert BACKEND.precisions == ("fp32", "bf16", "int8")
    assert BACKEND.artifact == "onnx"
    for device in ("auto", "cpu", "cuda", "cuda:1"):
        assert BACKEND.compute_device(device, "cpu") == "cpu"
    assert set(BACKEND.versions()) == {"openvino"}


def test_missing_openvino_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_backend, "installed", lambda: False)
    reason = BACKEND.unavailable("cpu", "fp32", "cpu")
    assert reason is not None and "pip install 'vdsr-deploy[openvino]'" in reason
    assert unavailable_reason(RunnerSpec(backend="openvino", precision="int8")) == reason
    # auto never needs it: the CPU path stays ONNX Runtime or PyTorch
    assert choose_backend(RunnerSpec(device="cpu")).backend in ("onnxruntime", "torch")


def test_cuda_and_emulated_bf16_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openvino_backend, "installed", lambda: True)
    monkeypatch.setattr(openvino_backend, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    cuda = BACKEND.unavailable("cuda:0", "fp32", "cpu")
    assert cuda is not None and "runs on the CPU" in cuda
    bf16 = BACKEND.unavailable("cpu", "bf16", "cpu")
    assert bf16 is not None and "avx512_bf16" in bf16 and "amx_bf16" in bf16
    assert BACKEND.unavailable("auto", "fp32", "cpu") is None
    assert BACKEND.unavailable("cpu", "int8", "cpu") is None
    monkeypatch.setattr(openvino_backend, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert BACKEND.unavailable("cpu", "bf16", "cpu") is None


def test_open_needs_an_onnx_file() -> None:
    with pytest.raises(ConfigError, match="ONNX file"):
        BACKEND.open(OpenRequest(precision="fp32"))


def test_the_runner_says_how_to_install_when_openvino_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from vdsr_deploy.backends.openvino.runner import OpenVinoRunner
    from vdsr_deploy.errors import BackendUnavailableError

    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendUnavailableError, match=r"vdsr-deploy\[openvino\]"), OpenVinoRunner(onnx_file):
        pass


# ----------------------------------------------------------------------------------------
# The runner: needs openvino


@pytest.fixture
def ov() -> object:
    return pytest.importorskip("openvino")


@pytest.fixture
def tiny_onnx(tmp_path: Path, tiny_model: VDSR) -> Path:
    from vdsr_deploy.export.onnx import export_onnx

    return export_onnx(tiny_model, tmp_path / "tiny.onnx").path


ODD_SHAPES = ((1, 1, 19, 11), (3, 1, 9, 16), (2, 1, 33, 7))


def test_fp32_matches_onnxruntime_for_odd_shapes_in_one_session(ov: object, tiny_onnx: Path) -> None:
    from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner, OrtOptions
    from vdsr_deploy.backends.openvino.runner import OpenVinoOptions, OpenVinoRunner

    rng = np.random.default_rng(0)
    batches = [rng.random(shape, dtype=np.float32) for shape in ODD_SHAPES]
    with OnnxRuntimeRunner(tiny_onnx, OrtOptions(threads=1)) as ort:
        expected = [ort.infer(b) for b in batches]
    with OpenVinoRunner(tiny_onnx, OpenVinoOptions(threads=1)) as runner:
        info = runner.info
        first = runner.infer(batches[0])
        got = [runner.infer(b) for b in batches]
        again = runner.infer(batches[0])
    assert (info.backend, info.device, info.precision) == ("openvino", "cpu", "fp32")
    for out, ref, batch in zip(got, expected, batches, strict=True):
        assert out.dtype == np.float32 and out.shape == batch.shape and out.flags.c_contiguous
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    assert not np.shares_memory(first, again)  # a new array per call, never the request's buffer


def test_int8_runs_the_qdq_model_through_open_runner(ov: object, tiny_weights: Path, tmp_path: Path) -> None:
    from vdsr_deploy.planes.tiling import TileConfig
    from vdsr_deploy.runtime.prepare import open_runner

    batch = np.random.default_rng(3).random((2, 1, 21, 13), dtype=np.float32)
    outputs = {}
    for backend, precision in (("onnxruntime", "int8"), ("openvino", "int8"), ("openvino", "fp32")):
        spec = RunnerSpec(backend=backend, precision=precision, device="cpu", weights=tiny_weights,
                          engines_dir=tmp_path / "eng", threads=1)
        with open_runner(spec, tiling=TileConfig(tile=0, halo=0), batch=1) as runner:
            outputs[backend, precision] = runner.infer(batch)
            info = runner.info
        if backend == "openvino":
            assert info.precision == precision
            assert ("int8" in Path(info.details["onnx"]).name) == (precision == "int8")
    ort_int8, ov_int8, ov_fp32 = outputs.values()
    # the same QDQ model: OpenVINO and ONNX Runtime quantize alike (within a few levels),
    # and both differ from the FP32 graph
    assert np.max(np.abs(ov_int8 - ort_int8)) < 0.02
    assert np.max(np.abs(ov_int8 - ov_fp32)) > 0


def test_model_cache_is_made_then_reused(ov: object, tiny_onnx: Path, tmp_path: Path) -> None:
    from vdsr_deploy.backends.openvino.runner import model_cache_dir

    cache = tmp_path / "cache"
    request = OpenRequest(precision="fp32", artifact=tiny_onnx, cache_dir=cache, threads=1)
    batch = np.random.default_rng(1).random((1, 1, 15, 17), dtype=np.float32)
    with BACKEND.open(request) as first:
        a = first.infer(batch)
    folder = model_cache_dir(cache / openvino_backend.CACHE_FOLDER, tiny_onnx)
    blobs = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert folder.parent.name == "vdsr-openvino-cache" and blobs, "nothing cached"
    with BACKEND.open(request) as second:
        b = second.infer(batch)
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == blobs  # loaded, not written again
    np.testing.assert_array_equal(a, b)


def test_a_changed_model_gets_its_own_cache(ov: object, tmp_path: Path, tiny_model: VDSR) -> None:
    import torch

    from vdsr_deploy.backends.openvino.runner import model_cache_dir
    from vdsr_deploy.export.onnx import export_onnx

    path = export_onnx(tiny_model, tmp_path / "m.onnx").path
    before = model_cache_dir(tmp_path / "c", path)
    with torch.no_grad():
        next(tiny_model.parameters()).add_(0.1)
    export_onnx(tiny_model, path, overwrite=True)
    assert model_cache_dir(tmp_path / "c", path) != before


def test_interrupt_ends_the_call_in_flight_and_later_calls_run(ov: object, tmp_path: Path) -> None:
    import torch

    from vdsr_deploy.backends.openvino.runner import OpenVinoOptions, OpenVinoRunner
    from vdsr_deploy.export.onnx import export_onnx

    torch.manual_seed(0)
    path = export_onnx(VDSR(depth=20, channels=64).eval(), tmp_path / "big.onnx").path
    big = np.random.default_rng(0).random((1, 1, 256, 256), dtype=np.float32)
    small = big[:, :, :16, :16].copy()
    with OpenVinoRunner(path, OpenVinoOptions(threads=1)) as runner:
        runner.infer(small)
        started = time.perf_counter()
        runner.infer(big)
        full = time.perf_counter() - started
        timer = threading.Timer(full / 10, runner.interrupt)
        timer.start()
        started = time.perf_counter()
        with pytest.raises(VdsrError, match="interrupted"):
            runner.infer(big)
        interrupted = time.perf_counter() - started
        timer.join()
        np.testing.assert_array_equal(runner.infer(small), runner.infer(small))  # later calls run normally
        runner.interrupt()  # with no call in flight: nothing to cancel, the next call runs
        assert runner.infer(small).shape == small.shape
    assert interrupted < full * 0.7, (interrupted, full)


# ----------------------------------------------------------------------------------------
# upscale and validate


def test_upscale_on_openvino_end_to_end(ov: object, tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    source = tmp_path / "a.png"
    pixels = (np.random.default_rng(2).random((23, 31, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(source)
    outputs = {}
    for backend in ("onnxruntime", "openvino"):
        out = tmp_path / f"{backend}.png"
        result = CliRunner().invoke(
            app,
            ["upscale", str(source), "-o", str(out), "-s", "2", "-w", str(tiny_weights), "-b", backend,
             "-p", "fp32", "--device", "cpu", "--tile", "24", "--halo", "8", "--engines-dir",
             str(tmp_path / "eng"), "-q"],
        )
        assert result.exit_code == 0, result.output
        outputs[backend] = np.asarray(Image.open(out), dtype=int)
    assert outputs["openvino"].shape == (46, 62, 3)
    assert np.max(np.abs(outputs["openvino"] - outputs["onnxruntime"])) <= 1
    assert (tmp_path / "eng" / openvino_backend.CACHE_FOLDER).is_dir()
    from vdsr_deploy.runtime.cache import clear_cache

    clear_cache(tmp_path / "eng")  # vdsr cache --clear: OpenVINO's cache is ours, removed too
    assert not (tmp_path / "eng" / openvino_backend.CACHE_FOLDER).exists()


def test_upscale_on_openvino_refuses_cuda_in_one_sentence(ov: object, tmp_path: Path, tiny_weights: Path) -> None:
    source = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((9, 9), dtype=np.uint8)).save(source)
    result = CliRunner().invoke(
        app, ["upscale", str(source), "-o", str(tmp_path / "b.png"), "-w", str(tiny_weights), "-b", "openvino",
              "--device", "cuda", "-q"],
    )
    assert result.exit_code == 1, result.output
    assert "error:" in result.output and ("runs on the CPU" in result.output or "not installed" in result.output)


def test_validate_includes_the_openvino_pairs(ov: object, tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    pixels = (np.random.default_rng(4).random((21, 19, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    result = CliRunner().invoke(
        app,
        ["validate", str(folder), "-w", str(tiny_weights), "--tile", "40", "--halo", "4", "--no-edge-cases",
         "--engines-dir", str(tmp_path / "eng"), "-r", "openvino-fp32", "-r", "openvino-int8", "-r",
         "openvino-bf16", "-o", str(tmp_path / "out")],
        terminal_width=200,
    )
    text = " ".join(result.output.split())
    assert "openvino-fp32: passed" in text and "openvino-int8: passed" in text, result.output
    if environment.cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        assert "openvino-bf16: passed" in text
    else:
        assert "openvino-bf16: skipped" in text
    assert result.exit_code == 0, result.output


def test_bench_lists_the_openvino_paths(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vdsr_deploy.bench import config

    monkeypatch.setattr(config.openvino, "installed", lambda: True)
    monkeypatch.setattr(config, "cpu_flags", lambda: frozenset({"avx2"}))
    labels = [s.name for s in config.cpu_path_settings(256)]
    assert labels[0] == config.CPU_BASELINE
    assert {"openvino-fp32", "openvino-int8"} <= set(labels) and "openvino-bf16" not in labels
    monkeypatch.setattr(config, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert "openvino-bf16" in [s.name for s in config.cpu_path_settings(256)]
    monkeypatch.setattr(config.openvino, "installed", lambda: False)
    assert not [s for s in config.cpu_path_settings(256) if s.backend == "openvino"]
    model = tmp_path / "q.onnx"
    settings, _ = config.sweep(["onnxruntime", "openvino", "torch"], ["fp32"], [64], [1], onnx=model,
                               onnx_precision="int8")
    assert [(s.backend, s.precision, s.onnx) for s in settings] == [
        ("onnxruntime", "int8", model), ("openvino", "int8", model), ("torch", "fp32", None)
    ]


def test_a_given_onnx_runs_on_openvino(ov: object, tiny_model: VDSR, tiny_weights: Path, tmp_path: Path) -> None:
    from vdsr_deploy.export.onnx import export_onnx
    from vdsr_deploy.planes.tiling import TileConfig
    from vdsr_deploy.runtime.prepare import check_artifacts_used, open_runner

    given = export_onnx(tiny_model, tmp_path / "given.onnx").path
    spec = RunnerSpec(backend="openvino", precision="fp32", device="cpu", onnx=given, engines_dir=tmp_path / "eng")
    check_artifacts_used(spec, "openvino")  # an ONNX runtime: the file is used, not refused
    batch = np.random.default_rng(5).random((1, 1, 13, 9), dtype=np.float32)
    with open_runner(spec, tiling=TileConfig(tile=0, halo=0), batch=1) as runner:
        assert runner.info.details["onnx"] == str(given)
        out = runner.infer(batch)
    import torch

    with torch.no_grad():
        expected = tiny_model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)


def test_auto_on_openvino_stays_on_openvino(ov: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``-b openvino`` with ``auto`` (no measuring opener) runs OpenVINO's FP32 and says why
    bf16 was passed over; it never quotes PyTorch's bf16 record for OpenVINO."""
    from vdsr_deploy.runtime.resolve import resolve_spec

    monkeypatch.setattr("vdsr_deploy.precision.decision.cpu_flags", lambda: frozenset({"amx_bf16"}))
    resolved, choice = resolve_spec(RunnerSpec(backend="openvino", device="cpu", precision="auto"), tmp_path)
    assert (resolved.backend, resolved.precision) == ("openvino", "fp32")
    assert any(line.startswith("bf16") for line in choice.passed_over), choice.passed_over
    assert not any("torch-bf16" in line for line in choice.passed_over)


SIGNAL_AFTER_TWO_RUNNERS = """
import os, signal, sys, time
from pathlib import Path
from vdsr_deploy.backends.registry import RunnerSpec
from vdsr_deploy.job.signals import stop_on_signals
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.runtime.prepare import open_runner
import numpy as np

weights, engines = Path(sys.argv[1]), Path(sys.argv[2])
runners = [open_runner(RunnerSpec(backend="openvino", precision=precision, device="cpu", weights=weights,
                                  engines_dir=engines, threads=1), tiling=TileConfig(tile=0, halo=0), batch=1)
           for precision in ("fp32", "int8")]
for runner in runners:  # both open at once, closed first-opened first (as the auto timing does)
    runner.__enter__()
    runner.infer(np.zeros((1, 1, 9, 9), np.float32))
for runner in runners:
    runner.__exit__(None, None, None)
del runners, runner
with stop_on_signals() as request:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)
print("stopped cleanly", request.signum)
"""


def test_ctrl_c_after_two_runners_closed_stops_cleanly(ov: object, tiny_weights: Path, tmp_path: Path) -> None:
    """Each OpenVINO Core's CPU plugin swaps the thread's alternate signal stack; two Cores
    destroyed first-made first left a freed stack installed and Ctrl-C crashed the process
    (exit -11). The runners share one Core now."""
    import subprocess

    from vdsr_deploy.backends.openvino.runner import shared_core

    assert shared_core() is shared_core()
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_TWO_RUNNERS, str(tiny_weights), str(tmp_path / "eng")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "stopped cleanly 2" in done.stdout
