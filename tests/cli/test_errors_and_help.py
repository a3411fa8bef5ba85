"""One error style, help as written (issue 26): usage errors are one ``error:`` line and exit
2, failures of the work exit 1; help and messages show ``[...]`` (pip extras, file names)
instead of losing it to a markup renderer; ``vdsr --version``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy import __version__
from vdsr_deploy.cli import app
from vdsr_deploy.cli.common import USAGE_EXIT

COMMANDS = tuple(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def run(*args: str, columns: int = 80) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args), terminal_width=columns, env={"COLUMNS": str(columns)})
    return result.exit_code, result.output, result.exception


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    Image.new("RGB", (24, 20), (120, 30, 200)).save(path)
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-s", "0"], "error: scale: expected a factor > 1, got 0"),
        (["-s", "abc"], "error: --scale: input should be a valid number"),
        (["--frobnicate"], "error: no such option: --frobnicate"),
        (
            ["-b", "pytorch"],
            "error: backend: expected one of auto, onnxruntime, torch, tensorrt, openvino, got 'pytorch'",
        ),
        (["-p", "fp8"], "error: precision: expected one of auto, fp32, fp16, bf16, int8, got 'fp8'"),
        (["--tile", "big"], "error: --tile: expected a side in pixels, 0 or auto, got 'big'"),
        (["--overwrite", "yes"], "error: --overwrite takes no value"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, image: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "out"
    code, text, exception = run("upscale", str(image), "-o", str(out), "-b", "torch", *args)
    assert code == USAGE_EXIT == 2 and isinstance(exception, SystemExit), text
    line = one_error_line(text)
    assert line.startswith(expected), line
    assert "('" not in line and "╭" not in text and "Usage:" not in text  # words, no tuple, no panel
    assert not out.exists()


def test_unknown_command_and_missing_argument_are_usage_errors() -> None:
    for args, expected in ((["nope"], "error: no such command 'nope'"), (["upscale"], "error: missing argument")):
        code, text, _ = run(*args)
        assert code == 2 and one_error_line(text).startswith(expected), text


def test_a_failure_of_the_work_exits_1(tmp_path: Path, image: Path) -> None:
    missing = tmp_path / "nope.safetensors"
    code, text, _ = run("upscale", str(image), "-o", str(tmp_path / "o"), "-w", str(missing), "-b", "torch")
    assert code == 1 and one_error_line(text) == f"error: {missing}: weights file not found"


def test_version() -> None:
    code, text, _ = run("--version")
    assert code == 0 and text.strip() == f"vdsr-deploy {__version__}"


@pytest.mark.parametrize("command", (None, *COMMANDS))
def test_help_names_values_in_words_and_shows_brackets(command: str | None) -> None:
    """No Python types (``<list[str]>``, ``<bool>``) and every ``[...]`` of an option's help
    (a pip extra such as ``[cluster]``) rendered as written."""
    args = ["--help"] if command is None else [command, "--help"]
    code, text, _ = run(*args, columns=300)
    assert code == 0, text
    assert not re.search(r"<(list|str|int|float|bool|path)", text), text
    assert "{" not in text.split("\n")[0]  # usage line: INPUTS..., not {inputs}...
    flat = " ".join(text.split())
    group = app.registered_commands
    callback = next((c.callback for c in group if (c.name or c.callback.__name__) == command), None)
    helps = [] if callback is None else _option_helps(command or "")
    for help_text in helps:
        for bracketed in re.findall(r"\[[^\]]+\]", help_text):
            assert bracketed in flat, (command, bracketed)


def _option_helps(command: str) -> list[str]:
    import typer.main

    group = typer.main.get_command(app)
    context = group.make_context("vdsr", [command, "--help"], resilient_parsing=True)
    sub = group.get_command(context, command)  # type: ignore[attr-defined]
    return [p.help for p in sub.get_params(context) if getattr(p, "help", None)]


def test_a_bracketed_help_text_exists_to_check() -> None:
    """The help test above checks something: upscale's --cluster help names [cluster]."""
    assert any("[cluster]" in text for text in _option_helps("upscale"))


