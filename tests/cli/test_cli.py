from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from train.budget import StepTimes
from vdsr_deploy.cli import app
from vdsr_deploy.model.weights import load_weights


def make_image(path: Path, mode: str, size: tuple[int, int] = (37, 29)) -> Path:
    rng = np.random.default_rng(len(mode))
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    data = (rng.random((size[1], size[0], channels)) * 255).astype(np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode=mode).save(path)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


MODES = ("L", "LA", "RGB", "RGBA")


def upscale_folder(tmp_path: Path, weights: Path, backend: str) -> Path:
    inputs = tmp_path / "in"
    if not inputs.exists():
        inputs.mkdir()
        for mode in MODES:
            make_image(inputs / f"{mode}.png", mode)
    out = tmp_path / f"out-{backend}"
    code, text = invoke(
        "upscale",
        str(inputs),
        "-o",
        str(out),
        "-s",
        "2",
        "-w",
        str(weights),
        "--backend",
        backend,
        "--device",
        "cpu",
        "--precision",
        "fp32",  # the reference on both (auto may pick a lossy fast path)
        "--tile",
        "48",
        "--halo",
        "20",
        "--batch",
        "3",
        "--engines-dir",
        str(tmp_path / "eng"),
        "--quiet",
    )
    assert code == 0, text
    return out


def test_upscale_modes_and_backends_agree(tmp_path: Path, tiny_weights: Path) -> None:
    outputs = {
        backend: upscale_folder(tmp_path, tiny_weights, backend)
        for backend in ("torch", "onnxruntime")
    }
    for mode in MODES:
        images = {backend: Image.open(out / f"{mode}.png") for backend, out in outputs.items()}
        assert all(image.mode == mode and image.size == (74, 58) for image in images.values())
        a, b = (np.asarray(image, dtype=int) for image in images.values())
        assert np.max(np.abs(a - b)) <= 1


def test_non_integer_scale_and_single_file_output(tmp_path: Path, tiny_weights: Path) -> None:
    source = make_image(tmp_path / "a.png", "RGB", (31, 23))
    command = ["upscale", str(source), "-o", str(tmp_path / "b.jpg"), "-s", "2.5", "-w", str(tiny_weights)]
    command += ["--backend", "torch", "--device", "cpu", "-q"]
    code, text = invoke(*command)
    assert code == 0, text
    assert Image.open(tmp_path / "b.jpg").size == (78, 58)
    code, text = invoke(*command)
    assert code == 0 and "skipped" in text


def handled_error(*args: str, code: int = 1) -> str:
    """Run the CLI and return its ``error:`` line; fail unless it ended with a clean exit
    ``code`` (1: the work failed; 2: a usage error).

    Under CliRunner an uncaught exception also exits 1 and prints no traceback, so the exit
    code alone cannot tell a handled error from a crash: ``result.exception`` can.
    """
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output  # one sentence, last
    assert "Traceback" not in result.output
    return errors[0]


@pytest.fixture
def tensorrt_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import tensorrt`` fails, as on a machine without it (whatever this machine has)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


TENSORRT_ABSENT = (
    "error: TensorRT is not usable here (not installed): pip install 'vdsr-deploy[tensorrt-cu13]' "
    "for a CUDA 13 driver, or 'vdsr-deploy[tensorrt-cu12]' for a CUDA 12 driver"
)


