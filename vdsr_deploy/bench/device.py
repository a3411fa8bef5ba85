"""What timing on a CUDA device needs beyond the wall clock: whether a runner computes on
one (:func:`on_cuda`), the setting's TF32 choice while its case is timed (:func:`tf32_for`),
and the share of the GPU's dense tensor-core peak a result reaches (:data:`TENSOR_PEAKS`,
:func:`device_peak_tflops`, :func:`add_device_share`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vdsr_deploy.bench.config import BenchSetting
from vdsr_deploy.runner import Runner

# Dense tensor-core peaks from NVIDIA's datasheets (TFLOP/s without sparsity) and the SM
# counts they are quoted for; a MIG slice or another SM count scales them.
TENSOR_PEAKS: dict[str, tuple[int, dict[str, float]]] = {
    "H200": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 SXM": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 80GB HBM3": (132, {"fp16": 989.4, "bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    "H100 NVL": (132, {"fp16": 835.0, "bf16": 835.0, "tf32": 417.5, "fp32": 60.0}),
    "H100 PCIe": (114, {"fp16": 756.0, "bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    "A100": (108, {"fp16": 312.0, "bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
}


def on_cuda(runner: Runner) -> bool:
    """Whether ``runner`` computes on a CUDA device (its timings then wait for the device)."""
    info = runner.info
    return info.device.startswith("cuda") or info.backend == "tensorrt" or info.device == "tensorrt"


@contextmanager
def tf32_for(setting: BenchSetting, runner: Runner | None) -> Iterator[None]:
    """The setting's TF32 choice for PyTorch on CUDA while its case is timed (activating
    another runner changes the process-wide flags, so each case sets its own)."""
    if setting.backend != "torch" or runner is None or not on_cuda(runner):
        yield
        return
    from vdsr_deploy.backends.torch.runner import set_tf32, tf32_state

    saved = tf32_state()
    set_tf32(setting.allow_tf32)
    try:
        yield
    finally:
        set_tf32(saved)


def device_peak_tflops(name: str, multiprocessors: int, precision: str) -> tuple[float, str] | None:
    """Dense peak of a known GPU for ``precision`` (fp16, bf16, tf32, fp32) and its source,
    scaled to ``multiprocessors``; None for a GPU not in :data:`TENSOR_PEAKS`."""
    for key, (sms, peaks) in TENSOR_PEAKS.items():
        if key in name and precision in peaks:
            scaled = peaks[precision] * multiprocessors / sms if multiprocessors else peaks[precision]
            return scaled, f"NVIDIA datasheet, {key}, dense {precision}, {multiprocessors}/{sms} SMs"
    return None


def add_device_share(result: dict[str, Any]) -> None:
    """``device_peak``: the share of the GPU's dense limit that the output pixels' FLOPs reach
    (bare runner and end to end), for a result on a CUDA device PyTorch knows."""
    runner = result.get("runner")
    if result.get("runtime") is None or runner is None or not str(runner["device"]).startswith("cuda"):
        return
    import torch

    device = torch.device(runner["device"])
    properties = torch.cuda.get_device_properties(device)
    precision = runner["precision"]
    if precision == "fp32" and result["setting"].get("allow_tf32"):
        precision = "tf32"
    peak = device_peak_tflops(properties.name, properties.multi_processor_count, precision)
    if peak is None:
        return
    tflops, source = peak
    shares = {"peak_tflops": tflops, "precision": precision, "source": source}
    for path in ("runtime", "pipeline", "job"):
        if result.get(path):
            shares[path] = result[path]["equivalent_gflops_per_second"] / 1e3 / tflops
    result["device_peak"] = shares
