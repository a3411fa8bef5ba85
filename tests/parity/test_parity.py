"""vdsr validate: figures as data, checked against direct numpy; perturbed models fail."""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from vdsr_deploy import protocol
from vdsr_deploy.backends.torch.runner import TorchRunner
from vdsr_deploy.cli import app
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.imageio import write_image
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import load_weights, save_weights
from vdsr_deploy.parity import (
    CANDIDATES,
    FAILED,
    PASSED,
    SKIPPED,
    TOLERANCE_BF16,
    TOLERANCE_FP16,
    Candidate,
    RunOutput,
    Tolerance,
    ToleranceConfig,
    ValidateConfig,
    ValidationImage,
    check_engine_sidecar,
    check_onnx,
    compare_outputs,
    edge_case_images,
    hr_images,
    validate,
    validate_runners,
)
from vdsr_deploy.parity.report import heatmap_panels, render_markdown, write_heatmap
from vdsr_deploy.planes.tiling import TileConfig

TILING = TileConfig(tile=40, halo=4)  # depth-3 model: radius 3, so halo 4 is exact
LOOSE_INT8 = Tolerance(
    max_abs=1.0, p99_abs=0.5, mean_abs=0.25, min_identical_8bit=0.0, max_lsb_8bit=255,
    min_psnr_db=15.0, max_task_psnr_drop_db=5.0,
)  # fmt: skip


@pytest.fixture
def model() -> VDSR:
    torch.manual_seed(3)
    return VDSR(depth=3, channels=4).eval()


@pytest.fixture
def weights(tmp_path: Path, model: VDSR) -> Path:
    return save_weights(model, tmp_path / "tiny3.safetensors")


def small_images() -> list[ValidationImage]:
    """Odd sizes, one larger than a tile at x2 (so tiling really happens), and 1-px lines."""
    rng = np.random.default_rng(5)
    edge = {i.name: i for i in edge_case_images()}
    return [
        ValidationImage("noise-29x23", "test", rng.random((29, 23, 3), dtype=np.float32)),
        edge["flat-gray-37x40"],
        edge["row-1x75"],
        edge["pixel-1x1"],
    ]


def perturbed(model: VDSR, amount: float) -> VDSR:
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.body[-1].bias += amount
    return other


def run_pair(reference: VDSR, candidate: VDSR, tolerance: str = "fp32") -> tuple[str, list]:
    spec = Candidate("test", "torch", "fp32", tolerance)
    return validate_runners(
        small_images(),
        TorchRunner(reference),
        [(spec, lambda: TorchRunner(candidate))],
        tiling=TILING,
        batch=2,
    )


def test_same_model_passes_and_perturbed_model_fails(model: VDSR) -> None:
    _, (same,) = run_pair(model, copy.deepcopy(model))
    assert same.status == PASSED, same.reasons
    assert same.figures is not None and same.figures.max_abs < 1e-5
    _, (bad,) = run_pair(model, perturbed(model, 0.01))
    assert bad.status == FAILED
    assert any("max |diff|" in r for r in bad.reasons)
    assert bad.figures is not None and bad.figures.max_abs == pytest.approx(0.01, rel=1e-3)
    # a 1e-5 shift stays far below 1 LSB of 8-bit: FP16 parity accepts it
    _, (tiny,) = run_pair(model, perturbed(model, 1e-5), tolerance="fp16")
    assert tiny.status == PASSED, tiny.reasons


def test_nan_output_fails_every_precision(model: VDSR) -> None:
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.body[0].weight[0, 0, 0, 0] = float("nan")
    for tolerance in ("fp16", "bf16", "int8"):
        _, (pair,) = run_pair(model, broken, tolerance=tolerance)
        assert pair.status == FAILED
        assert pair.figures is not None and pair.figures.nonfinite > 0
        assert any("NaN/Inf" in r for r in pair.reasons)