def test_user_errors_are_one_sentence(tmp_path: Path, tiny_weights: Path) -> None:
    source = str(make_image(tmp_path / "a.png", "RGB"))
    out = ["-o", str(tmp_path / "o"), "--engines-dir", str(tmp_path / "eng"), "--device", "cpu"]
    missing = tmp_path / "nope.safetensors"
    for backend in ("auto", "torch", "onnxruntime"):
        line = handled_error("upscale", source, *out, "-b", backend, "-w", str(missing))
        assert line == f"error: {missing}: weights file not found", backend
        line = handled_error("upscale", source, *out, "-b", backend, "-s", "0.5", "-w", str(tiny_weights), code=2)
        assert line == "error: scale: expected a factor > 1, got 0.5", backend
        line = handled_error("upscale", source, *out, "-b", backend, "--tile", "30", "-w", str(tiny_weights), code=2)
        assert line == "error: tile: expected > 2 * halo = 40 so each tile keeps a core, got 30", backend
    for backend in ("auto", "onnxruntime"):
        nope = tmp_path / "nope.onnx"
        line = handled_error("upscale", source, *out, "-b", backend, "-w", str(tiny_weights), "--onnx", str(nope))
        assert line == f"error: {nope}: ONNX file not found", backend
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a weights file")
    line = handled_error("upscale", source, *out, "-b", "torch", "-w", str(broken))
    assert line.startswith(f"error: {broken}: ")
    assert not (tmp_path / "o").exists()  # nothing written by a command that failed up front


def test_a_file_the_backend_would_not_run_is_refused(tmp_path: Path, tiny_weights: Path) -> None:
    """``--onnx`` with PyTorch, ``--engine`` without TensorRT: refused up front, not ignored."""
    source = str(make_image(tmp_path / "a.png", "RGB"))
    common = ["-o", str(tmp_path / "o"), "-w", str(tiny_weights), "--device", "cpu", "--precision", "fp32"]
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"any file: it is refused before it is read")
    line = handled_error("upscale", source, *common, "--backend", "torch", "--onnx", str(onnx), code=2)
    assert line.startswith(f"error: --onnx {onnx}: the torch backend runs the weights, not an ONNX file")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"")
    for backend in ("torch", "onnxruntime"):
        line = handled_error("upscale", source, *common, "--backend", backend, "--engine", str(engine), code=2)
        assert line.startswith(f"error: --engine {engine}: the {backend} backend does not run TensorRT engines")
    assert not (tmp_path / "o").exists()


def test_tensorrt_absent_is_a_handled_error(tmp_path: Path, tiny_weights: Path, tensorrt_absent: None) -> None:
    source = str(make_image(tmp_path / "a.png", "RGB"))
    common = ["-o", str(tmp_path / "o"), "-w", str(tiny_weights), "--engines-dir", str(tmp_path / "eng")]
    for extra in ([], ["--device", "cpu"], ["--engine", str(tmp_path / "x.engine")], ["--precision", "fp32"]):
        assert handled_error("upscale", source, *common, "--backend", "tensorrt", *extra) == TENSORRT_ABSENT
    assert not (tmp_path / "eng").exists() or not any((tmp_path / "eng").iterdir())  # nothing exported for it


def test_export_command(tmp_path: Path, tiny_weights: Path) -> None:
    code, text = invoke("export", "-o", str(tmp_path), "-w", str(tiny_weights))
    assert code == 0, text
    assert (
        len(list(tmp_path.glob("*-fp32.onnx"))) == 1
        and len(list(tmp_path.glob("*-fp16.onnx"))) == 1
    )
    code, text = invoke("export", "-o", str(tmp_path), "-w", str(tiny_weights))
    assert code == 0 and "fp32; identical file already in place" in text, text
    assert "fp16; identical file already in place" in text


def test_export_after_upscale_finds_the_cached_file_identical(tmp_path: Path, tiny_weights: Path) -> None:
    """The README's order: upscale (caches the FP32 ONNX), then export into the same folder."""
    engines = tmp_path / "eng"
    source = str(make_image(tmp_path / "a.png", "RGB"))
    code, text = invoke(
        "upscale", source, "-o", str(tmp_path / "o"), "-w", str(tiny_weights), "-b", "onnxruntime",
        "-p", "fp32", "--device", "cpu", "--engines-dir", str(engines), "-q",
    )  # fmt: skip
    assert code == 0, text
    (cached,) = engines.glob("*-fp32.onnx")
    before = cached.read_bytes()
    code, text = invoke("export", "-o", str(engines), "-w", str(tiny_weights))
    assert code == 0, text
    assert "fp32; identical file already in place" in text and cached.read_bytes() == before
    assert len(list(engines.glob("*-fp16.onnx"))) == 1  # the FP16 file is written too


