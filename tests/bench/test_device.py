"""vdsr bench's GPU-facing parts on the CPU: the batch-job path, halo overhead, GFLOP/s of
output pixels, TF32 set per case, the default large work, the dense-peak table."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from vdsr_deploy.bench import (
    CPU_SIZE,
    BenchConfig,
    BenchSetting,
    benchmark,
    device_peak_tflops,
    large_work_defaults,
    render_markdown,
)
from vdsr_deploy.bench.device import tf32_for


def test_job_path_halo_and_output_pixel_gflops(tmp_path: Path, weights: Path) -> None:
    setting = BenchSetting("torch", "fp32", device="cpu", tile=24, batch=2)
    config = BenchConfig(settings=(setting,), weights=weights, size=(50, 44), halo=4, warmup=0,
                         repeats=2, min_repeats=1, frames=3)  # fmt: skip
    result = benchmark(config)
    item = result["results"][0]
    assert item["status"] == "ok", item["reason"]
    runtime, job = item["runtime"], item["job"]
    assert runtime["halo_overhead"] == item["network_pixels_per_image"] / (50 * 44) > 1.0
    assert runtime["network_gflops_per_second"] == pytest.approx(
        runtime["equivalent_gflops_per_second"] * runtime["halo_overhead"]
    )
    assert job["frames"] == 3 and job["repeats"] == 2
    # one timing covers three frames: throughput per frame x 3
    assert job["megapixels_per_second"] == pytest.approx(3 * 50 * 44 / 1e6 / (job["latency_ms"]["mean"] / 1e3))
    assert item["job_vs_runtime"] == pytest.approx(job["megapixels_per_second"] / runtime["megapixels_per_second"])
    assert item["pipeline_path"] == "host"  # CPU runners keep the numpy path
    markdown = render_markdown(result)
    assert "halo 2." in markdown or "halo 1." in markdown
    assert "| torch-fp32-t24-b2 |" in markdown and "(3) |" in markdown and "not a GPU" in markdown


def test_tf32_is_set_per_case_and_restored() -> None:
    cuda_runner = SimpleNamespace(info=SimpleNamespace(device="cuda:0", backend="torch"))
    from vdsr_deploy.backends.torch.runner import tf32_state

    saved = tf32_state()  # the current fp32_precision API (issue 22): the legacy flags may raise
    for allow in (True, False):
        with tf32_for(BenchSetting("torch", "fp32", device="cuda", allow_tf32=allow), cuda_runner):  # type: ignore[arg-type]
            assert tf32_state() == (("tf32", "tf32") if allow else ("ieee", "ieee"))
        assert tf32_state() == saved


def test_large_work_defaults_follow_the_device() -> None:
    assert large_work_defaults([BenchSetting("torch", "fp32", device="cpu")]) == (CPU_SIZE, 0)
    assert large_work_defaults([BenchSetting("torch", "fp16", device="cuda")]) == ((2160, 3840), 8)
    assert large_work_defaults([BenchSetting("onnxruntime", "fp32", provider="cuda")])[1] == 8


def test_device_peaks_scale_with_the_multiprocessors() -> None:
    full = device_peak_tflops("NVIDIA H200", 132, "fp16")
    assert full is not None and full[0] == pytest.approx(989.4)
    half = device_peak_tflops("NVIDIA H100 80GB HBM3", 66, "tf32")
    assert half is not None and half[0] == pytest.approx(494.7 / 2) and "66/132 SMs" in half[1]
    assert device_peak_tflops("NVIDIA GeForce RTX 4090", 128, "fp16") is None


def test_device_forms_are_timed_for_runners_on_a_device(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a CUDA runner gets (here on the CPU device): the bare runner on batches already on
    its device through infer_tensor, the pipeline through the device path."""
    import vdsr_deploy.planes.device_pipeline as device_pipeline

    monkeypatch.setattr(device_pipeline, "use_device_path", lambda runner: True)
    setting = BenchSetting("torch", "fp32", device="cpu", tile=24, batch=2)
    config = BenchConfig(settings=(setting,), weights=weights, size=(50, 44), halo=4, warmup=0,
                         repeats=1, min_repeats=1, frames=2)  # fmt: skip
    item = benchmark(config)["results"][0]
    assert item["status"] == "ok", item["reason"]
    assert item["runtime_form"] == "device tensors" and item["pipeline_path"] == "device"
    assert item["pipeline"]["megapixels_per_second"] > 0 and item["job"]["frames"] == 2
