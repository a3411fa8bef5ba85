"""vdsr bench's harness: sane, positive numbers and a stable JSON schema, on a tiny model in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vdsr_deploy.bench import BenchConfig, BenchSetting, benchmark, render_markdown, write_plot
from vdsr_deploy.cli import app
from vdsr_deploy.model.network import flops_per_pixel
from vdsr_deploy.planes.tiling import TileConfig, plan_tiles


def config_for(
    weights: Path, tmp_path: Path, settings: tuple[BenchSetting, ...], **extra: object
) -> BenchConfig:
    options: dict[str, object] = {
        "weights": weights,
        "size": (50, 44),
        "halo": 4,
        "warmup": 1,
        "repeats": 3,
        "min_repeats": 2,
        "engines_dir": tmp_path / "engines",
    }
    options.update(extra)
    return BenchConfig(settings=settings, **options)  # type: ignore[arg-type]


def test_benchmark_numbers_and_schema(tmp_path: Path, weights: Path) -> None:
    settings = (
        BenchSetting("torch", "fp32", device="cpu", tile=24, batch=2),
        BenchSetting("torch", "fp32", device="cpu", tile=24, batch=2, channels_last=False),
        BenchSetting("onnxruntime", "fp32", tile=24, batch=2),
        BenchSetting("torch", "fp16", device="cpu", tile=24),
        BenchSetting("tensorrt", "fp16", tile=24),
    )
    config = config_for(
        weights, tmp_path, settings, baseline="onnxruntime-fp32-t24-b2", note="test run"
    )
    result = benchmark(config)
    json.loads(json.dumps(result))  # JSON-ready
    assert result["schema"] == "vdsr-bench/1"
    assert set(result) >= {"created", "machine", "versions", "threads", "config", "results", "note"}
    assert result["machine"]["logical_cpus"] >= 1 and result["versions"]["torch"]
    assert result["config"]["flops_per_pixel"] == flops_per_pixel(3, 4)
    by_name = {r["name"]: r for r in result["results"]}
    assert list(by_name) == [s.name for s in settings]
    assert by_name["torch-fp16-t24-b1"]["status"] == "skipped"
    if not torch.cuda.is_available():
        assert by_name["tensorrt-fp16-t24-b1"]["status"] == "skipped"
    tiles = len(plan_tiles(50, 44, TileConfig(tile=24, halo=4)))
    for name in ("torch-fp32-t24-b2", "torch-fp32-nchw-t24-b2", "onnxruntime-fp32-t24-b2"):
        item = by_name[name]
        assert item["status"] == "ok", item["reason"]
        assert item["output_shape"] == [50, 44]
        assert item["tiles_per_image"] == tiles
        assert item["calls_per_image"] >= tiles / 2
        for path in ("runtime", "pipeline"):
            figures = item[path]
            latency = figures["latency_ms"]
            assert 2 <= figures["repeats"] <= 3
            assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"]
            assert figures["images_per_second"] == pytest.approx(1000 / latency["mean"])
            assert figures["megapixels_per_second"] == pytest.approx(
                50 * 44 / 1e6 * figures["images_per_second"]
            )
            # GFLOP/s from the definitions: tiles (halos included) vs output pixels only
            seconds = latency["mean"] / 1000
            assert figures["network_gflops_per_second"] == pytest.approx(
                item["network_pixels_per_image"] * result["config"]["flops_per_pixel"] / seconds / 1e9
            )
            assert figures["equivalent_gflops_per_second"] == pytest.approx(
                50 * 44 * result["config"]["flops_per_pixel"] / seconds / 1e9
            )
        assert item["network_pixels_per_image"] > 50 * 44  # halos: more network than output pixels
        assert item["pipeline_overhead"] == pytest.approx(
            item["pipeline"]["latency_ms"]["mean"] / item["runtime"]["latency_ms"]["mean"]
        )
        assert item["runner"]["label"].startswith(name.split("-")[0])
    base = by_name["onnxruntime-fp32-t24-b2"]
    for name in ("torch-fp32-t24-b2", "torch-fp32-nchw-t24-b2", "onnxruntime-fp32-t24-b2"):
        for path in ("runtime", "pipeline"):  # throughput / the baseline's, measured in this run
            assert by_name[name]["ratio_vs_baseline"][path] == pytest.approx(
                by_name[name][path]["megapixels_per_second"] / base[path]["megapixels_per_second"]
            )
    assert "ratio_vs_baseline" not in by_name["torch-fp16-t24-b1"]  # skipped: no figures
    markdown = render_markdown(result)
    assert "torch-fp32-nchw-t24-b2" in markdown and "skipped" in markdown and "test run" in markdown
    assert write_plot(result, tmp_path / "bench.png") is not None
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_cli_bench(tmp_path: Path, weights: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["bench", "-b", "torch", "-b", "onnxruntime", "-t", "0", "--size", "24x20", "--warmup", "0",
         "--repeats", "2", "--halo", "4", "-w", str(weights), "--engines-dir", str(tmp_path / "e"),
         "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"bench.json", "bench.md", "bench.png"}
    data = json.loads((out / "bench.json").read_text())
    assert [r["status"] for r in data["results"]] == ["ok", "ok"]
    bad = CliRunner().invoke(app, ["bench", "--size", "12xq", "-w", str(weights)])
    assert bad.exit_code == 2 and "error:" in bad.output  # a usage error


def test_importing_parity_and_bench_loads_no_runtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, vdsr_deploy.bench, vdsr_deploy.parity, vdsr_deploy.parity.report, "
        "vdsr_deploy.parity.plots, vdsr_deploy.export.quantize; "
        "heavy = ('torch', 'onnxruntime', 'matplotlib', 'tensorrt'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    output = done.stdout
    assert output.strip() == "[]"