def test_eval_command_writes_reports(tmp_path: Path, tiny_weights: Path) -> None:
    folder = tmp_path / "hr"
    folder.mkdir()
    make_image(folder / "x.png", "RGB", (61, 47))
    code, text = invoke(
        "eval",
        str(folder),
        "-s",
        "2",
        "-s",
        "3",
        "-w",
        str(tiny_weights),
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "reports"),
    )
    assert code == 0, text
    report = json.loads((tmp_path / "reports" / "hr.json").read_text())
    assert [s["scale"] for s in report["summaries"]] == [2, 3]
    assert all(np.isfinite(s["psnr"]) for s in report["summaries"])
    assert "| x2 |" in (tmp_path / "reports" / "hr.md").read_text()


def test_info_command() -> None:
    code, text = invoke("info", "--json")
    assert code == 0, text
    data = json.loads(text)
    assert "CPUExecutionProvider" in data["onnxruntime providers"]
    assert "default weights" in data and "tensorrt" in data


def write_tiny_recipe(path: Path, **values: object) -> Path:
    """A 3-layer, 4-channel Adam recipe as a TOML file; ``values`` are TOML literals to add."""
    lines = [
        'name = "tiny"', "depth = 3", "channels = 4", 'optimizer = "adam"', "lr = 1e-3",
        "weight_decay = 0.0", 'schedule = "cosine"', 'clip = "none"', 'precision = "fp32"',
    ]  # fmt: skip
    lines += [f"{key} = {value}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_command_errors_and_tiny_run(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, text = invoke("train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run"))
    assert code == 1 and "no images found" in text and "Traceback" not in text
    code, text = invoke("train", "--out", str(tmp_path / "run"))
    assert code == 2 and "--data" in text  # a usage error
    code, text = invoke(
        "train", "--data", str(tmp_path / "empty"), "--init-weights", str(tmp_path / "nope.safetensors"),
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 1 and "nope.safetensors: weights file not found" in text
    assert text.split("error:")[0].strip() == ""  # no empty progress bar before the error
    hr = tmp_path / "hr"
    hr.mkdir()
    make_image(hr / "a.png", "RGB", (53, 49))
    recipe = write_tiny_recipe(
        tmp_path / "tiny.toml", patch_size=15, batch_size=4, loss='"mean"', iterations=6, log_every=2,
        validate_every=3, checkpoint_every=3,
    )  # fmt: skip
    code, text = invoke("train", "-c", str(recipe), "--data", str(hr), "--val", str(hr), "--out", str(tmp_path / "run"))
    assert code == 0, text
    assert (tmp_path / "run" / "final.safetensors").is_file() and (tmp_path / "run" / "last.safetensors").is_file()


def test_train_time_budget_sets_the_iterations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import train.budget

    # the step time is measured by train.budget (tested there); here a fixed one, so the
    # iteration count does not depend on how busy the machine is
    monkeypatch.setattr(train.budget, "measure_step_times", lambda *a, **k: StepTimes(0.0625, 0.0625))
    hr = tmp_path / "hr"
    hr.mkdir()
    make_image(hr / "a.png", "RGB", (41, 37))
    recipe = write_tiny_recipe(
        tmp_path / "tiny.toml", patch_size=13, batch_size=2, loss='"l1"', iterations=1, log_every=5,
        validate_every=1000, checkpoint_every=1000,
    )  # fmt: skip
    run = tmp_path / "run"
    code, text = invoke(
        "train", "-c", str(recipe), "--data", str(hr), "--out", str(run), "--time-budget", "2", "--device", "cpu"
    )
    assert code == 0, text
    assert "time budget 2 s on cpu: 62.5 ms fp32 per step of 2 -> 28 iterations" in text  # 0.9 * 2 s
    _, info = load_weights(run / "final.safetensors")
    assert info.training["recipe"]["iterations"] == 28 and info.training["iterations"] == 28
    code, text = invoke(
        "train", "-c", str(recipe), "--data", str(hr), "--out", str(run), "--time-budget", "2", "--resume"
    )
    assert code == 2 and "drop --iterations/--resume" in text
