"""The cached INT8 artifact (made on first use, keyed, never used stale), --precision int8 /
auto on the command line, and the fast start (no torch, no re-verification, cached graph)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner, OrtOptions
from vdsr_deploy.cli import app
from vdsr_deploy.export import int8 as int8_module
from vdsr_deploy.export.calibration import load_calibration_set, quality_cost
from vdsr_deploy.export.int8 import DEFAULT_RECIPE, ensure_int8_onnx
from vdsr_deploy.export.onnx import ensure_onnx, export_onnx
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.onnx_metadata import MetadataKey, onnx_metadata, sidecar_path
from vdsr_deploy.model.weights import load_weights, weights_file_sha256
from vdsr_deploy.runtime.artifacts import cached_onnx, open_onnx_fp32

pytest.importorskip("onnxruntime")


def _fp32(tmp_path: Path, weights: Path) -> Path:
    model, info = load_weights(weights)
    return ensure_onnx(model, info, "fp32", tmp_path / "eng")


def test_weights_hash_without_torch_matches(tiny_weights: Path) -> None:
    assert weights_file_sha256(tiny_weights) == load_weights(tiny_weights)[1].sha256


def test_int8_is_built_once_recorded_and_reused(tmp_path: Path, tiny_weights: Path) -> None:
    engines = tmp_path / "eng"
    sha = weights_file_sha256(tiny_weights)
    calls: list[int] = []

    def fp32() -> Path:
        calls.append(1)
        return _fp32(tmp_path, tiny_weights)

    first = ensure_int8_onnx(sha, fp32, engines, open_onnx=open_onnx_fp32)
    assert first.built and calls == [1] and first.path.is_file()
    metadata = onnx_metadata(first.path)
    assert metadata["vdsr.precision"] == "int8" and metadata["vdsr.weights_sha256"] == sha
    key = json.loads(metadata[MetadataKey.INT8_KEY])
    assert key["weights_sha256"] == sha and key["onnxruntime"] and key["recipe"]["method"] == "minmax"
    assert key["calibration_sha256"] == load_calibration_set().sha256
    assert set(json.loads(metadata[MetadataKey.QUALITY_COST_DB])) == {"x2", "x3", "x4"} == set(first.cost_db)
    stamp = first.path.stat().st_mtime_ns
    again = ensure_int8_onnx(sha, fp32, engines, open_onnx=open_onnx_fp32)
    assert not again.built and calls == [1] and again.path == first.path and again.cost_db == first.cost_db
    assert first.path.stat().st_mtime_ns == stamp


def test_int8_is_rebuilt_when_its_key_changes(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = tmp_path / "eng"
    sha = weights_file_sha256(tiny_weights)
    first = ensure_int8_onnx(sha, lambda: _fp32(tmp_path, tiny_weights), engines, open_onnx=open_onnx_fp32)
    other_recipe = ensure_int8_onnx(
        sha, lambda: _fp32(tmp_path, tiny_weights), engines, recipe=replace(DEFAULT_RECIPE, per_channel=False),
        open_onnx=open_onnx_fp32)
    assert other_recipe.built and other_recipe.path != first.path
    monkeypatch.setattr(int8_module, "onnxruntime_version", lambda: "0.0.0-other")
    other_runtime = ensure_int8_onnx(sha, lambda: _fp32(tmp_path, tiny_weights), engines, open_onnx=open_onnx_fp32)
    assert other_runtime.built and other_runtime.path not in (first.path, other_recipe.path)
    assert other_runtime.key["onnxruntime"] == "0.0.0-other"


def test_a_file_whose_recorded_key_differs_is_never_used(tmp_path: Path, tiny_weights: Path) -> None:
    engines = tmp_path / "eng"
    sha = weights_file_sha256(tiny_weights)
    first = ensure_int8_onnx(sha, lambda: _fp32(tmp_path, tiny_weights), engines, open_onnx=open_onnx_fp32)
    # put another model's INT8 file (another key inside) under this key's name
    other = VDSR(depth=4, channels=8)
    other_weights = tmp_path / "other.safetensors"
    from vdsr_deploy.model.weights import save_weights

    save_weights(other, other_weights)
    other_sha = weights_file_sha256(other_weights)
    foreign = ensure_int8_onnx(
        other_sha, lambda: _fp32(tmp_path / "o", other_weights), tmp_path / "other-eng", open_onnx=open_onnx_fp32,
    )
    first.path.write_bytes(foreign.path.read_bytes())
    rebuilt = ensure_int8_onnx(sha, lambda: _fp32(tmp_path, tiny_weights), engines, open_onnx=open_onnx_fp32)
    assert rebuilt.built and json.loads(onnx_metadata(rebuilt.path)[MetadataKey.INT8_KEY])["weights_sha256"] == sha


def test_quality_cost_is_zero_for_the_same_model_and_negative_for_a_worse_one() -> None:
    calibration = load_calibration_set()

    def identity(batch: np.ndarray) -> np.ndarray:
        return batch

    def noisy(batch: np.ndarray) -> np.ndarray:
        return batch + np.random.default_rng(0).normal(0, 0.02, batch.shape).astype(np.float32)

    assert quality_cost(identity, identity, calibration) == {"x2": 0.0, "x3": 0.0, "x4": 0.0}
    worse = quality_cost(identity, noisy, calibration)
    assert all(value < -0.1 for value in worse.values()), worse
    assert calibration.calibration == 20 and len(calibration.held_out) == 12


def _scenes(sources: tuple[str, ...]) -> set[str]:
    return {source.split("@")[0] for source in sources}


def test_shipped_tiles_are_drawn_and_regenerated_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped tiles come from the procedural generator (no training image), held-out
    tiles from scenes that never calibrate, and the generator reproduces them exactly."""
    calibration = load_calibration_set()
    calibrating = _scenes(calibration.sources[: calibration.calibration])
    held_out = _scenes(calibration.sources[calibration.calibration :])
    assert all(s.startswith(("v1:scene-", "v1:landscape-")) for s in calibrating | held_out)
    assert not calibrating & held_out and len(held_out) >= 3
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import make_calibration_tiles as generator

    seed = generator.HELD_OUT_SCENES[-1]  # one scene: the whole set takes ~30 s on a busy machine
    drawn = generator.detailed_tiles(generator.luma_uint8(generator.render_scene(seed)), f"scene-{seed}", 4)
    shipped = {s: t for s, t in zip(calibration.sources, calibration.hr, strict=True)}
    for tile, source in drawn:
        np.testing.assert_array_equal(tile, np.rint(shipped[f"v{generator.GENERATOR_VERSION}:{source}"] * 255))


