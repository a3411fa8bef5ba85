from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.cli import app
from vdsr_deploy.weights import load_weights


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


def test_user_errors_are_one_sentence(tmp_path: Path, tiny_weights: Path) -> None:
    source = make_image(tmp_path / "a.png", "RGB")
    code, text = invoke(
        "upscale", str(source), "-o", str(tmp_path / "o"), "-w", str(tmp_path / "nope.safetensors")
    )
    assert (
        code == 1 and "nope.safetensors: weights file not found" in text and "Traceback" not in text
    )
    code, text = invoke(
        "upscale", str(source), "-o", str(tmp_path / "o"), "-s", "0.5", "-w", str(tiny_weights)
    )
    assert code == 1 and "scale: expected a factor > 1" in text
    code, text = invoke(
        "upscale", str(source), "-o", str(tmp_path / "o"), "--tile", "30", "-w", str(tiny_weights)
    )
    assert code == 1 and "tile: expected > 2 * halo" in text
    code, text = invoke(
        "upscale",
        str(source),
        "-o",
        str(tmp_path / "o"),
        "--backend",
        "tensorrt",
        "--device",
        "cpu",
        "-w",
        str(tiny_weights),
        "--engines-dir",
        str(tmp_path / "eng"),
    )
    assert code == 1 and "Traceback" not in text and text.count("\n") <= 3


def test_export_command(tmp_path: Path, tiny_weights: Path) -> None:
    code, text = invoke("export", "-o", str(tmp_path), "-w", str(tiny_weights))
    assert code == 0, text
    assert (
        len(list(tmp_path.glob("*-fp32.onnx"))) == 1
        and len(list(tmp_path.glob("*-fp16.onnx"))) == 1
    )
    code, text = invoke("export", "-o", str(tmp_path), "-w", str(tiny_weights))
    assert code == 1 and "already exists" in text


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
    assert code == 1 and "--data" in text
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


def test_train_time_budget_sets_the_iterations(tmp_path: Path) -> None:
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
    assert "time budget 2 s on cpu" in text and "iterations" in text
    _, info = load_weights(run / "final.safetensors")
    fitted = info.training["recipe"]["iterations"]
    assert fitted > 1 and info.training["iterations"] == fitted
    code, text = invoke(
        "train", "-c", str(recipe), "--data", str(hr), "--out", str(run), "--time-budget", "2", "--resume"
    )
    assert code == 1 and "drop --iterations/--resume" in text
