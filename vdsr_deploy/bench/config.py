"""What a benchmark times: :class:`BenchSetting` (one backend/precision/tile/batch to time),
the sweeps that list settings (:func:`sweep`, :func:`cpu_path_settings`), the default work
size per device, and :class:`BenchConfig` (the whole run). Frozen and validated; nothing here
runs a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.backends import openvino
from vdsr_deploy.backends.device import cuda_available
from vdsr_deploy.backends.registry import REGISTRY
from vdsr_deploy.environment import cpu_flags
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.planes.tiling import DEFAULT_HALO, DEFAULT_TILE, TileConfig
from vdsr_deploy.precision.decision import BF16_FLAGS
from vdsr_deploy.precision.names import PRECISIONS

SUPPORTED = {name: backend.precisions for name, backend in REGISTRY.items()}
"""Each backend's precisions, from the registry."""
BACKENDS = tuple(SUPPORTED)
ONNX_FILE_BACKENDS = ("onnxruntime", "openvino")
"""The backends a sweep's ``onnx`` file is given to (at the file's own precision)."""
CPU_BASELINE = "onnxruntime-fp32"
"""The label of the baseline :func:`cpu_path_settings` puts first: ONNX Runtime FP32 on the CPU."""


@dataclass(frozen=True)
class BenchSetting:
    """One configuration to time. ``channels_last``/``allow_tf32`` apply to torch;
    ``onnx`` makes onnxruntime/openvino/tensorrt use that file (e.g. an INT8 QDQ model, which is
    then ``precision`` int8; without it, int8 uses the cached INT8 model, built on first
    use); ``label`` names it in tables (default: derived)."""

    backend: str = "torch"
    precision: str = "fp32"
    device: str = "auto"
    provider: str = "cpu"
    tile: int = DEFAULT_TILE
    batch: int = 1
    channels_last: bool = True
    allow_tf32: bool = False
    onnx: Path | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision not in SUPPORTED[self.backend]:
            raise ConfigError(
                f"{self.backend} has no {self.precision} path "
                f"(it has {', '.join(SUPPORTED[self.backend])})"
            )
        self.pipeline_config(scale=2.0, halo=0)  # batch >= 1, tile >= 0; the halo is the run's

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        layout = "" if self.backend != "torch" or self.channels_last else "-nchw"
        provider = (
            f"-{self.provider}" if self.backend == "onnxruntime" and self.provider != "cpu" else ""
        )
        tile = self.tile or "full"
        return f"{self.backend}{provider}-{self.precision}{layout}-t{tile}-b{self.batch}"

    def pipeline_config(self, scale: float, halo: int, *, ensemble: bool = False) -> PipelineConfig:
        """The pipeline this setting runs at ``scale`` with ``halo`` (none when untiled)."""
        tiling = TileConfig(tile=self.tile, halo=halo if self.tile else 0)
        return PipelineConfig(scale=scale, tiling=tiling, batch=self.batch, ensemble=ensemble)


def sweep(
    backends: Sequence[str],
    precisions: Sequence[str],
    tiles: Sequence[int],
    batches: Sequence[int],
    *,
    device: str = "auto",
    provider: str = "cpu",
    onnx: Path | None = None,
    onnx_precision: str | None = None,
) -> tuple[list[BenchSetting], list[str]]:
    """Every backend x precision x tile x batch that exists, and a note per combination left
    out (e.g. onnxruntime has no bf16 path). With ``onnx`` the onnxruntime and openvino
    settings use that file at its own precision (``onnx_precision``, e.g. int8 for a quantized model)."""
    settings: list[BenchSetting] = []
    notes: list[str] = []
    for backend in backends:
        if backend not in SUPPORTED:
            raise ConfigError(f"backend: expected one of {', '.join(SUPPORTED)}, got {backend!r}")
        wanted = (
            [onnx_precision or "fp32"] if backend in ONNX_FILE_BACKENDS and onnx else list(precisions)
        )
        for precision in dict.fromkeys(wanted):
            if precision not in SUPPORTED[backend]:
                notes.append(f"{backend} has no {precision} path: left out")
                continue
            for tile in tiles:
                for batch in batches:
                    settings.append(
                        BenchSetting(
                            backend=backend,
                            precision=precision,
                            device=device,
                            provider=provider,
                            tile=tile,
                            batch=batch,
                            onnx=onnx if backend in ONNX_FILE_BACKENDS else None,
                        )
                    )
    if not settings:
        raise ConfigError("no backend/precision combination left to benchmark: " + "; ".join(notes))
    return settings, notes