def test_figures_match_direct_numpy() -> None:
    rng = np.random.default_rng(11)
    shapes = [(17, 23), (1, 9), (30, 30)]
    images, refs, cands = [], [], []
    hr_scale = 2
    for index, shape in enumerate(shapes):
        ref = rng.random(shape, dtype=np.float32)
        cand = (ref + rng.normal(0, 3e-3, shape)).astype(np.float32)
        hr = None
        if index == 2:  # one image with an HR to score against
            hr = np.clip(ref + rng.normal(0, 0.02, shape), 0, 1).astype(np.float64)
        images.append(
            ValidationImage(
                f"i{index}",
                "test",
                np.zeros((*shape, 1), np.float32),
                hr,
                hr_scale if hr is not None else None,
            )
        )
        refs.append(RunOutput(ref))
        cands.append(RunOutput(cand))
    cands[0].y[0, 0] = np.nan  # one non-finite value
    loose = Tolerance(1.0, 1.0, 1.0, 0.0, 255, -math.inf, 100.0, max_nonfinite=10)
    pair = compare_outputs("x", images, refs, cands, loose, bit_depths=(8, 16))
    figures = pair.figures
    assert figures is not None and pair.status == PASSED

    diffs = [
        np.abs(c.y.astype(np.float64) - r.y.astype(np.float64))
        for r, c in zip(refs, cands, strict=True)
    ]
    finite = np.concatenate([d[np.isfinite(d)] for d in diffs])
    assert figures.max_abs == pytest.approx(finite.max())
    assert figures.mean_abs == pytest.approx(finite.mean())
    assert figures.p99_abs == pytest.approx(np.percentile(finite, 99))
    assert figures.nonfinite == 1
    assert figures.pixels == sum(d.size for d in diffs)

    def to8(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(np.nan_to_num(a, nan=0.0).astype(np.float64) * 255), 0, 255).astype(
            int
        )

    lsb = np.concatenate(
        [np.abs(to8(c.y) - to8(r.y)).ravel() for r, c in zip(refs, cands, strict=True)]
    )
    q8 = figures.quant(8)
    assert q8 is not None
    assert q8.identical_fraction == pytest.approx(np.mean(lsb == 0))
    assert dict(q8.histogram) == {
        int(v): int(n) for v, n in zip(*np.unique(lsb, return_counts=True), strict=True)
    }
    assert q8.max_lsb == lsb.max()
    assert figures.quant(16) is not None

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        a = np.clip(np.nan_to_num(a.astype(np.float64), nan=0.0), 0, 1)
        b = np.clip(b.astype(np.float64), 0, 1)
        return 10 * math.log10(1.0 / np.mean((a - b) ** 2))

    per_image = [psnr(c.y, r.y) for r, c in zip(refs, cands, strict=True)]
    assert [i.psnr_db for i in pair.images] == pytest.approx(per_image)
    assert figures.psnr_db == pytest.approx(min(per_image))

    hr = images[2].hr_y
    assert hr is not None

    def task(y: np.ndarray) -> float:
        a = np.clip(y.astype(np.float64), 0, 1)[2:-2, 2:-2] * 255
        b = hr[2:-2, 2:-2] * 255
        return 10 * math.log10(255**2 / np.mean((a - b) ** 2))

    scored = pair.images[2]
    assert scored.hr_psnr_reference == pytest.approx(task(refs[2].y))
    assert scored.hr_psnr_candidate == pytest.approx(task(cands[2].y))
    assert figures.hr_psnr_delta_mean == pytest.approx(task(cands[2].y) - task(refs[2].y))


def test_tolerance_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        Tolerance(max_abs=1e-5, p99_abs=1e-4, mean_abs=1e-6, min_identical_8bit=0.9, max_lsb_8bit=1,
                  min_psnr_db=50, max_task_psnr_drop_db=0.1)  # fmt: skip
    with pytest.raises(ConfigError):
        Tolerance(1e-3, 1e-4, 1e-5, 1.5, 1, 50, 0.1)
    with pytest.raises(ConfigError):
        ValidateConfig(candidates=("onnxruntime-fp32", "nope"))
    with pytest.raises(ConfigError):
        ValidateConfig(bit_depths=(16,))


def test_unavailable_backend_is_skipped_not_failed(model: VDSR) -> None:
    def unavailable() -> TorchRunner:
        raise BackendUnavailableError("no such runtime here")

    _, pairs = validate_runners(
        small_images()[:1],
        TorchRunner(model),
        [(CANDIDATES["tensorrt-fp16"], unavailable), (CANDIDATES["torch-fp16"], "needs CUDA")],
        tiling=TILING,
    )
    assert [p.status for p in pairs] == [SKIPPED, SKIPPED]
    assert pairs[0].reasons == ("no such runtime here",)