def test_calibration_hash_is_by_content_and_changes_with_it(tmp_path: Path) -> None:
    shipped = load_calibration_set()
    tiles = np.rint(shipped.hr * 255).astype(np.uint8)
    copy = tmp_path / "copy.npz"
    np.savez(copy, hr_y=tiles, source=np.array(shipped.sources), calibration=np.array(shipped.calibration))
    assert load_calibration_set(copy).sha256 == shipped.sha256  # other zip bytes, same tiles
    tiles[3, 40, 40] ^= 1
    np.savez(copy, hr_y=tiles, source=np.array(shipped.sources), calibration=np.array(shipped.calibration))
    assert load_calibration_set(copy).sha256 != shipped.sha256
    np.savez(copy, hr_y=tiles, source=np.array(shipped.sources), calibration=np.array(shipped.calibration - 1))
    assert load_calibration_set(copy).sha256 not in (shipped.sha256, load_calibration_set().sha256)


def _photos(folder: Path, sizes: list[tuple[int, int]], seed: int = 5) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index, (height, width) in enumerate(sizes):
        pixels = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.png")
    return folder


def test_calibration_from_images_holds_out_the_last_images(tmp_path: Path) -> None:
    from vdsr_deploy.errors import InvalidInputError
    from vdsr_deploy.export.calibration import calibration_set_from_images

    folder = _photos(tmp_path / "mine", [(200, 197), (97, 290), (101, 99), (150, 100)])
    (folder / "notes.txt").write_text("not an image")
    calibration = calibration_set_from_images(folder)
    # 2x2 + 1x3 + 1x1 + 1x1 tiles of 96; the last images' tiles (>= 3/8 of 9) are held out
    assert calibration.hr.shape == (9, 96, 96) and calibration.origin == str(folder)
    assert _scenes(calibration.sources[calibration.calibration :]) == {"img1.png", "img2.png", "img3.png"}
    assert calibration.calibration == 4 and not _scenes(calibration.sources[:4]) & {"img1.png"}
    assert calibration_set_from_images(folder).sha256 == calibration.sha256
    _photos(folder, [(200, 197)], seed=6)  # img0 changes
    assert calibration_set_from_images(folder).sha256 != calibration.sha256
    with pytest.raises(InvalidInputError, match="at least 2 images"):
        calibration_set_from_images(_photos(tmp_path / "one", [(120, 120), (50, 300)]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no images"):
        calibration_set_from_images(tmp_path / "empty")


def test_export_int8_with_a_users_calibration_folder(tmp_path: Path, tiny_weights: Path) -> None:

    engines = tmp_path / "eng"
    folder = _photos(tmp_path / "mine", [(192, 96), (96, 96)])
    def run(*args: str) -> tuple[int, str]:
        code, text = _invoke(*args)
        return code, " ".join(text.split())  # rich wraps long lines

    base = ["export", "-o", str(engines), "-w", str(tiny_weights), "-p", "int8"]
    code, shipped_text = run(*base)
    assert code == 0 and "calibration shipped: 20 tiles, 12 held out" in shipped_text, shipped_text
    code, text = run(*base, "--calibration", str(folder))
    assert code == 0 and "built" in text and "2 tiles, 1 held out" in text, text
    models = sorted(engines.glob("vdsr-*-int8-*.onnx"), key=lambda p: p.stat().st_mtime_ns)
    assert len(models) == 2  # a changed calibration set is another key, another file
    metadata = onnx_metadata(models[-1])
    recorded = json.loads(metadata[MetadataKey.CALIBRATION])
    assert recorded["origin"] == str(folder) and recorded["calibrate"] == 2 and recorded["held_out"] == 1
    assert json.loads(metadata[MetadataKey.INT8_KEY])["calibration_sha256"] == recorded["sha256"]
    assert recorded["sha256"] != load_calibration_set().sha256
    code, text = run(*base, "--calibration", str(folder))
    assert code == 0 and "cached, key matches" in text, text
    code, text = run("export", "-o", str(engines), "-w", str(tiny_weights), "--calibration", str(folder))
    assert code == 2 and "error: --calibration: applies to -p int8 only" in text, text  # a usage error
    code, text = run(*base, "--calibration", str(tmp_path / "missing"))
    assert code == 1 and "missing: not a folder" in text and "Traceback" not in text, text


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_cli_int8_auto_and_fp32_on_a_fresh_engines_dir(tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    source = tmp_path / "a.png"
    pixels = (np.random.default_rng(3).random((29, 37, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(source)
    engines = tmp_path / "eng"
    outputs = {}
    for precision in ("int8", "auto", "fp32"):
        out = tmp_path / f"out-{precision}"
        args = ["upscale", str(source), "-o", str(out), "-w", str(tiny_weights), "--engines-dir", str(engines)]
        code, text = _invoke(*args, "--precision", precision, "--tile", "48", "--halo", "20", "-q")
        assert code == 0, text
        lines = text.strip().splitlines()
        runtime = next(line for line in lines if line.startswith("runtime "))
        if precision == "auto":  # the choice and its reason, on the first line
            assert lines[0] == runtime and "auto:" in text.split(" done, ")[0], text  # (rich wraps at 80)
        else:
            assert f":{precision}," in runtime
        outputs[precision] = np.asarray(Image.open(out / "a.png"), dtype=int)
    assert list(engines.glob("vdsr-*-int8-*.onnx"))
    code, text = _invoke(
        "upscale", str(source), "-o", str(tmp_path / "t"), "-w", str(tiny_weights), "-b", "torch", "-p", "fp32", "-q"
    )
    reference = np.asarray(Image.open(tmp_path / "t" / "a.png"), dtype=int)
    assert np.max(np.abs(outputs["fp32"] - reference)) <= 1  # --precision fp32 is the reference
    code, text = _invoke("export", "-o", str(engines), "-w", str(tiny_weights), "-p", "int8")
    assert code == 0 and "cached, key matches" in text, text


def test_an_unverified_export_is_not_trusted(tmp_path: Path, tiny_weights: Path) -> None:
    engines = tmp_path / "eng"
    assert cached_onnx(tiny_weights, engines, "fp32") is None
    path = _fp32(tmp_path, tiny_weights)
    assert cached_onnx(tiny_weights, engines, "fp32") == path
    metadata = onnx_metadata(path)
    assert json.loads(metadata["vdsr.verified"])["passed"] is True
    # an ONNX from an exporter that did not record its verification is re-exported
    import onnx

    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != "vdsr.verified"]
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    assert "vdsr.verified" not in onnx_metadata(path)  # the sidecar copy followed the rewrite
    assert cached_onnx(tiny_weights, engines, "fp32") is None
    model_, info = load_weights(tiny_weights)
    assert "vdsr.verified" in onnx_metadata(ensure_onnx(model_, info, "fp32", engines))
    assert sidecar_path(path).is_file()


def test_optimized_graph_is_cached_and_gives_identical_output(tmp_path: Path, tiny_model: VDSR) -> None:
    onnx_path = export_onnx(tiny_model, tmp_path / "m.onnx").path
    options = OrtOptions(optimized_dir=tmp_path / "opt")
    batch = np.random.default_rng(0).random((2, 1, 33, 21), dtype=np.float32)
    with OnnxRuntimeRunner(onnx_path, options) as runner:
        first = runner.infer(batch)
        assert runner.info.details["loaded_from"] == str(onnx_path)
    cached = list((tmp_path / "opt").glob("*.ort.onnx"))
    assert len(cached) == 1
    with OnnxRuntimeRunner(onnx_path, options) as runner:
        assert runner.info.details["loaded_from"] == str(cached[0])
        assert np.array_equal(runner.infer(batch), first)
    export_onnx(replace_weights(tiny_model), onnx_path, overwrite=True)  # another model, same path
    with OnnxRuntimeRunner(onnx_path, options) as runner:
        assert runner.info.details["loaded_from"] == str(onnx_path)  # not the stale graph


def replace_weights(model: VDSR) -> VDSR:
    import copy

    import torch

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.body[0].bias.add_(0.1)
    return other


def test_onnxruntime_run_with_cached_artifacts_never_imports_torch(tmp_path: Path, tiny_weights: Path) -> None:
    engines = tmp_path / "eng"
    _fp32(tmp_path, tiny_weights)
    ensure_int8_onnx(
        weights_file_sha256(tiny_weights), lambda: _fp32(tmp_path, tiny_weights), engines, open_onnx=open_onnx_fp32,
    )
    script = (
        "import sys, numpy as np\nfrom pathlib import Path\n"
        "from vdsr_deploy.runtime.prepare import RunnerSpec, open_runner\n"
        "from vdsr_deploy.planes.tiling import TileConfig\n"
        "for p in ('fp32', 'int8'):\n"
        f"    spec = RunnerSpec(backend='onnxruntime', precision=p, weights=Path({str(tiny_weights)!r}), "
        f"engines_dir=Path({str(engines)!r}))\n"
        "    with open_runner(spec, tiling=TileConfig(tile=48, halo=20), batch=1) as r:\n"
        "        r.infer(np.zeros((1, 1, 48, 48), np.float32))\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_bench_cpu_paths_reports_ratios_and_task_psnr_cost(tmp_path: Path, tiny_weights: Path) -> None:
    from PIL import Image

    hr = tmp_path / "hr"
    hr.mkdir()
    pixels = (np.random.default_rng(7).random((60, 72, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(hr / "one.png")
    out = tmp_path / "bench"
    args = ["bench", "--cpu-paths", "--size", "48", "-t", "48", "--halo", "4", "--repeats", "1", "--warmup", "0"]
    args += ["--no-pipeline", "-w", str(tiny_weights), "--engines-dir", str(tmp_path / "eng"), "--hr", str(hr)]
    code, text = _invoke(*args, "-o", str(out))
    assert code == 0, text
    result = json.loads((out / "bench.json").read_text())
    names = [r["name"] for r in result["results"]]
    assert (
        names[0] == "onnxruntime-fp32" and "onnxruntime-int8" in names and "torch-bf16-channels-last" in "".join(names)
    )
    assert all(r["ratio_vs_baseline"]["runtime"] > 0 for r in result["results"])
    scored = result["task_psnr"]["hr"]["runners"]
    lossy_openvino = {n for n in names if n.startswith("openvino-") and n != "openvino-fp32"}  # when installed
    bf16 = next(n for n in names if "bf16" in n)
    assert set(scored) == {"onnxruntime-fp32", "onnxruntime-int8", bf16, *lossy_openvino}
    assert all(set(v) == {"x2", "x3", "x4"} for v in scored.values())
    markdown = (out / "bench.md").read_text()
    assert "| onnxruntime-int8 |" in markdown and "within 0.05 dB" in markdown


def test_int8_of_the_shipped_weights_keeps_full_contrast_edges_within_tolerance(tmp_path: Path) -> None:
    """The 1-px black/white edge pattern ``vdsr validate`` checks came out 70 levels off when
    the calibrated ranges had never seen full-contrast edges (max 0.32 at x2)."""
    from vdsr_deploy import protocol
    from vdsr_deploy.model.weights import default_weights_path
    from vdsr_deploy.parity import TOLERANCE_INT8, edge_case_images

    weights = default_weights_path()
    artifact = ensure_int8_onnx(
        weights_file_sha256(weights), lambda: _fp32(tmp_path, weights), tmp_path / "eng", open_onnx=open_onnx_fp32,
    )
    pattern = next(image for image in edge_case_images() if image.name == "edges-64x64")
    luma = (16.0 + 219.0 * pattern.pixels[..., 0].astype(np.float64)) / 255.0
    with OnnxRuntimeRunner(_fp32(tmp_path, weights)) as reference, OnnxRuntimeRunner(artifact.path) as int8:
        for scale in (2, 3, 4):
            plane = protocol.imresize(luma, scale).astype(np.float32)[None, None]
            difference = np.abs(np.clip(int8.infer(plane), 0, 1) - np.clip(reference.infer(plane), 0, 1))
            worst = float(difference.max()) * 255.0 / 219.0  # gray output: Y back to gray
            assert worst < TOLERANCE_INT8.max_abs, (scale, worst)


def test_recipe_3_widens_the_ranges_only_part_way_to_the_contrast_guard(tmp_path: Path, tiny_weights: Path) -> None:
    """Recipe 2 widened every ReLU range to what the full-contrast guard tiles reach (1-px
    edges kept, 0.057 dB on Set5 x2); recipe 3 goes ``guard_share`` of the way,
    geometrically, and is a different cache key."""
    from onnx import load as load_onnx
    from onnx import numpy_helper

    from vdsr_deploy.export.calibration import calibration_inputs, guard_inputs
    from vdsr_deploy.export.quantize import activation_maxima

    assert int8_module.RECIPE_VERSION == 3 and 0.5 < DEFAULT_RECIPE.guard_share < 1.0
    artifact = ensure_int8_onnx(
        weights_file_sha256(tiny_weights), lambda: _fp32(tmp_path, tiny_weights), tmp_path / "eng",
        open_onnx=open_onnx_fp32,
    )  # fmt: skip
    recipe = artifact.key["recipe"]
    assert recipe["version"] == 3 and recipe["guard_share"] == DEFAULT_RECIPE.guard_share
    planes = calibration_inputs(load_calibration_set(), DEFAULT_RECIPE.scales, guard=False)
    fp32 = _fp32(tmp_path, tiny_weights)
    photo = activation_maxima(fp32, planes)
    both = activation_maxima(fp32, [*planes, *guard_inputs(DEFAULT_RECIPE.scales)])
    model = load_onnx(str(artifact.path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    ranges = {
        n.input[0]: float(initializers[n.input[1]]) * 255.0
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] in photo
    }
    assert ranges and any(both[name] > 1.01 * photo[name] for name in ranges)
    share = DEFAULT_RECIPE.guard_share
    for name, value in ranges.items():
        assert value == pytest.approx(photo[name] * (both[name] / photo[name]) ** share, rel=1e-4)