def cpu_path_settings(
    tile: int, *, batch: int = 1, int8_models: dict[str, Path] | None = None, eager: bool = True
) -> list[BenchSetting]:
    """Every CPU path: ONNX Runtime FP32 (the baseline, first, labelled
    :data:`CPU_BASELINE`), PyTorch FP32 (NCHW and channels-last), PyTorch bf16 channels-last,
    ONNX Runtime INT8 (the cached model ``--precision int8`` uses), any extra INT8 models
    given (``label -> ONNX``) and, when openvino is installed, OpenVINO FP32 and INT8 (and
    bf16 on CPUs with bf16 hardware; OpenVINO would emulate it elsewhere)."""
    settings = [BenchSetting("onnxruntime", "fp32", tile=tile, batch=batch, label=CPU_BASELINE)]
    if eager:
        settings.append(
            BenchSetting(
                "torch", "fp32", device="cpu", tile=tile, batch=batch, channels_last=False, label="torch-fp32-nchw"
            )
        )
    settings += [
        BenchSetting("torch", "fp32", device="cpu", tile=tile, batch=batch, label="torch-fp32-channels-last"),
        BenchSetting("torch", "bf16", device="cpu", tile=tile, batch=batch, label=_bf16_label()),
        BenchSetting("onnxruntime", "int8", tile=tile, batch=batch, label="onnxruntime-int8"),
    ]
    for label, path in (int8_models or {}).items():
        settings.append(BenchSetting("onnxruntime", "int8", tile=tile, batch=batch, onnx=path, label=label))
    if openvino.installed():
        precisions = ["fp32", "int8"] + (["bf16"] if BF16_FLAGS.intersection(cpu_flags()) else [])
        settings += [
            BenchSetting("openvino", precision, device="cpu", tile=tile, batch=batch, label=f"openvino-{precision}")
            for precision in precisions
        ]
    return settings


def _bf16_label() -> str:
    native = BF16_FLAGS.intersection(cpu_flags())
    return "torch-bf16-channels-last" + ("" if native else "-emulated")


CPU_SIZE = (256, 256)
GPU_SIZE = (2160, 3840)  # a 3840x2160 output, from 1920x1080 at x2
GPU_FRAMES = 8


def large_work_defaults(settings: Sequence[BenchSetting]) -> tuple[tuple[int, int], int]:
    """Default output size and job frames: large work (4K output, 8 frames) when any setting
    runs on a GPU, else the CPU's small image and no job."""
    on_gpu = any(
        s.backend == "tensorrt"
        or (s.backend == "onnxruntime" and s.provider != "cpu")
        or s.device.startswith("cuda")
        or (s.device == "auto" and s.backend == "torch" and cuda_available())
        for s in settings
    )
    return (GPU_SIZE, GPU_FRAMES) if on_gpu else (CPU_SIZE, 0)


@dataclass(frozen=True)
class BenchConfig:
    """What :func:`~vdsr_deploy.bench.benchmark` runs. ``size``: output image (height,
    width); ``scale``: its input is ``size / scale``; ``repeats`` timed runs per path after
    ``warmup`` runs, cut short after ``max_seconds`` per setting (at least ``min_repeats``);
    ``baseline``: the setting name throughput ratios are reported against; ``frames``: also
    time a batch job (:func:`~vdsr_deploy.job.run_job`: decode, upscale, PNG encode, atomic
    write) over that many PNG frames of the input size, end to end; ``ensemble``: time the x8
    self-ensemble (:mod:`vdsr_deploy.planes.ensemble`: the tiles of all eight transformed planes,
    8x the compute, on the host path; Mpx/s still counts output pixels)."""

    settings: tuple[BenchSetting, ...]
    weights: Path | None = None
    size: tuple[int, int] = (256, 256)
    scale: float = 2.0
    halo: int = DEFAULT_HALO
    warmup: int = 1
    repeats: int = 10
    min_repeats: int = 3
    max_seconds: float = 120.0
    threads: int = 0
    pipeline: bool = True
    interleave: bool = True
    baseline: str | None = None
    engines_dir: Path | None = None
    note: str = ""
    frames: int = 0
    ensemble: bool = False

    def __post_init__(self) -> None:
        if self.frames < 0:
            raise ConfigError(f"frames: expected >= 0, got {self.frames}")
        if not self.settings:
            raise ConfigError("expected at least one setting to benchmark")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ConfigError(f"settings: names must be unique, got {names}")
        if len(self.size) != 2 or min(self.size) < 1:
            raise ConfigError(f"size: expected (height, width) >= 1, got {self.size}")
        for setting in self.settings:
            self.pipeline_for(setting)  # scale > 1, tile > 2 * halo
        if self.warmup < 0 or self.repeats < 1 or not 1 <= self.min_repeats <= self.repeats:
            raise ConfigError(
                f"expected warmup >= 0 and 1 <= min_repeats <= repeats, got warmup {self.warmup}, "
                f"min_repeats {self.min_repeats}, repeats {self.repeats}"
            )
        if not self.max_seconds > 0:  # NaN too
            raise ConfigError(f"max_seconds: expected > 0, got {self.max_seconds}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")
        if self.baseline is not None and self.baseline not in names:
            raise ConfigError(f"baseline: expected one of {', '.join(names)}, got {self.baseline!r}")

    def pipeline_for(self, setting: BenchSetting) -> PipelineConfig:
        """The pipeline ``setting`` runs in this benchmark (scale, halo, ensemble)."""
        return setting.pipeline_config(self.scale, self.halo, ensemble=self.ensemble)
