"""The training loop: recipe -> checkpoints, JSONL log, validation PSNR, final weights.

:func:`train` is the one entry point. It settles what the run trains on
(:mod:`train.settings`), prepares the data, builds or restores the model and optimizer
(:mod:`train.checkpoint`), then runs the steps (:mod:`train.step`) over the run's batches
(:mod:`train.batches`), validating (:mod:`train.validation`) and logging
(:mod:`train.progress`) as the recipe says. Events (dicts) go to an ``on_event`` callback
so the CLI can render progress; the loop itself prints nothing. Ctrl-C or SIGTERM stops
after the current step and saves ``last``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from train.batches import batch_stream
from train.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from train.config import TrainConfig
from train.data import PatchSampler, find_images, prepare_pairs
from train.ema import WeightAverage
from train.progress import EventSink, LossWindow, RunLog
from train.settings import RunSettings, load_initial_weights, run_settings
from train.step import learning_rate, make_optimizer, training_step
from train.validation import Validation, validate
from vdsr_deploy.backends.device import resolve_device
from vdsr_deploy.environment import training_hardware
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.evaluation import run as evaluate
from vdsr_deploy.imageio.folders import list_images
from vdsr_deploy.model.network import VDSR
from vdsr_deploy.model.weights import save_weights


@dataclass(frozen=True)
class TrainResult:
    """How a run ended. Every file named here loads as ``vdsr upscale --weights``:
    ``final_weights`` when the run finished, ``best_weights`` (best validation PSNR, if any
    validation ran) and ``checkpoint`` (the resumable state at ``iterations_done``)."""

    out_dir: Path
    iterations_done: int
    interrupted: bool
    best_psnr: dict[str, float]
    final_weights: Path | None
    wall_seconds: float
    iterations: int = 0
    best_weights: Path | None = None
    checkpoint: Path | None = None

    @property
    def weights(self) -> Path | None:
        """The weights to use from this run: the final ones, else the last checkpoint."""
        return self.final_weights or self.checkpoint


@dataclass(frozen=True)
class _Data:
    """The run's training batches and validation images."""

    sampler: PatchSampler
    pairs: int
    val_items: list[evaluate.EvalItem]


