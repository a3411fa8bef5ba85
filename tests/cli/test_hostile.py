"""Issue 25 at the command line: odd names, links, special files and foreign models get one
clear line (never a traceback), and nothing of the user's is lost. Each test failed on main
before issue 25 (the case number is in its name)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vdsr_deploy.cli import app


def run(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def error_line(*args: str, code: int = 1) -> str:
    """The command's one ``error:`` line; fails on a traceback or another exit code."""
    exit_code, output, exception = run(*args)
    assert isinstance(exception, SystemExit), repr(exception)
    assert exit_code == code, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


def image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:19, 0:23]
    pixels = np.stack([(x * 7 + y * 3 + c * 50) % 256 for c in range(3)], axis=2)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def common(tmp_path: Path, weights: Path) -> list[str]:
    return ["-w", str(weights), "-b", "torch", "-p", "fp32", "--device", "cpu", "--tile", "0"]


def test_5_a_symlink_loop_is_one_failed_input(tmp_path: Path, tiny_weights: Path) -> None:
    good = image(tmp_path / "in" / "good.png")
    loop = tmp_path / "in" / "loop.png"
    loop.symlink_to(loop)
    out = tmp_path / "out"
    code, output, exception = run(
        "upscale", str(loop), str(good), "-o", str(out), *common(tmp_path, tiny_weights)
    )
    assert isinstance(exception, SystemExit) and code == 1, output
    assert "link that cannot be followed" in output and "Traceback" not in output
    assert (out / "in" / "good.png").is_file() or (out / "good.png").is_file()


def test_6_a_name_that_is_not_utf8_works_end_to_end(tmp_path: Path, tiny_weights: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    image(tmp_path / "in" / name)
    out, report = tmp_path / "out", tmp_path / "report.json"
    args = ["upscale", str(tmp_path / "in"), "-o", str(out), "--report", str(report)]
    code, output, exception = run(*args, *common(tmp_path, tiny_weights))
    assert code == 0, (output, exception)
    assert (out / name).is_file()
    data = json.loads(report.read_text(encoding="ascii"))  # lossless: escaped, not mangled
    assert data["done"][0]["output"] == str(out / name)
    code, output, _ = run(*args, *common(tmp_path, tiny_weights))  # the manifest reads it back
    assert code == 0 and json.loads(report.read_text())["skipped"][0]["reason"].startswith(
        "complete"
    )


@pytest.mark.parametrize("kind", ["folder", "fifo", "device"])
def test_9_special_files_as_weights_get_their_own_message(
    tmp_path: Path, tiny_weights: Path, kind: str
) -> None:
    source = image(tmp_path / "a.png")
    if kind == "folder":
        weights, expected = tmp_path / "w.safetensors", "is a folder, not a weights file"
        weights.mkdir()
    elif kind == "fifo":
        weights, expected = tmp_path / "w.safetensors", "is a FIFO (named pipe)"
        os.mkfifo(weights)
    else:
        weights, expected = Path("/dev/zero"), "is a character device"
    args = ["upscale", str(source), "-o", str(tmp_path / "o"), "-w", str(weights), "-b", "torch"]
    line = error_line(*args)
    assert line.startswith(f"error: {weights}: weights file {expected}"), line
    assert not (tmp_path / "o").exists()


def test_10_inputs_that_hold_no_image_are_an_error(tmp_path: Path, tiny_weights: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no image here")
    out = tmp_path / "out"
    line = error_line("upscale", str(tmp_path / "docs"), "-o", str(out), *common(tmp_path, tiny_weights))
    assert line.startswith(f"error: no image found in {tmp_path / 'docs'} (looked for .bmp, .gif")
    assert not out.exists()  # nothing created for a job that had nothing to do


# --- 4 and 7: a given model is checked, never assumed -------------------------------------------


def _graph(path: Path, *, name: str = "input", channels: int = 1, factor: float = 0.5) -> Path:
    """An ONNX graph that multiplies its input by ``factor``: not a VDSR."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["N", channels, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Mul", [name, "k"], ["output"])],
        "foreign",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [factor])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def onnx_args(tmp_path: Path, onnx: Path, *extra: str) -> list[str]:
    source = image(tmp_path / "a.png")
    return [
        "upscale", str(source), "-o", str(tmp_path / "o"), "--onnx", str(onnx), "-b", "onnxruntime",
        "-p", "fp32", "--device", "cpu", "--tile", "0", "--engines-dir", str(tmp_path / "eng"), *extra,
    ]  # fmt: skip


def test_4_an_onnx_that_is_not_a_vdsr_export_is_refused(tmp_path: Path) -> None:
    half = _graph(tmp_path / "half.onnx")
    line = error_line(*onnx_args(tmp_path, half))
    assert line.startswith(f"error: {half}: not a vdsr-deploy export (no vdsr.weights_sha256")
    assert "--foreign-model" in line
    assert not (tmp_path / "o").exists()
    code, output, _ = run(*onnx_args(tmp_path, half, "--foreign-model"))  # run knowingly
    assert code == 0, output
    assert (tmp_path / "o" / "a.png").is_file()


def test_4_an_export_whose_graph_is_not_what_its_metadata_claims_is_refused(
    tmp_path: Path, tiny_weights: Path
) -> None:
    import onnx

    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(tiny_weights)
    exported = ensure_onnx(model, info, "fp32", tmp_path / "exports")
    code, output, _ = run(*onnx_args(tmp_path, exported))  # the real export runs
    assert code == 0, output
    forged = onnx.load(str(_graph(tmp_path / "forged.onnx")))
    forged.metadata_props.extend(onnx.load(str(exported)).metadata_props)  # copied metadata
    onnx.save(forged, str(tmp_path / "forged.onnx"))
    line = error_line(*onnx_args(tmp_path, tmp_path / "forged.onnx"))
    assert "but the graph has 0 convolutions: not the model it claims to be" in line


def _quantized_graph(path: Path) -> Path:
    """An ONNX graph that rounds its input to 8 bits (QuantizeLinear, DequantizeLinear): an
    INT8 model, not a VDSR."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["N", 1, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["output"])],
        "foreign-int8",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255]),
         helper.make_tensor("z", TensorProto.UINT8, [], [0])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def with_precision(args: list[str], precision: str) -> list[str]:
    return [precision if previous == "-p" else arg for previous, arg in zip(["", *args[:-1]], args, strict=True)]