def test_validate_end_to_end(tmp_path: Path, weights: Path) -> None:
    config = ValidateConfig(
        weights=weights,
        tiling=TILING,
        engines_dir=tmp_path / "engines",
        candidates=(
            "onnxruntime-fp32",
            "onnxruntime-fp16",
            "onnxruntime-int8",
            "torch-bf16",
            "torch-fp16",
            "tensorrt-fp16",
            "untiled",
        ),
        bit_depths=(8, 16),
        # random weights have larger residuals than trained ones: loosen the share of
        # identical 8-bit pixels so the plumbing test does not depend on the CPU's rounding
        tolerances=ToleranceConfig(
            fp16=replace(TOLERANCE_FP16, min_identical_8bit=0.9),
            bf16=replace(TOLERANCE_BF16, min_identical_8bit=0.5, min_psnr_db=40.0),
            # the INT8 model is built on first use, calibrated on the shipped tiles; random
            # weights quantize far worse than trained ones: this checks the plumbing
            int8=LOOSE_INT8,
        ),
    )
    report = validate(config, small_images())
    status = {p.name: p.status for p in report.pairs}
    assert status["onnxruntime-fp32"] == PASSED
    assert status["onnxruntime-fp16"] == PASSED
    assert status["torch-bf16"] == PASSED
    assert status["untiled"] == PASSED
    assert status["onnxruntime-int8"] == PASSED
    if not torch.cuda.is_available():
        assert status["torch-fp16"] == SKIPPED and status["tensorrt-fp16"] == SKIPPED
    assert report.passed
    assert "upcasts" in " ".join(report.pair("onnxruntime-fp16").notes)
    assert {a.kind for a in report.artifacts} == {"onnx"} and all(
        a.passed for a in report.artifacts
    )
    data = json.loads(report.to_json())
    assert data["schema"] == "vdsr-validate/1" and data["passed"] is True
    assert {p["name"] for p in data["pairs"]} == set(config.candidates)
    markdown = render_markdown(report)
    assert "PASSED" in markdown and "onnxruntime-fp16" in markdown
    ran = [p for p in report.pairs if p.status != SKIPPED]
    assert len(ran) == (6 if torch.cuda.is_available() else 5)  # + torch-fp16 on a GPU
    assert len(heatmap_panels(report)) == len(ran)
    assert write_heatmap(report, tmp_path / "heat.png") is not None
    assert (tmp_path / "heat.png").stat().st_size > 1000


def test_onnx_from_other_weights_breaks_the_chain_and_parity(
    tmp_path: Path, model: VDSR, weights: Path
) -> None:
    from vdsr_deploy.export.onnx import export_onnx

    other = tmp_path / "other-fp32.onnx"
    export_onnx(perturbed(model, 0.02), other, precision="fp32")
    _, info = load_weights(weights)
    check = check_onnx(other, info.sha256)
    assert not check.passed and "other weights" in check.detail
    config = ValidateConfig(
        weights=weights,
        tiling=TILING,
        onnx=(other,),
        candidates=("onnxruntime-fp32",),
        engines_dir=tmp_path / "engines",
    )
    report = validate(config, small_images()[:2])
    assert not report.passed
    assert report.pair("onnxruntime-fp32").status == FAILED
    assert any("other weights" in line for line in report.failures)