def test_messages_show_bracketed_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pip extra in a note (export --triton without TensorRT) and file names with brackets
    in the summary of an upscale reach the terminal whole."""
    pytest.importorskip("tritonclient")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    code, text, _ = run("export", "--triton", str(tmp_path / "repo"), "--engines-dir", str(tmp_path / "eng"))
    flat = " ".join(text.split())
    assert code == 0, text
    assert "'vdsr-deploy[tensorrt-cu13]' for a CUDA 13 driver, or 'vdsr-deploy[tensorrt-cu12]'" in flat

    source = tmp_path / "scan[1].png"
    Image.new("RGB", (24, 20)).save(source)
    broken = tmp_path / "in" / "[broken].png"
    broken.parent.mkdir()
    broken.write_bytes(b"not a png")
    Image.new("RGB", (24, 20)).save(tmp_path / "in" / "[ok].png")
    common = ["-b", "torch", "-p", "fp32", "--device", "cpu", "-q", "--tile", "0"]
    code, text, _ = run("upscale", str(source), "-o", str(tmp_path / "o[2].png"), *common, columns=400)
    assert code == 0 and f"output: {tmp_path / 'o[2].png'}" in text, text
    code, text, _ = run("upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out[3]"), *common, columns=400)
    assert code == 1 and "[broken].png" in text and f"output: {tmp_path / 'out[3]' / '[ok].png'}" in text, text
    code, text, _ = run("upscale", str(source), "-o", str(tmp_path / "o[2].png"), *common, columns=400)
    assert code == 0 and f"output: {tmp_path / 'o[2].png'}" in text and "outputs in" not in text, text  # skipped


def test_a_missing_input_loads_no_runtime_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vdsr_deploy.runtime.prepare

    opened: list[object] = []
    monkeypatch.setattr(vdsr_deploy.runtime.prepare, "open_runner", lambda *a, **k: opened.append(a))
    out, engines = tmp_path / "out", tmp_path / "engines"
    missing = tmp_path / "missing.png"
    code, text, _ = run("upscale", str(missing), "-o", str(out), "--engines-dir", str(engines), columns=400)
    assert code == 1 and one_error_line(text) == f"error: {missing}: no such file, folder, or matching glob"
    assert not opened and not out.exists() and not engines.exists()


def test_train_with_a_missing_data_folder_creates_no_run_folder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, text, _ = run("train", "--data", str(tmp_path / "nope"), "--out", str(run_dir), columns=400)
    assert code == 1 and "not a folder (it does not exist)" in one_error_line(text)
    assert not run_dir.exists()


def test_emulated_bf16_is_warned_of_before_the_run_starts(
    tmp_path: Path, image: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vdsr_deploy.environment
    import vdsr_deploy.precision.decision

    haswell = frozenset({"avx2", "fma"})
    monkeypatch.setattr(vdsr_deploy.environment, "cpu_flags", lambda *a: haswell)
    monkeypatch.setattr(vdsr_deploy.precision.decision, "cpu_flags", lambda *a: haswell)
    common = ["-w", str(tiny_weights), "-b", "torch", "--device", "cpu", "--tile", "0", "-q"]
    code, text, _ = run("upscale", str(image), "-o", str(tmp_path / "o"), "-p", "bf16", *common, columns=400)
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].startswith("warning: --precision bf16: no amx_bf16/avx512_bf16 here"), text
    assert "--precision fp32 (or auto) is faster" in lines[0] and lines[1].startswith("runtime torch")
    code, text, _ = run("upscale", str(image), "-o", str(tmp_path / "o2"), "-p", "fp32", *common, columns=400)
    assert code == 0 and "warning" not in text, text
    code, text, _ = run("eval", str(tmp_path), "-s", "2", "-p", "bf16", *common[:-3], columns=400)
    assert text.startswith("warning: --precision bf16"), text


def test_the_first_status_lines_are_whole_sentences_at_80_columns(
    tmp_path: Path, image: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime line stands alone (it fits 80 columns); the auto decision and each path
    passed over follow on their own lines."""
    import vdsr_deploy.precision.decision

    monkeypatch.setattr(vdsr_deploy.precision.decision, "cpu_flags", lambda *a: frozenset({"avx2"}))
    args = ["-w", str(tiny_weights), "--device", "cpu", "--engines-dir", str(tmp_path / "eng"), "-q"]
    code, text, _ = run("upscale", str(image), "-o", str(tmp_path / "o"), *args)
    assert code == 0, text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("runtime "))
    # auto times the eligible paths and takes the fastest: FP32 or INT8, ONNX Runtime or OpenVINO
    runtime_line = r"runtime (onnxruntime|openvino):cpu:(fp32|int8), whole image, batch 4"
    assert re.fullmatch(runtime_line, lines[first]), lines[first]
    assert lines[first + 1].startswith("precision ") and ", auto: " in lines[first + 1]
    # the decision may wrap at 80 columns (a measured ratio follows it); the paths passed over start lines of their own
    assert any(line.startswith("passed over: bf16 (no amx_bf16/avx512_bf16 here") for line in lines[first + 2 :]), text


def test_counts_agree_with_their_noun() -> None:
    from vdsr_deploy.cli.common import counted

    assert [counted(n, "Ray worker") for n in (0, 1, 2)] == ["0 Ray workers", "1 Ray worker", "2 Ray workers"]


def test_without_output_the_images_go_to_upscaled_in_the_current_folder(
    tmp_path: Path, image: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    common = ["-w", str(tiny_weights), "-b", "torch", "--device", "cpu", "--tile", "0", "-q"]
    code, text, _ = run("upscale", image.name, *common, columns=400)
    assert code == 0, text
    assert (tmp_path / "upscaled" / "a.png").is_file() and "output: upscaled/a.png" in text
    code, text, _ = run("upscale", "--help", columns=400)
    assert "[default: upscaled]" in text


def test_eval_says_why_a_non_integer_scale_is_refused(tmp_path: Path) -> None:
    code, text, _ = run("eval", str(tmp_path), "--scale", "2.5", columns=400)
    assert code == 2 and one_error_line(text) == (
        "error: scale: expected an integer factor (the paper's protocol crops and shrinks each HR image by it; "
        "upscale takes any factor > 1), got 2.5"
    )
    code, text, _ = run("eval", "--help", columns=400)
    assert "The defaults differ from upscale's on purpose" in text and "so 2.5 has no HR/LR pair" in text


def test_batch_defaults_agree_between_commands() -> None:
    import inspect

    from vdsr_deploy.parity import ValidateConfig

    callbacks = {c.name or c.callback.__name__: c.callback for c in app.registered_commands if c.callback}
    defaults = {
        name: inspect.signature(callback).parameters["batch"].default
        for name, callback in callbacks.items()
        if "batch" in inspect.signature(callback).parameters and name != "bench"  # bench sweeps a list
    }
    assert defaults == {"upscale": 4, "export": 4, "build": 4, "validate": 4}
    assert ValidateConfig().batch == 4


def test_the_command_list_gives_each_first_sentence_whole() -> None:
    code, text, _ = run("--help", columns=80)
    commands = text.split("Commands:")[1]
    assert code == 0 and "..." not in commands and max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.split())
    for command in COMMANDS:
        assert f" {command} " in flat, command
    assert "the default weights and the cache folder." in flat