@dataclass
class _Run:
    """A run in progress: its settings, the model being trained, and what its checkpoint
    and weights files record (``step``, ``best``, ... change as it goes)."""

    settings: RunSettings
    out_dir: Path
    device: torch.device
    model: VDSR
    optimizer: torch.optim.Optimizer
    ema: WeightAverage | None
    pairs: int
    started: float
    step: int = 0
    best: dict[str, float] = field(default_factory=dict)
    final_choice: str = "weights"  # or "ema": which validated better at the last validation
    elapsed_before: float = 0.0
    initialised_from: dict[str, Any] | None = None

    @property
    def config(self) -> TrainConfig:
        return self.settings.config

    @property
    def last_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    def wall_seconds(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def checkpoint(self) -> None:
        """Write ``last.safetensors``: the resumable state at ``step``, folders absolute."""
        absolute = RunSettings(
            self.config,
            tuple(d.expanduser().resolve() for d in self.settings.data_dirs),
            self.settings.val_dir.expanduser().resolve() if self.settings.val_dir else None,
        )
        state = {
            "step": self.step,
            "config": self.config.to_dict(),
            "best": self.best,
            "wall_seconds": self.wall_seconds(),
            "initialised_from": self.initialised_from,
            **absolute.to_dict(),
        }
        save_checkpoint(self.last_path, self.model, self.optimizer, state, ema=self.ema)

    def save(self, model: VDSR, name: str, evaluation: dict[str, Any]) -> Path:
        """Write ``model`` as weights ``name`` in the run folder, with the training record."""
        training = {
            "recipe": self.config.to_dict(),
            "iterations": self.step,
            "wall_seconds": round(self.wall_seconds(), 1),
            "hardware": training_hardware(),
            "data": [str(d) for d in self.settings.data_dirs],
            "training_pairs": self.pairs,
            **({"initialised_from": self.initialised_from} if self.initialised_from else {}),
        }
        return save_weights(
            model,
            self.out_dir / name,
            scales=tuple(float(s) for s in self.config.scales),
            training=training,
            evaluation=evaluation,
        )


def train(
    config: TrainConfig | None,
    *,
    data_dirs: Sequence[Path] | None = None,
    out_dir: Path,
    val_dir: Path | None = None,
    resume: bool = False,
    init_weights: Path | None = None,
    device: str = "auto",
    data_workers: int = 0,
    on_event: EventSink | None = None,
) -> TrainResult:
    """Train VDSR with ``config``; checkpoints, log and weights go to ``out_dir``.

    ``out_dir/last.safetensors`` (resumable checkpoint), ``best.safetensors`` and
    ``final.safetensors`` (weights format, with the recipe and results in the metadata),
    ``log.jsonl``. Every one of them loads as weights (:func:`vdsr_deploy.model.weights.load_weights`).
    ``resume`` continues the run in ``last.safetensors`` with the recipe and folders recorded
    there: ``config``, ``data_dirs`` and ``val_dir`` may be left out (None), and a recipe or
    data folders that differ are refused (:func:`train.settings.settings_for_resume`).
    Without ``resume`` an existing checkpoint is an error, so no run is overwritten by
    accident. ``init_weights`` starts a new run from a weights file or checkpoint
    (fine-tuning; fresh optimizer state); its training record is kept in the metadata as
    ``initialised_from`` so the total compute stays accounted for. ``data_workers`` > 0 cuts
    the batches in that many worker processes ahead of the model (the batches are the same
    either way: each is a function of the seed and its step).

    Events: ``warning`` (message), ``preparing`` (images), ``prepared`` (pairs, seconds),
    ``start`` (step, iterations, resumed), ``train``, ``validate``, then ``finished`` or
    ``stopped``.
    """
    if data_workers < 0:
        raise TrainingError(f"data workers: expected >= 0, got {data_workers}")
    emit = on_event or (lambda event: None)
    started = time.time()
    torch_device = resolve_device(device)
    settings, warnings = run_settings(
        out_dir, config, data_dirs, val_dir, resume=resume, init_weights=init_weights
    )
    for message in warnings:
        emit({"event": "warning", "message": message})
    initial = (
        load_initial_weights(init_weights, settings.config) if init_weights is not None else None
    )
    data = _prepare_data(settings, emit)  # a missing data or validation folder fails before out_dir exists
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _start_run(settings, out_dir, torch_device, data.pairs, started, initial)
    if resume:
        _restore(run, emit)
    with closing(RunLog(out_dir / "log.jsonl", emit)) as log:
        emit({"event": "start", "step": run.step, "iterations": run.config.iterations, "resumed": resume})
        interrupted = _run_steps(run, data, log, data_workers)
        final = None if interrupted else _save_final_weights(run)
        log.record({"event": "stopped" if interrupted else "finished", "step": run.step})
    best_path = out_dir / "best.safetensors"
    return TrainResult(
        out_dir,
        run.step,
        interrupted,
        run.best,
        final,
        run.wall_seconds(),
        iterations=run.config.iterations,
        best_weights=best_path if run.best and best_path.is_file() else None,
        checkpoint=run.last_path,
    )


def _prepare_data(settings: RunSettings, emit: EventSink) -> _Data:
    """Training pairs and the patch sampler over them; validation images when a folder is set."""
    config = settings.config
    paths = find_images(settings.data_dirs)
    emit({"event": "preparing", "images": len(paths), "scales": list(config.scales)})
    preparing_since = time.time()
    pairs = prepare_pairs(paths, config.scales, config.patch_size)
    sampler = PatchSampler(
        pairs,
        patch_size=config.patch_size,
        seed=config.seed,
        augment=config.augment,
        scale_mix=dict(zip(config.scales, config.scale_mix, strict=True)) if config.scale_mix else None,
    )
    val_dir = settings.val_dir
    val_items = (
        evaluate.prepare_items(list_images(val_dir), config.scales) if val_dir else []
    )
    emit({"event": "prepared", "pairs": len(pairs), "validation_images": len(val_items),
          "seconds": time.time() - preparing_since})  # fmt: skip
    return _Data(sampler, len(pairs), val_items)


def _start_run(
    settings: RunSettings,
    out_dir: Path,
    device: torch.device,
    pairs: int,
    started: float,
    initial: tuple[dict[str, torch.Tensor], dict[str, Any]] | None,
) -> _Run:
    """The seeded model (from ``initial`` weights when given), its optimizer and average."""
    config = settings.config
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shape: pick the fastest kernels once
    torch.manual_seed(config.seed)
    model = VDSR(depth=config.depth, channels=config.channels).to(device)
    model = model.to(memory_format=_memory_format(config))  # type: ignore[call-overload]
    optimizer = make_optimizer(model, config)
    initialised_from: dict[str, Any] | None = None
    if initial is not None:
        state, initialised_from = initial
        model.load_state_dict(state)
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    return _Run(
        settings, out_dir, device, model, optimizer, ema, pairs, started, initialised_from=initialised_from
    )


def _restore(run: _Run, emit: EventSink) -> None:
    """Continue from the run's checkpoint: tensors, optimizer, step and record."""
    meta = load_checkpoint(run.last_path, run.model, run.optimizer, ema=run.ema)
    run.step = int(meta["step"])
    if run.step >= run.config.iterations:
        emit({"event": "warning", "message": f"the run in {run.out_dir} already did {run.step} of "
              f"{run.config.iterations} iterations; pass --iterations N to extend it"})  # fmt: skip
    run.best = dict(meta.get("best", {}))
    run.initialised_from = meta.get("initialised_from")
    run.elapsed_before = float(meta.get("wall_seconds", 0.0))


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _run_steps(run: _Run, data: _Data, log: RunLog, data_workers: int) -> bool:
    """Train from ``run.step`` to the recipe's iterations; True when stopped early (Ctrl-C,
    SIGTERM). The checkpoint is written every ``checkpoint_every`` steps and on the way out,
    whatever the way out."""
    config = run.config
    window = LossWindow()
    run.model.train()
    batches = batch_stream(
        data.sampler,
        range(run.step, config.iterations),
        config.batch_size,
        workers=data_workers,
        pin_memory=run.device.type == "cuda",
    )
    with _sigterm_requests_stop() as stop:
        try:
            while run.step < config.iterations:
                if stop.is_set():
                    return True
                lr, bf16, loss = _step(run, next(batches))
                window.add(loss)
                if run.step % config.log_every == 0 or run.step == config.iterations:
                    log.record(window.entry(run.step, lr, bf16=bf16))
                if data.val_items and (
                    run.step % config.validate_every == 0 or run.step == config.iterations
                ):
                    _validate_and_keep_best(run, data.val_items, log)
                    window.restart_clock()
                if run.step % config.checkpoint_every == 0:
                    run.checkpoint()
        except KeyboardInterrupt:
            return True
        except RuntimeError as error:  # e.g. CUDA out of memory, a data worker killed
            raise TrainingError(
                f"training failed at iteration {run.step} ({error}); the last checkpoint is kept "
                f"in {run.last_path}: continue with --resume"
            ) from error
        finally:
            batches.close()
            run.checkpoint()
    return False


def _step(run: _Run, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, bool, float]:
    """Step ``run.step`` on ``batch`` (CPU tensors) at the schedule's learning rate, in bf16
    unless the recipe's last steps are fp32; then the average and ``run.step`` advance.
    The learning rate, whether bf16 was used, and the loss."""
    config = run.config
    lr = learning_rate(config, run.step)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    inputs_cpu, targets_cpu = batch
    inputs = inputs_cpu.to(run.device, non_blocking=True).contiguous(
        memory_format=_memory_format(config)
    )
    targets = targets_cpu.to(run.device, non_blocking=True)
    bf16 = config.precision == "bf16" and run.step < config.iterations - config.fp32_final_iterations
    loss = training_step(run.model, run.optimizer, inputs, targets, config, lr, bf16=bf16)
    if loss is None:
        raise TrainingError(f"loss stopped being finite at iteration {run.step}: lower lr or theta")
    if run.ema is not None:
        run.ema.update(run.model)
    run.step += 1
    return lr, bf16, loss.item()


def _validate_and_keep_best(run: _Run, items: Sequence[evaluate.EvalItem], log: RunLog) -> None:
    """Validate, log it, and write ``best.safetensors`` when the candidate beats the best."""
    validation: Validation = validate(run.model, run.ema, items, run.device, run.config.scales)
    if run.ema is not None:
        run.final_choice = validation.choice
    log.record(validation.entry(run.step))
    if validation.candidate_mean > run.best.get("mean", -math.inf):
        run.best = {**validation.candidate_scores, "mean": validation.candidate_mean, "step": run.step}
        if run.ema is not None:
            run.best["ema"] = float(validation.candidate is run.ema.model)
        run.save(validation.candidate, "best.safetensors", {"validation": run.best})


def _save_final_weights(run: _Run) -> Path:
    """``final.safetensors`` (the average instead when it validated better) and, with an
    average, ``ema.safetensors``."""
    ema = run.ema
    chosen = {"final_weights": run.final_choice} if ema is not None else {}
    final = run.save(
        ema.model if ema is not None and run.final_choice == "ema" else run.model,
        "final.safetensors",
        {"validation": run.best, **chosen},
    )
    if ema is not None:
        run.save(ema.model, "ema.safetensors", {"validation": run.best, "weights": "ema"})
    return final


@contextmanager
def _sigterm_requests_stop() -> Iterator[threading.Event]:
    """An event that SIGTERM sets (Ctrl-C arrives as KeyboardInterrupt), so the loop stops
    after the current step; the previous handler is put back after. Off the main thread
    (where signal handlers cannot be set) the event is never set."""
    stop = threading.Event()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set()) if on_main_thread else None
    try:
        yield stop
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