def test_engine_sidecar_check(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not really an engine")
    assert not check_engine_sidecar(engine, "a" * 64).passed  # no sidecar
    sidecar = {
        "precision": "fp16",
        "onnx": {"file": "m.onnx", "sha256": "b" * 64, "weights_sha256": "a" * 64},
    }
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    assert check_engine_sidecar(engine, "a" * 64).passed
    wrong = check_engine_sidecar(engine, "c" * 64)
    assert not wrong.passed and "other weights" in wrong.detail


def test_hr_images_give_task_psnr(tmp_path: Path, model: VDSR) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "hr"
    base = np.clip(protocol.imresize(rng.random((12, 13, 3)), output_shape=(49, 51)), 0, 1)
    write_image(folder / "a.png", base.astype(np.float32))
    images = hr_images(folder, 2.0)
    assert images[0].hr_y is not None and images[0].hr_y.shape == (48, 50)  # modcrop
    _, (pair,) = validate_runners(
        images,
        TorchRunner(model),
        [(Candidate("same", "torch", "fp32", "fp32"), lambda: TorchRunner(model))],
        tiling=TILING,
    )
    assert pair.figures is not None and pair.figures.hr_psnr_delta_mean == pytest.approx(
        0.0, abs=1e-6
    )
    assert pair.images[0].hr_psnr_reference is not None and math.isfinite(
        pair.images[0].hr_psnr_reference
    )
    with pytest.raises(ConfigError):
        hr_images(folder, 2.5)


def test_cli_validate_exit_codes(tmp_path: Path, model: VDSR, weights: Path) -> None:
    from vdsr_deploy.export.onnx import export_onnx

    folder = tmp_path / "images"
    write_image(folder / "a.png", np.random.default_rng(0).random((21, 19, 3)).astype(np.float32))
    common = [
        "validate",
        str(folder),
        "-w",
        str(weights),
        "--tile",
        "40",
        "--halo",
        "4",
        "--no-edge-cases",
        "--engines-dir",
        str(tmp_path / "engines"),
    ]
    runner = CliRunner()
    ok = runner.invoke(
        app, [*common, "-r", "onnxruntime-fp32", "-r", "untiled", "-o", str(tmp_path / "out")]
    )
    assert ok.exit_code == 0, ok.output
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "validate.json",
        "validate.md",
        "validate-heatmap.png",
    }
    bad_onnx = tmp_path / "bad-fp32.onnx"
    export_onnx(perturbed(model, 0.05), bad_onnx, precision="fp32")
    bad = runner.invoke(app, [*common, "-r", "onnxruntime-fp32", "--onnx", str(bad_onnx)])
    # a parity failure is a verdict, not a crash: a clean exit 1 after the rendered table
    assert isinstance(bad.exception, SystemExit) and bad.exit_code == 1, repr(bad.exception)
    assert "onnxruntime-fp32: failed" in bad.output and "error:" not in bad.output
    unknown = runner.invoke(app, [*common, "-r", "nope"])
    assert isinstance(unknown.exception, SystemExit) and unknown.exit_code == 2, repr(unknown.exception)  # usage
    assert [line for line in unknown.output.splitlines() if line.strip()] == [UNKNOWN_RUNTIME]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "tensorrt", None)  # TensorRT absent: skipped, not an error
        absent = runner.invoke(app, [*common, "-r", "tensorrt-fp16", "-r", "untiled"])
    assert absent.exit_code == 0 and absent.exception is None, absent.output
    assert "tensorrt-fp16: skipped" in absent.output


UNKNOWN_RUNTIME = f"error: runtime: expected some of {', '.join(CANDIDATES)}, got nope"


def test_validation_image_set(tmp_path: Path) -> None:
    from vdsr_deploy.parity.images import validation_images

    folder = tmp_path / "images"
    write_image(folder / "a.png", np.random.default_rng(0).random((21, 19, 3)).astype(np.float32))
    edge = len(edge_case_images())
    assert [i.kind for i in validation_images(None, None, 2.0)] == ["sample"] + ["edge"] * edge
    assert [i.name for i in validation_images(folder, None, 2.0, edge_cases=False)] == ["a"]
    both = validation_images(folder, folder, 2.0, edge_cases=False)
    assert [(i.name, i.kind) for i in both] == [("a", "user"), ("a-x2", "hr")]


@pytest.mark.parametrize("nan_first", [True, False])
def test_a_nan_task_psnr_delta_fails_the_pair_wherever_it_stands(nan_first: bool) -> None:
    """The worst task-PSNR delta and the worst PSNR keep a NaN (Python's min would drop it
    when it stands second), and judge fails a NaN delta rather than passing it."""
    from vdsr_deploy.parity.figures import ImageFigures, judge, pair_figures, quant_figures

    plane = np.full((5, 7), 0.5)
    quant = (quant_figures(plane, plane, 8),)

    def image(name: str, reference: float, candidate: float, psnr: float) -> ImageFigures:
        return ImageFigures(name, "test", (5, 7), 0.0, 0.0, 0.0, 0, psnr, quant, reference, candidate)

    good = image("good", 30.0, 30.0, math.inf)
    bad = image("bad", math.inf, math.inf, math.nan)  # inf - inf: NaN delta
    images = [bad, good] if nan_first else [good, bad]
    figures = pair_figures(images, [np.zeros((5, 7)), np.zeros((5, 7))])
    assert figures.hr_psnr_delta_worst is not None and math.isnan(figures.hr_psnr_delta_worst)
    assert math.isnan(figures.psnr_db) and figures.worst_image == "bad"
    reasons = judge(figures, TOLERANCE_FP16)
    assert any("task PSNR" in r for r in reasons) and any("PSNR vs reference" in r for r in reasons)