def test_4_a_given_onnx_runs_only_under_its_own_precision(tmp_path: Path, tiny_weights: Path) -> None:
    quantized = _quantized_graph(tmp_path / "int8.onnx")
    line = error_line(*onnx_args(tmp_path, quantized, "--foreign-model"))  # -p fp32
    assert line == (
        f"error: {quantized}: an INT8 model (quantized layers), but --precision fp32 was asked; "
        "use --precision int8 (or auto)"
    ), line
    assert not (tmp_path / "o").exists()
    # auto reads the graph (a foreign model records no precision) and runs it as int8
    code, output, _ = run(*with_precision(onnx_args(tmp_path, quantized, "--foreign-model"), "auto"))
    assert code == 0, output
    assert "int8" in output and (tmp_path / "o" / "a.png").is_file()

    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

    model, info = load_weights(tiny_weights)
    exported = ensure_onnx(model, info, "fp32", tmp_path / "exports")
    line = error_line(*with_precision(onnx_args(tmp_path, exported), "int8"))
    assert line == (
        f"error: {exported}: --precision int8 expected an INT8 model (`vdsr export -p int8` makes one), "
        "got one without quantized layers"
    ), line


@pytest.mark.parametrize(
    "name, channels, expected",
    [("x", 1, "got 'x' (N, 1, H, W) float32"), ("input", 3, "got 'input' (N, 3, H, W) float32")],
)
def test_7_wrong_inputs_are_one_clear_line_even_when_foreign(
    tmp_path: Path, name: str, channels: int, expected: str
) -> None:
    wrong = _graph(tmp_path / "wrong.onnx", name=name, channels=channels)
    for extra in ((), ("--foreign-model",)):
        line = error_line(*onnx_args(tmp_path, wrong, *extra))
        assert line == (
            f"error: {wrong}: expected one input 'input' (N, 1, H, W) float32, {expected}: "
            "not a VDSR luma model"
        ), line


# --- 8: every cache under the engines folder is disposable ---------------------------------------


def test_8_damaged_cache_entries_are_rebuilt_with_a_note(
    tmp_path: Path, tiny_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = image(tmp_path / "a.png")
    engines = tmp_path / "eng"
    args = [
        "upscale", str(source), "-o", str(tmp_path / "o"), "-w", str(tiny_weights), "-b", "onnxruntime",
        "-p", "fp32", "--device", "cpu", "--tile", "0", "--engines-dir", str(engines), "--overwrite",
    ]  # fmt: skip
    code, output, _ = run(*args)
    assert code == 0, output
    reference = (tmp_path / "o" / "a.png").read_bytes()
    [graph] = (engines / "ort-optimized").iterdir()
    [export] = engines.glob("*-fp32.onnx")

    graph.write_bytes(b"garbage")
    code, output, _ = run(*args)
    assert code == 0, output
    assert f"{graph}: the cached optimised graph is unreadable; removed" in caplog.text
    assert graph.stat().st_size > 1000  # written again
    caplog.clear()

    export.write_bytes(export.read_bytes()[:5000])  # truncated
    code, output, _ = run(*args)
    assert code == 0, output
    assert f"{export}: the cached export is unreadable; exporting it again" in caplog.text
    assert (tmp_path / "o" / "a.png").read_bytes() == reference


def test_report_never_replaces_a_users_file(tmp_path: Path, tiny_weights: Path) -> None:
    """Found by benchmarks/hostile.py: ``--report`` naming one of the user's images replaced
    it with JSON. Refused up front now; an earlier report is still replaced."""
    source = image(tmp_path / "in" / "a.png")
    keep = image(tmp_path / "in" / "keep.png")
    before = keep.read_bytes()
    args = ["upscale", str(source), "-o", str(tmp_path / "o"), *common(tmp_path, tiny_weights)]
    line = error_line(*args, "--report", str(keep), code=2)  # a usage error
    assert line == (
        f"error: --report {keep}: exists and is not a vdsr report; it would be replaced: "
        "choose another file name"
    )
    assert keep.read_bytes() == before and not (tmp_path / "o").exists()
    line = error_line(*args, "--report", str(tmp_path / "in"), code=2)
    assert line == f"error: --report {tmp_path / 'in'}: is a folder, expected a file name"
    report = tmp_path / "report.json"
    for _ in range(2):  # the second run replaces the first run's report
        code, output, _ = run(*args, "--report", str(report))
        assert code == 0, output
    assert json.loads(report.read_text())["skipped"][0]["reason"].startswith("complete")
