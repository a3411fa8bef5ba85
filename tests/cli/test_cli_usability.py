"""What a newcomer reads: help text, flags, halo checks, training output (issue 15 part A)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.cli import app, reflow_help

CALLBACKS = {(c.name or c.callback.__name__): c.callback for c in app.registered_commands if c.callback}
COMMANDS = tuple(CALLBACKS)


def invoke(*args: str, columns: int = 80) -> tuple[int, str]:
    # the runner pins help to 80 columns whatever COLUMNS says; terminal_width is the terminal's
    result = CliRunner().invoke(
        app, list(args), env={"COLUMNS": str(columns), "TERM": "dumb"}, terminal_width=columns - 2
    )
    return result.exit_code, result.output  # stdout and stderr, interleaved


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_no_bool_metavar_and_keeps_sentences_whole(command: str) -> None:
    assert {"upscale", "eval", "train", "validate", "bench"} <= set(COMMANDS)
    code, text = invoke(command, "--help", columns=400)
    assert code == 0, text
    assert "<bool>" not in text
    doc = inspect.getdoc(CALLBACKS[command]) or ""
    flat = " ".join(line.strip("│ ").strip() for line in text.splitlines())
    for paragraph in reflow_help(doc).split("\n\n"):
        # at 400 columns each docstring paragraph is one line: no break where the source line ended
        assert any(paragraph in line for line in text.splitlines()), (paragraph, flat)
    code, narrow = invoke(command, "--help", columns=80)
    assert code == 0 and "<bool>" not in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80


def test_train_help_lists_every_builtin_recipe() -> None:
    _, text = invoke("train", "--help", columns=200)
    for name in ("paper", "fast", "ft_l1", "gpu_l1"):
        assert re.search(rf"\b{name}\b", text), name


def test_a_flag_given_a_value_is_a_clear_error(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(image)
    code, text = invoke("upscale", str(image), "-o", str(tmp_path / "out"), "--overwrite", "true")
    assert code == 2 and "--overwrite takes no value" in text and "Traceback" not in text
    assert not (tmp_path / "out").exists()


def test_halo_below_the_receptive_radius_is_refused_unless_accepted(tmp_path: Path, tiny_weights: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (30, 26)).save(image)
    common = [str(image), "-w", str(tiny_weights), "--tile", "16", "--quiet", "--backend", "torch"]
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "o1"), "--halo", "2")  # depth 4: radius 4
    assert code == 2 and "--halo 2 is below the network's receptive radius (4 px)" in text
    assert "--inexact-halo" in text and not (tmp_path / "o1").exists()
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "o2"), "--halo", "2", "--inexact-halo")
    assert code == 0 and "warning" in text, text
    code, text = invoke("upscale", *common, "-o", str(tmp_path / "o3"), "--halo", "4")
    assert code == 0 and "warning" not in text, text
    assert "output: " in text and "o3" in text.split("output: ")[1]  # the summary says where it went
    # the shipped weights: radius 20; a tile is given (a small image runs whole, where any halo is exact)
    code, text = invoke("upscale", str(image), "-o", str(tmp_path / "o4"), "--halo", "8", "--tile", "256")
    assert code == 2 and "receptive radius (20 px)" in text


def test_train_progress_resume_and_weights_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # short relative paths, as a user types them
    hr = Path("hr")
    hr.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((49, 53, 3)) * 255).astype(np.uint8)).save(hr / "a.png")
    recipe = Path("tiny.toml")
    recipe.write_text(
        'name = "tiny"\ndepth = 3\nchannels = 4\noptimizer = "adam"\nlr = 1e-3\nweight_decay = 0.0\n'
        'schedule = "cosine"\nclip = "none"\nprecision = "fp32"\npatch_size = 15\nbatch_size = 4\n'
        'loss = "l1"\niterations = 4\nlog_every = 2\nvalidate_every = 2\ncheckpoint_every = 2\n'
    )
    run = Path("run")
    code, text = invoke("train", "-c", str(recipe), "--data", str(hr), "--val", str(hr), "--out", str(run),
                        "--device", "cpu")  # fmt: skip
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("preparing data: 1 image") and lines[1].startswith("prepared 3 training pairs")
    assert "training from iteration 0 of 4" in text
    assert sum(1 for line in lines if re.match(r"step [24]/4 loss", line)) == 2  # not a terminal: a line each
    assert "{" not in text and "best validation PSNR" in text and "x2 " in text
    assert str(run / "final.safetensors") in text
    assert max(len(line) for line in lines) <= 80

    # resume: nothing but --resume and --out; another --iterations extends with a warning
    code, text = invoke("train", "--resume", "--out", str(run), "--iterations", "6", "--device", "cpu")
    assert code == 0, text
    assert "warning: --iterations 6 changes the run" in text and "resuming at iteration 4 of 6" in text
    code, text = invoke("train", "--resume", "--out", str(run), "-c", "fast")
    assert code == 1 and "--config differs from the run being resumed" in text and "name is 'tiny' there" in text

    # the checkpoint works as --weights
    out = Path("up.png")
    code, text = invoke("upscale", str(hr / "a.png"), "-o", str(out), "-w", str(run / "last.safetensors"),
                        "--tile", "0", "--backend", "torch", "--quiet")  # fmt: skip
    assert code == 0 and out.is_file(), text


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_validate_table_is_readable_at_80_columns(tmp_path: Path, tiny_weights: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray((np.random.default_rng(1).random((21, 19, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    code, text = invoke(
        "validate", str(folder), "-w", str(tiny_weights), "--tile", "16", "--halo", "4", "--no-edge-cases",
        "-r", "onnxruntime-fp32", "-r", "untiled", "-r", "tensorrt-fp16", "--engines-dir", str(tmp_path / "e"),
        "--out", str(tmp_path / "report"),
    )  # fmt: skip
    assert code == 0, text
    lines = table_lines(text)
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # no cell cut short
    row = next(line for line in lines if line.lstrip().startswith("onnxruntime-fp32") and "%" in line)
    assert "passed" in row and "%" in row
    assert any(line.split()[:2] == ["tensorrt-fp16", "skipped"] for line in lines)
    assert "'vdsr-deploy[tensorrt-cu13]'" in text  # a reason's [extra] is text, not rich markup
    assert "weights digest" in text and "file sha256" in text
    markdown = (tmp_path / "report" / "validate.md").read_text()
    assert "weights digest `" in markdown and str(tmp_path) not in markdown  # no machine paths
    assert str(tmp_path) not in (tmp_path / "report" / "validate.json").read_text()


def test_bench_table_is_readable_at_80_columns(tmp_path: Path, tiny_weights: Path) -> None:
    from vdsr_deploy.bench import fmt_overhead

    assert (fmt_overhead(0.83), fmt_overhead(1.05), fmt_overhead(1.0)) == ("-17%", "+5%", "+0%")
    code, text = invoke(
        "bench", "-b", "torch", "-b", "onnxruntime", "-b", "tensorrt", "-t", "0", "--batch", "1",
        "--size", "24x20", "--warmup", "0", "--repeats", "1", "-w", str(tiny_weights),
        "--engines-dir", str(tmp_path / "e"), "--out", str(tmp_path / "b"),
    )  # fmt: skip
    assert code == 0, text
    lines = table_lines(text)
    assert max(len(line) for line in lines) <= 80 and "…" not in text
    rows = {line.split()[0]: line.split() for line in lines if line.lstrip().startswith(("torch-", "onnxruntime-"))}
    assert rows["torch-fp32-tfull-b1"][-1] == "1.00x"  # the first setting is the baseline by default
    assert re.fullmatch(r"\d+\.\d\dx", rows["onnxruntime-fp32-tfull-b1"][-1])
    assert re.fullmatch(r"[+-]\d+%", rows["torch-fp32-tfull-b1"][-2])
    markdown = (tmp_path / "b" / "bench.md").read_text()
    assert "- vs baseline: throughput relative to `torch-fp32-tfull-b1`" in markdown
    assert str(tmp_path) not in markdown and str(tmp_path) not in (tmp_path / "b" / "bench.json").read_text()


def test_thin_images_get_a_readable_heatmap_panel(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from vdsr_deploy.parity.plots import difference_heatmap, panel_aspect

    assert panel_aspect((2, 150)) == "auto" and panel_aspect((150, 2)) == "auto" and panel_aspect((1, 1)) == "equal"
    assert panel_aspect((141, 131)) == "equal"
    thin = np.abs(np.random.default_rng(0).normal(size=(2, 150))).astype(np.float32)
    path = difference_heatmap([("row", thin), ("square", np.zeros((20, 20), np.float32))], tmp_path / "h.png")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    # the thin panel's colours fill a real area, not a 2-pixel sliver: many rows are not white
    left = pixels[:, : pixels.shape[1] // 2]
    assert int(((left < 200).sum(axis=1) > left.shape[1] // 4).sum()) > 50
