"""The pure parts of the whole-job CPU benchmark (benchmarks/cpu_paths.py): which paths it
times and why others are left out, the ratios and the table."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vdsr_deploy.backends.registry import REGISTRY
from vdsr_deploy.bench.jobs import (
    DEFAULT_JOB,
    EAGER,
    EMULATED_BF16,
    ORT_T256,
    TILE_AUTO,
    JobPath,
    cpu_job_paths,
    job_markdown,
    job_ratios,
)
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.precision.decision import BF16_FLAGS


def fake_backend(name: str, precisions: tuple[str, ...], device: str = "cpu", refuses: str = "") -> Any:
    return SimpleNamespace(
        name=name,
        precisions=precisions,
        compute_device=lambda d, p: device,
        unavailable=lambda d, precision, p: f"no {precision} here" if precision == refuses else None,
    )


def test_cpu_job_paths_lists_baselines_defaults_and_every_cpu_path_of_the_registry() -> None:
    registry = {
        "onnxruntime": fake_backend("onnxruntime", ("fp32", "int8")),
        "torch": fake_backend("torch", ("fp32", "bf16", "fp16"), refuses="fp16"),
        "tensorrt": fake_backend("tensorrt", ("fp16",), device="cuda:0"),
        "openvino": fake_backend("openvino", ("fp32", "bf16", "int8")),
    }
    paths, skips = cpu_job_paths(registry, frozenset({"avx2", "fma"}), bf16_flags=BF16_FLAGS)
    assert [p.label for p in paths] == [
        ORT_T256, EAGER, DEFAULT_JOB, "onnxruntime-fp32-tauto", "onnxruntime-int8-tauto", "torch-fp32-tauto",
        "openvino-fp32-tauto", "openvino-int8-tauto",
    ]  # fmt: skip
    assert paths[0].tile == 256 and paths[1].tile == 0 and not paths[1].channels_last
    assert paths[2].backend == paths[2].precision == "auto" and paths[2].tile == TILE_AUTO
    assert {s.label: s.reason for s in skips} == {
        "torch-bf16": EMULATED_BF16,
        "torch-fp16": "no fp16 here",
        "tensorrt-fp16": "computes on cuda:0, not the CPU",
        "openvino-bf16": EMULATED_BF16,
    }
    native, _ = cpu_job_paths(registry, frozenset({"amx_bf16"}), bf16_flags=BF16_FLAGS)
    assert "torch-bf16-tauto" in [p.label for p in native] and "openvino-bf16-tauto" in [p.label for p in native]


def test_cpu_job_paths_reads_the_real_registry() -> None:
    paths, skips = cpu_job_paths(REGISTRY, frozenset(), bf16_flags=BF16_FLAGS)
    labels = [p.label for p in paths] + [s.label for s in skips]
    assert all(f"{name}-{precision}" in " ".join(labels) for name, b in REGISTRY.items() for precision in b.precisions)


def test_job_path_refuses_a_bad_tile_or_batch() -> None:
    with pytest.raises(ConfigError, match="expected a tile >= 0"):
        JobPath("x", "onnxruntime", "fp32", tile=-2)
    with pytest.raises(ConfigError, match="expected a label"):
        JobPath("", "onnxruntime", "fp32")


def result(rates: dict[str, float]) -> dict[str, Any]:
    paths = {
        name: {"runtime": "rt", "tile": 256 if name == ORT_T256 else 0,
               "halo_overhead": 0.4 if name == ORT_T256 else 0.0, "megapixels_per_second": rate}
        for name, rate in rates.items()
    }  # fmt: skip
    return {"output_megapixels": 0.786, "paths": paths, "skipped": {"torch-bf16": EMULATED_BF16}}


def test_job_ratios_are_over_the_baseline_and_none_without_it() -> None:
    paths = result({ORT_T256: 0.02, EAGER: 0.01, "fast": 0.05})["paths"]
    assert job_ratios(paths, ORT_T256) == pytest.approx({ORT_T256: 1.0, EAGER: 0.5, "fast": 2.5})
    assert job_ratios(paths, "missing") == {ORT_T256: None, EAGER: None, "fast": None}


def test_job_markdown_has_a_row_per_path_with_both_ratios_the_cost_and_the_skips() -> None:
    text = job_markdown({"1024x768": result({ORT_T256: 0.02, EAGER: 0.01, "fast": 0.05})}, costs={"fast": 0.031})
    lines = text.splitlines()
    assert lines[0] == "### 1024x768 (0.79 Mpx output)"
    assert f"| {ORT_T256} | rt | 256 (+40.0%) | 0.0200 | 1.00x | 2.00x | — |" in lines
    assert "| fast | rt | whole | 0.0500 | 2.50x | 5.00x | 0.031 |" in lines
    assert any(line.startswith(f"| torch-bf16 | skipped: {EMULATED_BF16} |") for line in lines)


def test_time_jobs_times_each_path_on_the_inputs_and_skips_what_cannot_run(tmp_path: Any, tiny_weights: Any) -> None:
    import numpy as np

    from vdsr_deploy.bench.jobs import time_jobs
    from vdsr_deploy.imageio import write_image

    image = tmp_path / "a.png"
    write_image(image, np.random.default_rng(0).random((20, 30, 3)), bit_depth=8)
    paths = [
        JobPath("tiled", "torch", "fp32", tile=16, batch=2),
        JobPath("auto", "torch", "fp32"),
        JobPath("fp16", "torch", "fp16"),
    ]
    events: list[dict[str, Any]] = []
    result = time_jobs(paths, [image], halo=4, repeats=2, warmup=0, weights=tiny_weights, warm_on=[image],
                       engines_dir=tmp_path / "e", on_event=events.append)  # fmt: skip
    assert result["output_megapixels"] == pytest.approx(40 * 60 / 1e6)
    assert set(result["paths"]) == {"tiled", "auto"} and "CUDA" in result["skipped"]["fp16"]
    tiled, auto = result["paths"]["tiled"], result["paths"]["auto"]
    assert tiled["tile"] == 16 and tiled["halo_overhead"] > 0 and len(tiled["seconds"]) == 2
    assert auto["tile"] == 0 and auto["halo_overhead"] == 0 and "--tile auto: whole images" in auto["tile_reason"]
    assert [e["path"] for e in events if e["event"] == "repeat"] == ["tiled", "auto", "tiled", "auto"]
    with pytest.raises(ConfigError, match="expected paths, inputs"):
        time_jobs(paths, [], weights=tiny_weights)


def test_photo_inputs_resizes_the_photo_and_makes_a_warm_up_copy(tmp_path: Path) -> None:
    from PIL import Image

    from vdsr_deploy.bench.jobs import photo_inputs

    source = tmp_path / "src.png"
    Image.new("L", (50, 40), 128).save(source)
    photo, small = photo_inputs(source, (31, 47), tmp_path)
    assert Image.open(photo).size == (47, 31) and Image.open(photo).mode == "RGB"
    assert Image.open(small).size == (64, 48)
