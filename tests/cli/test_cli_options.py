"""Every option of every ``vdsr`` command, with a good and a bad value (issue 27, kind 6).

The meta-test walks the Typer app and fails on any option that has no bad value in
:data:`BAD` and no good value in :data:`GOOD` (or, where a good value needs hardware or a
service this CPU test run does not have, a line in :data:`GOOD_ELSEWHERE` naming the test
file that gives one). A bad value must end in exit 1 or 2 with a short message naming the
option or the value, never a traceback; the good runs must succeed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.cli import app
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights

TESTS = Path(__file__).resolve().parents[1]

RECIPE = (
    'name = "tiny"\ndepth = 3\nchannels = 4\noptimizer = "adam"\nlr = 1e-3\nweight_decay = 0.0\n'
    'schedule = "cosine"\nclip = "none"\nprecision = "fp32"\npatch_size = 15\nbatch_size = 4\n'
    'loss = "l1"\niterations = 2\nlog_every = 1\nvalidate_every = 2\ncheckpoint_every = 2\n'
)


def all_options() -> list[tuple[str, str]]:
    """``(command, first option name)`` of every option of every command of the app."""
    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if param.opts[0].startswith("-"):
                found.append((name, next(o for o in param.opts if o.startswith("--"))))
    return found


# ---- files the runs use: {name} in an argument is replaced by its path --------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("options")
    import torch

    torch.manual_seed(0)
    weights = save_weights(VDSR(depth=3, channels=4).eval(), root / "tiny.safetensors")
    rng = np.random.default_rng(27)
    images = root / "images"
    images.mkdir()
    Image.fromarray((rng.random((23, 29, 3)) * 255).astype(np.uint8)).save(images / "a.png")
    hr = root / "hr"
    hr.mkdir()
    Image.fromarray((rng.random((49, 53, 3)) * 255).astype(np.uint8)).save(hr / "b.png")
    recipe = root / "tiny.toml"
    recipe.write_text(RECIPE)
    not_an_image = root / "notes.txt"
    not_an_image.write_text("not weights, not an image")
    return {
        "weights": weights,
        "images": images,
        "image": images / "a.png",
        "hr": hr,
        "recipe": recipe,
        "text": not_an_image,
        "missing": root / "missing" / "nothing.bin",
        "root": root,
    }


def invoke(args: list[str], files: dict[str, Path], out: Path) -> tuple[int, str, BaseException | None]:
    names = {**{k: str(v) for k, v in files.items()}, "out": str(out)}
    filled = [a.format(**names) for a in args]
    result = CliRunner().invoke(app, filled, env={"COLUMNS": "200", "TERM": "dumb"})
    return result.exit_code, result.output, result.exception


# ---- good values: every run must succeed ------------------------------------------------

UPSCALE = ["upscale", "{image}", "-w", "{weights}", "--quiet"]
GOOD: dict[str, list[str]] = {
    "upscale torch, every pipeline option": [
        *UPSCALE, "-o", "{out}/o", "--backend", "torch", "--device", "cpu", "--precision", "fp32",
        "--engines-dir", "{out}/e", "--tile", "16", "--halo", "4", "--batch", "3", "--format", "png",
        "--overwrite", "--threads", "1", "--max-pixels", "100000", "--memory-mb", "64",
        "--quality", "90", "--jobs", "1:1", "--report", "{out}/r.json", "--ensemble", "--scale", "3",
    ],
    "upscale onnxruntime, inexact halo, auto tile": [
        *UPSCALE, "-o", "{out}/o", "-b", "onnxruntime", "--provider", "cpu", "-p", "fp32", "--engines-dir",
        "{out}/e", "--tile", "auto", "--halo", "2", "--inexact-halo", "-f", "jpg", "--jobs", "2:1", "-s", "2.5",
    ],
    "upscale with an exported ONNX": [
        *UPSCALE, "-o", "{out}/o", "-b", "onnxruntime", "--onnx", "{out}/x/model.onnx", "--tile", "0",
    ],
    "export fp32 and fp16": ["export", "--output-dir", "{out}/x", "-w", "{weights}", "-p", "fp32", "-p", "fp16",
                             "--overwrite"],
    "export a Triton repository": [
        "export", "-w", "{weights}", "--triton", "{out}/triton", "--tile", "32", "--halo", "4", "--batch", "2",
        "--engines-dir", "{out}/e",
    ],
    "info --json": ["info", "--json"],
    "cache listed as JSON, then cleared": ["cache", "--engines-dir", "{out}/e", "--json"],
    "cache cleared": ["cache", "--engines-dir", "{out}/cleared", "--clear"],
    "upscale a foreign ONNX knowingly": [
        *UPSCALE, "-o", "{out}/foreign", "-b", "onnxruntime", "--onnx", "{out}/x/model.onnx", "--tile", "0",
        "--foreign-model",
    ],
    "eval every option": [
        "eval", "{hr}", "-s", "2", "-s", "3", "-w", "{weights}", "-b", "torch", "--device", "cpu", "-p", "fp32",
        "--provider", "cpu", "--engines-dir", "{out}/e", "--tile", "0", "--out", "{out}/eval",
        "--threads", "1", "--ensemble",
    ],
    "validate every option": [
        "validate", "{images}", "--hr", "{hr}", "-w", "{weights}", "-r", "onnxruntime-fp32", "-r", "untiled",
        "-s", "2", "--device", "cpu", "--provider", "cpu", "--engines-dir", "{out}/e", "--tile", "16",
        "--halo", "4", "--batch", "3", "--sixteen-bit", "--no-edge-cases", "-o", "{out}/v", "--threads", "1",
        "--ensemble",
    ],
    "validate an ONNX with an inexact halo": [
        "validate", "{images}", "-w", "{weights}", "-r", "onnxruntime-fp32", "--onnx", "{out}/x/model.onnx",
        "--tile", "16", "--halo", "2", "--inexact-halo", "--no-edge-cases",
    ],
    "bench every option": [
        "bench", "-b", "torch", "-p", "fp32", "-t", "16", "--batch", "2", "--halo", "4", "--size", "21x19",
        "--frames", "1", "-s", "2", "-w", "{weights}", "--device", "cpu", "--provider", "cpu",
        "--engines-dir", "{out}/e", "--warmup", "0", "--repeats", "1", "--max-seconds", "5", "--threads", "1",
        "--no-pipeline", "--baseline", "torch-fp32-t16-b2", "--note", "a note", "--ensemble", "-o", "{out}/b",
    ],
    "bench an ONNX, an inexact halo, task PSNR on HR images": [
        "bench", "-b", "onnxruntime", "--onnx", "{out}/x/model.onnx", "-t", "16", "--halo", "2", "--inexact-halo",
        "--size", "20", "--frames", "0", "-w", "{weights}", "--repeats", "1", "--warmup", "0", "--hr", "{hr}",
    ],
    "train every option": [
        "train", "-c", "{recipe}", "--data", "{hr}", "--val", "{hr}", "--out", "{out}/run", "--iterations", "2",
        "--workers", "0", "--device", "cpu", "--init-weights", "{weights}",
    ],
    "train resumes": ["train", "--resume", "--out", "{out}/run", "--iterations", "3", "--device", "cpu"],
}

# good values that need hardware or a service this CPU run lacks: (the test file that gives
# one, or None where none does yet, and why)
NO_GPU = "a TensorRT engine needs TensorRT and a GPU: no good-value test on CPU CI"
GOOD_ELSEWHERE: dict[tuple[str, str], tuple[str | None, str]] = {
    ("upscale", "--engine"): (None, NO_GPU),
    **{
        ("upscale", option): ("cli/test_video_cli.py", "needs a video clip and PyAV")
        for option in ("--codec", "--crf", "--preset", "--encoder-option", "--frames", "--segment-seconds")
    },
    ("upscale", "--cluster"): ("cluster/test_cluster.py", "starts Ray"),
    ("upscale", "--actors"): ("cluster/test_cluster.py", "with --cluster only"),
    ("upscale", "--retries"): ("cluster/test_cluster.py", "with --cluster only"),
    ("export", "--calibration"): ("export/test_int8.py", "INT8 calibration takes tens of seconds"),
    ("export", "--engine"): (None, NO_GPU),
    ("bench", "--cpu-paths"): ("export/test_int8.py", "builds the INT8 model"),
    ("train", "--time-budget"): ("cli/test_cli.py", "measures step times"),
    ("validate", "--engine"): (None, NO_GPU),
    **{
        ("build", option): (None, NO_GPU)
        for option in (
            "--onnx", "--weights", "--precision", "--engines-dir", "--tile", "--halo", "--batch", "--max-side",
            "--contexts", "--workspace", "--opt-level", "--gpu", "--rebuild", "--json",
        )
    },
}  # fmt: skip

# ---- bad values: (arguments, what the one-line error must say) --------------------------

UP = [*UPSCALE, "-o", "{out}/o", "-b", "torch", "--halo", "4", "--tile", "16"]
EXPORT = ["export", "-o", "{out}/x", "-w", "{weights}", "-p", "fp32"]
BUILD = ["build", "-w", "{weights}"]
EVAL = ["eval", "{hr}", "-w", "{weights}", "-s", "2"]
TRAIN = ["train", "-c", "{recipe}", "--data", "{hr}", "--out", "{out}/run"]
VALIDATE = ["validate", "{images}", "-w", "{weights}", "-r", "onnxruntime-fp32", "--halo", "4", "--tile", "16"]
BENCH = ["bench", "-w", "{weights}", "-b", "torch", "--size", "20", "--repeats", "1", "--halo", "4", "-t", "16"]

BAD: dict[tuple[str, str], tuple[list[str], str]] = {
    ("upscale", "--output"): ([*UPSCALE, "-b", "torch", "--output", "{text}/x"], "is a file, expected a folder"),
    ("upscale", "--scale"): ([*UP, "--scale", "nan"], "scale: expected a factor > 1, got nan"),
    ("upscale", "--weights"): ([*UP, "--weights", "{text}"], "notes.txt"),
    ("upscale", "--backend"): ([*UP, "--backend", "onnx"], "backend: expected one of"),
    ("upscale", "--device"): ([*UP, "--device", "gpu0"], "device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ("upscale", "--precision"): ([*UP, "--precision", "fp8"], "precision: expected one of"),
    ("upscale", "--provider"): ([*UP, "--provider", "openvino"], "provider: expected one of cpu, cuda, tensorrt"),
    ("upscale", "--onnx"): ([*UP, "--onnx", "{missing}"], "ONNX file not found"),
    ("upscale", "--engine"): ([*UP, "--engine", "{missing}"], "--engine"),
    ("upscale", "--engines-dir"): ([*UP, "-b", "onnxruntime", "--engines-dir", "{text}"], "notes.txt"),
    ("upscale", "--tile"): ([*UP, "--tile", "-3"], "tile"),
    ("upscale", "--halo"): ([*UP, "--halo", "-1"], "--halo -1 is below the network's receptive radius"),
    ("upscale", "--batch"): ([*UP, "--batch", "0"], "batch: expected >= 1, got 0"),
    ("upscale", "--format"): ([*UP, "--format", "gif"], "cannot write format 'gif'"),
    ("upscale", "--overwrite"): ([*UP, "--overwrite", "yes"], "--overwrite takes no value"),
    ("upscale", "--threads"): ([*UP, "--threads", "-2"], "threads: expected >= 0"),
    ("upscale", "--max-pixels"): ([*UP, "--max-pixels", "0"], "max_pixels: expected >= 1, got 0"),
    ("upscale", "--memory-mb"): ([*UP, "--memory-mb", "8"], "memory_mb: expected >= 16, got 8"),
    ("upscale", "--quality"): ([*UP, "--quality", "101"], "quality: expected 1..100, got 101"),
    ("upscale", "--jobs"): ([*UP, "--jobs", "4"], "--jobs: expected LOAD:SAVE with both >= 1, got '4'"),
    ("upscale", "--report"): ([*UP, "--report", "{text}/r.json"], "cannot write the report"),
    ("upscale", "--quiet"): ([*UP, "--quiet", "on"], "--quiet takes no value"),
    ("upscale", "--cluster"): ([*UP, "--cluster", "not an address"], "cannot reach the Ray cluster at not an address"),
    ("upscale", "--actors"): ([*UP, "--actors", "3"], "--actors: applies with --cluster only"),
    ("upscale", "--retries"): ([*UP, "--retries", "-1"], "--retries: expected >= 0, got -1"),
    ("upscale", "--ensemble"): ([*UP, "--ensemble", "1"], "--ensemble takes no value"),
    ("upscale", "--inexact-halo"): ([*UP, "--inexact-halo", "true"], "--inexact-halo takes no value"),
    ("export", "--output-dir"): ([*EXPORT, "--output-dir", "{text}"], "notes.txt"),
    ("export", "--weights"): ([*EXPORT, "--weights", "{missing}"], "weights file not found"),
    ("export", "--precision"): ([*EXPORT, "--precision", "bf16"], "precision: expected one of fp32, fp16, int8"),
    ("export", "--calibration"): ([*EXPORT, "--calibration", "{images}"], "--calibration: applies to -p int8 only"),
    ("export", "--overwrite"): ([*EXPORT, "--overwrite", "no"], "--overwrite takes no value"),
    ("export", "--triton"): ([*EXPORT, "--triton", "{text}"], "notes.txt"),
    ("export", "--tile"): ([*EXPORT, "--tile", "-7"], "--tile: applies with --triton DIR only"),
    ("export", "--halo"): ([*EXPORT, "--halo", "3"], "--halo: applies with --triton DIR only"),
    ("export", "--batch"): ([*EXPORT, "--batch", "0"], "--batch: applies with --triton DIR only"),
    ("export", "--engine"): ([*EXPORT, "--engine", "{missing}"], "--engine: applies with --triton DIR only"),
    ("export", "--engines-dir"): ([*EXPORT, "--engines-dir", "{out}/e"], "--engines-dir: applies with --triton"),
    ("build", "--onnx"): ([*BUILD, "--onnx", "{missing}", "--gpu", "-1"], "--gpu"),
    ("build", "--weights"): ([*BUILD, "--weights", "{missing}", "--tile", "5"], "tile"),
    ("build", "--precision"): ([*BUILD, "--precision", "int8"], "precision: expected one of"),
    ("build", "--engines-dir"): ([*BUILD, "--engines-dir", "{out}/e", "--batch", "0"], "batch: expected >= 1"),
    ("build", "--tile"): ([*BUILD, "--tile", "30"], "tile: expected > 2 * halo = 40 so each tile keeps a core, got 30"),
    ("build", "--halo"): ([*BUILD, "--halo", "-1"], "halo: expected >= 0, got -1"),
    ("build", "--batch"): ([*BUILD, "--batch", "0"], "batch: expected >= 1, got 0"),
    ("build", "--max-side"): ([*BUILD, "--max-side", "640"], "--max-side: applies with --tile 0 only"),
    ("build", "--contexts"): ([*BUILD, "--contexts", "9"], "contexts: expected 1..8, got 9"),
    ("build", "--workspace"): ([*BUILD, "--workspace", "0"], "workspace_bytes: expected >= 1048576"),
    ("build", "--opt-level"): ([*BUILD, "--opt-level", "6"], "optimization_level: expected 0..5, got 6"),
    ("build", "--gpu"): ([*BUILD, "--gpu", "-1"], "--gpu: expected a CUDA device index >= 0, got -1"),
    ("build", "--rebuild"): ([*BUILD, "--rebuild", "true"], "--rebuild takes no value"),
    ("build", "--json"): ([*BUILD, "--json", "false"], "--json takes no value"),
    ("info", "--json"): (["info", "--json", "yes"], "--json takes no value"),
    ("eval", "--scale"): ([*EVAL, "--scale", "1"], "scale: expected a factor > 1, got 1"),
    ("eval", "--weights"): ([*EVAL, "--weights", "{missing}"], "weights file not found"),
    ("eval", "--backend"): ([*EVAL, "--backend", "onnx"], "backend: expected one of"),
    ("eval", "--device"): ([*EVAL, "--device", "cuda:x"], "device: expected auto, cpu, cuda or cuda:N"),
    ("eval", "--precision"): ([*EVAL, "--precision", "half"], "precision: expected one of"),
    ("eval", "--provider"): ([*EVAL, "--provider", "gpu"], "provider: expected one of cpu, cuda, tensorrt, got 'gpu'"),
    ("eval", "--engines-dir"): ([*EVAL, "-b", "onnxruntime", "--engines-dir", "{text}"], "notes.txt"),
    ("eval", "--tile"): ([*EVAL, "--tile", "-1"], "tile: expected 0 (whole image) or > 2 * halo, got -1"),
    ("eval", "--out"): ([*EVAL, "--out", "{text}/e.json"], "notes.txt"),
    ("eval", "--threads"): ([*EVAL, "--threads", "-1"], "threads: expected >= 0"),
    ("eval", "--ensemble"): ([*EVAL, "--ensemble", "off"], "--ensemble takes no value"),
    ("train", "--config"): ([*TRAIN, "--config", "nosuchrecipe"], "no such config file or built-in recipe"),
    ("train", "--data"): ([*TRAIN, "--data", "{missing}"], "not a folder (it does not exist)"),
    ("train", "--val"): ([*TRAIN, "--val", "{text}"], "notes.txt: not a folder"),
    ("train", "--out"): ([*TRAIN, "--out", "{text}"], "notes.txt"),
    ("train", "--resume"): ([*TRAIN, "--resume", "true"], "--resume takes no value"),
    ("train", "--init-weights"): ([*TRAIN, "--init-weights", "{missing}"], "weights file not found"),
    ("train", "--iterations"): ([*TRAIN, "--iterations", "0"], "iterations: expected >= 1, got 0"),
    ("train", "--time-budget"): ([*TRAIN, "--time-budget", "nan"], "time budget: expected a finite number"),
    ("train", "--workers"): ([*TRAIN, "--workers", "-1"], "data workers: expected >= 0, got -1"),
    ("train", "--device"): ([*TRAIN, "--device", "tpu"], "device: expected"),
    ("validate", "--hr"): ([*VALIDATE, "--hr", "{missing}"], "not a folder (it does not exist)"),
    ("validate", "--weights"): ([*VALIDATE, "--weights", "{missing}"], "weights file not found"),
    ("validate", "--runtime"): ([*VALIDATE, "--runtime", "onnx"], "runtime: expected some of"),
    ("validate", "--scale"): ([*VALIDATE, "--scale", "0.5"], "scale: expected a factor > 1, got 0.5"),
    ("validate", "--device"): ([*VALIDATE, "--device", "cuda:"], "device: expected"),
    ("validate", "--provider"): ([*VALIDATE, "--provider", "rocm"], "provider: expected one of cpu, cuda, tensorrt"),
    ("validate", "--onnx"): ([*VALIDATE, "--onnx", "{text}"], "notes.txt"),
    ("validate", "--engine"): ([*VALIDATE, "--engine", "{missing}"], "engine file not found"),
    ("validate", "--engines-dir"): ([*VALIDATE, "--engines-dir", "{text}"], "notes.txt"),
    ("validate", "--tile"): ([*VALIDATE, "--tile", "8"], "expected > 2 * halo = 8 so each tile keeps a core"),
    ("validate", "--halo"): ([*VALIDATE, "--halo", "1"], "--halo 1 is below the network's receptive radius"),
    ("validate", "--batch"): ([*VALIDATE, "--batch", "-1"], "batch: expected >= 1, got -1"),
    ("validate", "--sixteen-bit"): ([*VALIDATE, "--sixteen-bit", "yes"], "--sixteen-bit takes no value"),
    ("validate", "--edge-cases"): ([*VALIDATE, "--edge-cases", "no"], "--edge-cases takes no value"),
    ("validate", "--out"): ([*VALIDATE, "--no-edge-cases", "--out", "{text}"], "notes.txt"),
    ("validate", "--threads"): ([*VALIDATE, "--threads", "-4"], "threads: expected >= 0"),
    ("validate", "--ensemble"): ([*VALIDATE, "--ensemble", "1"], "--ensemble takes no value"),
    ("validate", "--inexact-halo"): ([*VALIDATE, "--inexact-halo", "0"], "--inexact-halo takes no value"),
    ("bench", "--backend"): ([*BENCH, "--backend", "auto"], "backend: expected one of"),
    ("bench", "--precision"): ([*BENCH, "--precision", "fp64"], "fp64"),
    ("bench", "--tile"): ([*BENCH, "--tile", "-5"], "tile: expected 0 (whole image) or > 2 * halo, got -5"),
    ("bench", "--batch"): ([*BENCH, "--batch", "0"], "batch: expected >= 1, got 0"),
    ("bench", "--halo"): ([*BENCH, "--halo", "2"], "--halo 2 is below the network's receptive radius"),
    ("bench", "--size"): ([*BENCH, "--size", "20x"], "--size: expected HxW or N like 256x256, got '20x'"),
    ("bench", "--frames"): ([*BENCH, "--frames", "-1"], "frames: expected >= 0, got -1"),
    ("bench", "--scale"): ([*BENCH, "--scale", "inf"], "scale: expected a factor > 1, got inf"),
    ("bench", "--weights"): ([*BENCH, "--weights", "{text}"], "notes.txt"),
    ("bench", "--device"): ([*BENCH, "--device", "cuda0"], "device: expected auto, cpu, cuda or cuda:N"),
    ("bench", "--provider"): ([*BENCH, "--provider", "CPU"], "provider: expected one of cpu, cuda, tensorrt"),
    ("bench", "--onnx"): ([*BENCH, "--onnx", "{missing}"], "ONNX file not found"),
    ("bench", "--engines-dir"): ([*BENCH, "-b", "onnxruntime", "--engines-dir", "{text}"], "notes.txt"),
    ("upscale", "--foreign-model"): ([*UP, "--foreign-model", "yes"], "--foreign-model takes no value"),
    **{
        ("upscale", option): ([*UP, option, value], f"{option}: applies to a video input only")
        for option, value in (
            ("--codec", "ffv1"), ("--crf", "18"), ("--preset", "slow"), ("--encoder-option", "g=12"),
            ("--frames", "rgb"), ("--segment-seconds", "2"),
        )
    },
    ("cache", "--clear"): (["cache", "--clear", "yes"], "--clear takes no value"),
    ("cache", "--json"): (["cache", "--json", "1"], "--json takes no value"),
    ("cache", "--engines-dir"): (["cache", "--engines-dir", "{text}"], "expected a cache folder, got a file"),
    ("bench", "--warmup"): ([*BENCH, "--warmup", "-1"], "expected warmup >= 0"),
    ("bench", "--repeats"): ([*BENCH, "--repeats", "0"], "min_repeats <= repeats"),
    ("bench", "--max-seconds"): ([*BENCH, "--max-seconds", "nan"], "max_seconds: expected > 0, got nan"),
    ("bench", "--threads"): ([*BENCH, "--threads", "-1"], "threads: expected >= 0"),
    ("bench", "--pipeline"): ([*BENCH, "--pipeline", "true"], "--pipeline takes no value"),
    ("bench", "--baseline"): ([*BENCH, "--baseline", "nosuch"], "baseline: expected one of"),
    ("bench", "--note"): ([*BENCH, "--note"], "'--note' requires an argument"),
    ("bench", "--ensemble"): ([*BENCH, "--ensemble", "yes"], "--ensemble takes no value"),
    ("bench", "--out"): ([*BENCH, "--out", "{text}"], "notes.txt"),
    ("bench", "--cpu-paths"): ([*BENCH, "--cpu-paths", "true"], "--cpu-paths takes no value"),
    ("bench", "--hr"): ([*BENCH, "--hr", "{missing}"], "not a folder (it does not exist)"),
    ("bench", "--inexact-halo"): ([*BENCH, "--inexact-halo", "yes"], "--inexact-halo takes no value"),
}  # fmt: skip


def test_every_option_of_every_command_has_a_good_and_a_bad_value() -> None:
    options = all_options()
    assert len(options) > 100  # the walk found the app's options, not an empty group
    in_good_runs = {(args[0], arg) for args in GOOD.values() for arg in args if arg.startswith("--")}
    short_to_long = {
        (name, short): long
        for name, command in typer.main.get_command(app).commands.items()  # type: ignore[attr-defined]
        for param in command.params
        for long in [next((o for o in param.opts if o.startswith("--")), "")]
        for short in (*param.opts, *param.secondary_opts)
    }
    in_good_runs |= {(args[0], short_to_long.get((args[0], a), a)) for args in GOOD.values() for a in args}
    no_bad = [o for o in options if o not in BAD]
    no_good = [o for o in options if o not in in_good_runs and o not in GOOD_ELSEWHERE]
    assert not no_bad, f"options with no bad-value test: {no_bad}"
    assert not no_good, f"options with no good-value test: {no_good}"
    assert not set(BAD) - set(options), "BAD names an option the app does not have"
    for (command, option), (test_file, _) in GOOD_ELSEWHERE.items():
        assert (command, option) in options
        if test_file is not None:
            assert option in (TESTS / test_file).read_text(), f"{test_file} never names {option}"


@pytest.mark.parametrize("key", sorted(BAD), ids=lambda key: f"{key[0]} {key[1]}")
def test_a_bad_value_is_one_clear_line(
    key: tuple[str, str], files: dict[str, Path], tmp_path: Path
) -> None:
    args, expected = BAD[key]
    code, output, exception = invoke(args, files, tmp_path)
    assert code in (1, 2), (code, output)
    assert exception is None or isinstance(exception, SystemExit), repr(exception)
    assert "Traceback" not in output
    flat = re.sub(r"\s*[│╭╰─╮╯]+\s*", " ", output)  # Typer's usage box, flattened
    assert expected in " ".join(flat.split()), output
    if code == 1:
        errors = [line for line in output.splitlines() if line.startswith("error")]
        assert len(errors) == 1, output


@pytest.fixture(scope="module")
def good_runs(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str]]:
    out = tmp_path_factory.mktemp("good")
    results: dict[str, tuple[int, str]] = {}
    # an ONNX for the runs that take one: the export run makes it
    export = invoke(["export", "-o", "{out}/x", "-w", "{weights}", "-p", "fp32"], files, out)
    assert export[0] == 0, export[1]
    (exported,) = (out / "x").glob("*.onnx")
    exported.rename(out / "x" / "model.onnx")
    for name, args in GOOD.items():
        code, output, _ = invoke(args, files, out)
        results[name] = (code, output)
    results["__out__"] = (0, str(out))
    return results


@pytest.mark.parametrize("name", list(GOOD))
def test_a_good_value_runs(name: str, good_runs: dict[str, tuple[int, str]]) -> None:
    code, output = good_runs[name]
    assert code == 0, output
    assert "Traceback" not in output


def test_the_good_runs_did_what_their_options_say(good_runs: dict[str, tuple[int, str]]) -> None:
    out = Path(good_runs["__out__"][1])
    report = json.loads((out / "r.json").read_text())
    assert report["exit_code"] == 0
    with Image.open(out / "o" / "a.png") as image:  # --scale 3 then 2.5 on 29x23; --format jpg next
        assert image.size == (87, 69)
    assert (out / "o" / "a.jpg").is_file()
    assert (out / "x" / "model.onnx").is_file() and (out / "triton").is_dir()
    assert any((out / "eval").glob("*.json")) and (out / "v").is_dir() and (out / "b" / "bench.json").is_file()
    assert json.loads((out / "b" / "bench.json").read_text())["note"] == "a note"
    assert (out / "run" / "last.safetensors").is_file()
