"""The training loop: recipe -> checkpoints, JSONL log, validation PSNR, final weights.

Events (dicts) go to an ``on_event`` callback so the CLI can render progress; the loop
itself prints nothing. Checkpoints are safetensors (model + optimizer state) with JSON
metadata: no pickle. Ctrl-C or SIGTERM stops after the current step and saves ``last``.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from train.config import TrainConfig, config_from_dict
from train.data import PatchSampler, find_images, prepare_pairs
from train.ema import WeightAverage
from vdsr_deploy import evaluate
from vdsr_deploy.backends.device import resolve_device
from vdsr_deploy.environment import portable_path, training_hardware
from vdsr_deploy.errors import TrainingError
from vdsr_deploy.fileops import atomic_path, with_default_permissions
from vdsr_deploy.model import VDSR
from vdsr_deploy.weights import (
    CHECKPOINT_METADATA_KEY,
    CHECKPOINT_MODEL_PREFIX,
    load_weights,
    save_weights,
)

EventSink = Callable[[dict[str, Any]], None]
CHECKPOINT_META_KEY = CHECKPOINT_METADATA_KEY
CHECKPOINT_NAME = "last.safetensors"


def learning_rate(config: TrainConfig, step: int) -> float:
    """Learning rate for 0-based ``step``: optional linear warm-up, then step or cosine decay."""
    if config.warmup_iterations and step < config.warmup_iterations:
        return config.lr * (step + 1) / config.warmup_iterations
    if config.schedule == "step":
        drops = sum(1 for milestone in config.lr_milestones if step >= milestone)
        return float(config.lr * config.lr_gamma**drops)
    start = config.warmup_iterations
    progress = min(1.0, (step - start) / max(1, config.iterations - start))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def clip_gradients(
    parameters: Iterable[nn.Parameter], mode: str, theta: float, lr: float, base_lr: float | None = None
) -> None:
    """The paper's adjustable clipping: each gradient element to ``[-theta/lr, theta/lr]``.

    With SGD, a clipped element then moves by at most ``theta`` per step whatever the lr, so
    the lr schedule stops annealing once most elements are clipped. ``value_base_lr`` clips to
    ``theta/base_lr`` instead (a fixed bound: the step bound decays with the lr). ``norm_lr``
    scales the whole gradient so its L2 norm is at most ``theta/lr``.
    """
    if mode == "none":
        return
    if mode not in ("value_lr", "value_base_lr", "norm_lr"):
        raise TrainingError(f"unknown clip mode {mode!r}")
    if mode == "value_base_lr" and base_lr is None:
        raise TrainingError("value_base_lr clipping needs the recipe's base lr")
    bound = theta / (base_lr if mode == "value_base_lr" and base_lr is not None else lr)
    grads = [p.grad for p in parameters if p.grad is not None]
    if mode == "norm_lr":
        _clip_norm(grads, bound)
        return
    for grad in grads:
        grad.clamp_(-bound, bound)


def _clip_norm(grads: Sequence[torch.Tensor], bound: float) -> None:
    if not grads:
        return
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    factor = bound / (float(total) + 1e-6)
    if factor < 1:
        for grad in grads:
            grad.mul_(factor)


def loss_fn(output: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    diff = output.float() - target
    if kind == "half_sum":
        return 0.5 * diff.pow(2).sum() / output.shape[0]
    if kind == "l1":
        return diff.abs().mean()
    return diff.pow(2).mean()


def training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    lr: float,
    *,
    bf16: bool,
) -> torch.Tensor | None:
    """One optimizer step (bf16 autocast when ``bf16``); the loss, or None (and no update)
    when the loss is not finite."""
    autocast: AbstractContextManager[Any] = (
        torch.autocast(inputs.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    )
    with autocast:
        output = model(inputs)
    loss = loss_fn(output, targets, config.loss)
    if not torch.isfinite(loss):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    clip_gradients(model.parameters(), config.clip, config.theta, lr, config.lr)
    optimizer.step()
    return loss.detach()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay
    )


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    *,
    ema: WeightAverage | None = None,
) -> None:
    """Model, EMA and optimizer tensors as safetensors; everything else as JSON metadata."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {
        f"{CHECKPOINT_MODEL_PREFIX}{k}": v.detach().float().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    if ema is not None:
        tensors.update(
            {f"ema.{k}": v.detach().float().contiguous().clone() for k, v in ema.model.state_dict().items()}
        )
    optimizer_state = optimizer.state_dict()
    scalars: dict[str, dict[str, float]] = {}
    for index, param_state in optimizer_state["state"].items():
        for key, value in param_state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                tensors[f"optim.{index}.{key}"] = value.detach().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = float(value)
    meta = {**state, "optimizer_scalars": scalars, "param_groups": optimizer_state["param_groups"]}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={CHECKPOINT_META_KEY: json.dumps(meta)})
        with_default_permissions(temporary)


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    ema: WeightAverage | None = None,
) -> dict[str, Any]:
    """Restore ``model``, ``optimizer`` and (when the checkpoint has one) ``ema``; the
    checkpoint's metadata. An EMA the checkpoint lacks restarts from the restored model."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})[CHECKPOINT_META_KEY])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise TrainingError(f"{path}: not a vdsr training checkpoint ({error})") from error
    model_state = {
        k[len(CHECKPOINT_MODEL_PREFIX) :]: v
        for k, v in tensors.items()
        if k.startswith(CHECKPOINT_MODEL_PREFIX)
    }
    try:
        model.load_state_dict(model_state)
    except RuntimeError as error:
        raise TrainingError(
            f"{path}: checkpoint does not match the model in the config ({error})"
        ) from error
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": meta["param_groups"]}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = value
    parameters = list(model.parameters())
    for index, values in meta["optimizer_scalars"].items():
        for key, value in values.items():
            shape = () if key == "step" else parameters[int(index)].shape
            stored = torch.full(shape, value, dtype=torch.float32)
            optimizer_state["state"].setdefault(int(index), {})[key] = stored
    optimizer.load_state_dict(optimizer_state)
    if ema is not None:
        ema_state = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
        ema.model.load_state_dict(ema_state or model.state_dict())
    return dict(meta)


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
class RunSettings:
    """What a run trains on: the recipe and the folders. A resumed run keeps them."""

    config: TrainConfig
    data_dirs: tuple[Path, ...]
    val_dir: Path | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "data_dirs": [str(d) for d in self.data_dirs],
            "val_dir": str(self.val_dir) if self.val_dir else None,
        }


def read_run_settings(checkpoint: Path) -> RunSettings:
    """The recipe and folders recorded in a training checkpoint (tensors are not read).
    Checkpoints written before the folders were recorded give no ``data_dirs``."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(checkpoint), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {})[CHECKPOINT_META_KEY])
        config = config_from_dict(dict(meta["config"]), source=str(checkpoint))
    except (SafetensorError, OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise TrainingError(f"{checkpoint}: not a vdsr training checkpoint ({error})") from error
    val_dir = meta.get("val_dir")
    return RunSettings(
        config=config,
        data_dirs=tuple(Path(d) for d in meta.get("data_dirs") or ()),
        val_dir=Path(val_dir) if val_dir else None,
    )


def resumed_config(out_dir: Path, *, iterations: int | None = None) -> TrainConfig:
    """The recipe of the run in ``out_dir`` (optionally with another iteration count): what
    ``vdsr train --resume`` continues when no recipe is given."""
    checkpoint = out_dir / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise TrainingError(f"{checkpoint}: nothing to resume from")
    config = read_run_settings(checkpoint).config
    return config if iterations is None else config.replace(iterations=iterations)


def _same_folder(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def settings_for_resume(
    checkpoint: Path,
    config: TrainConfig | None,
    data_dirs: Sequence[Path] | None,
    val_dir: Path | None,
) -> tuple[RunSettings, list[str]]:
    """The settings a resumed run continues with, and warnings.

    What is not given comes from the checkpoint. A recipe or data folders that differ from
    the checkpoint's are refused (the run would silently become another run); a different
    iteration count is accepted with a warning (it extends or shortens the run, and a cosine
    schedule is recomputed for the new length); a different validation folder likewise.
    """
    recorded = read_run_settings(checkpoint)
    warnings: list[str] = []
    chosen = recorded.config
    if config is not None:
        before, after = recorded.config.to_dict(), config.to_dict()
        differing = [k for k in before if k != "iterations" and before[k] != after[k]]
        if differing:
            listed = "; ".join(
                f"{key} is {before[key]!r} there, {after[key]!r} given" for key in differing[:4]
            ) + (f"; and {len(differing) - 4} more" if len(differing) > 4 else "")
            raise TrainingError(
                f"{checkpoint}: --config differs from the run being resumed ({listed}); "
                "a resumed run keeps its recipe: leave --config out, or start a new run from "
                f"its weights with --init-weights {checkpoint} --out NEW_FOLDER"
            )
        if config.iterations != recorded.config.iterations:
            warnings.append(
                f"--iterations {config.iterations} changes the run being resumed "
                f"({recorded.config.iterations} in {checkpoint})"
                + ("; its cosine schedule is recomputed for the new length" if config.schedule == "cosine" else "")
            )
        chosen = config
    if data_dirs:
        given = tuple(Path(d) for d in data_dirs)
        if recorded.data_dirs and (
            len(given) != len(recorded.data_dirs)
            or not all(_same_folder(a, b) for a, b in zip(given, recorded.data_dirs, strict=True))
        ):
            raise TrainingError(
                f"{checkpoint}: --data {' '.join(map(str, given))} differs from the run being "
                f"resumed ({' '.join(map(str, recorded.data_dirs))}); leave --data out to "
                "continue on the same images"
            )
        chosen_data = recorded.data_dirs or given
    elif recorded.data_dirs:
        chosen_data = recorded.data_dirs
    else:
        raise TrainingError(
            f"{checkpoint} does not record its data folders (an older checkpoint): pass --data"
        )
    chosen_val = recorded.val_dir
    if val_dir is not None:
        if recorded.val_dir is not None and not _same_folder(val_dir, recorded.val_dir):
            warnings.append(
                f"--val {val_dir} differs from the run being resumed ({recorded.val_dir}): "
                "the best checkpoint is now chosen on another set"
            )
        chosen_val = val_dir
    return RunSettings(chosen, chosen_data, chosen_val), warnings


class _StopFlag:
    """Turns SIGTERM into a clean stop request (Ctrl-C arrives as KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def _validate(
    model: VDSR, items: Sequence[evaluate.EvalItem], device: torch.device
) -> dict[str, float]:
    model.eval()

    def run(y: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(y))[None, None].to(device)
            if device.type == "cpu":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            result: np.ndarray = model(tensor)[0, 0].float().cpu().numpy()
            return result

    report = evaluate.score(items, run)
    model.train()
    results = {f"x{s.scale}": s.psnr for s in report.summaries}
    results.update({f"bicubic_x{s.scale}": s.bicubic_psnr for s in report.summaries})
    return results


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
    ``log.jsonl``. Every one of them loads as weights (:func:`vdsr_deploy.weights.load_weights`).
    ``resume`` continues the run in ``last.safetensors`` with the recipe and folders recorded
    there: ``config``, ``data_dirs`` and ``val_dir`` may be left out (None), and a recipe or
    data folders that differ are refused (:func:`settings_for_resume`). Without ``resume`` an
    existing checkpoint is an error, so no run is overwritten by accident. ``init_weights``
    starts a new run from a weights file or checkpoint (fine-tuning; fresh optimizer state);
    its training record is kept in the metadata as ``initialised_from`` so the total compute
    stays accounted for. ``data_workers`` > 0 cuts the batches in that many worker processes
    ahead of the model (the batches are the same either way: each is a function of the seed
    and its step).

    Events: ``warning`` (message), ``preparing`` (images), ``prepared`` (pairs, seconds),
    ``start`` (step, iterations, resumed), ``train``, ``validate``, then ``finished`` or
    ``stopped``.
    """
    if data_workers < 0:
        raise TrainingError(f"data workers: expected >= 0, got {data_workers}")
    emit = on_event or (lambda event: None)
    started = time.time()
    torch_device = resolve_device(device)
    last_path = out_dir / CHECKPOINT_NAME
    if last_path.exists() and not resume:
        raise TrainingError(
            f"{last_path} exists: pass --resume to continue that run, or pick another --out"
        )
    if resume and not last_path.exists():
        raise TrainingError(f"{last_path}: nothing to resume from")
    if resume and init_weights is not None:
        raise TrainingError("--init-weights starts a new run; it cannot be combined with --resume")
    if resume:
        settings, warnings = settings_for_resume(last_path, config, data_dirs, val_dir)
        for message in warnings:
            emit({"event": "warning", "message": message})
    else:
        if config is None:
            raise TrainingError("a new run needs a recipe (config)")
        if not data_dirs:
            raise TrainingError("a new run needs at least one data folder (--data)")
        settings = RunSettings(config, tuple(Path(d) for d in data_dirs), val_dir)
    config = settings.config
    data_dirs, val_dir = settings.data_dirs, settings.val_dir
    initial = _load_initial_weights(init_weights, config) if init_weights is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)

    paths = find_images(data_dirs)
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
    val_items = (
        evaluate.prepare_items(evaluate.list_images(val_dir), config.scales) if val_dir else []
    )
    emit({"event": "prepared", "pairs": len(pairs), "validation_images": len(val_items),
          "seconds": time.time() - preparing_since})  # fmt: skip

    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch shape: pick the fastest kernels once
    torch.manual_seed(config.seed)
    model = VDSR(depth=config.depth, channels=config.channels).to(torch_device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)  # type: ignore[call-overload]
    optimizer = make_optimizer(model, config)
    step = 0
    best: dict[str, float] = {}
    final_choice = "weights"  # or "ema": which validated better at the last validation
    elapsed_before = 0.0
    initialised_from: dict[str, Any] | None = None
    if initial is not None:
        state, initialised_from = initial
        model.load_state_dict(state)
    ema = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
    if resume:
        meta = load_checkpoint(last_path, model, optimizer, ema=ema)
        step = int(meta["step"])
        if step >= config.iterations:
            emit({"event": "warning", "message": f"the run in {out_dir} already did {step} of "
                  f"{config.iterations} iterations; pass --iterations N to extend it"})  # fmt: skip
        best = dict(meta.get("best", {}))
        initialised_from = meta.get("initialised_from")
        elapsed_before = float(meta.get("wall_seconds", 0.0))
    log = (out_dir / "log.jsonl").open("a")
    absolute_data = tuple(d.expanduser().resolve() for d in data_dirs)
    absolute_val = val_dir.expanduser().resolve() if val_dir else None

    def checkpoint() -> None:
        save_checkpoint(
            last_path,
            model,
            optimizer,
            {
                "step": step,
                "config": config.to_dict(),
                "best": best,
                "wall_seconds": elapsed_before + time.time() - started,
                "initialised_from": initialised_from,
                **RunSettings(config, absolute_data, absolute_val).to_dict(),
            },
            ema=ema,
        )

    def record(entry: dict[str, Any]) -> None:
        log.write(json.dumps(entry) + "\n")
        log.flush()
        emit(entry)

    def training_metadata() -> dict[str, Any]:
        return {
            "recipe": config.to_dict(),
            "iterations": step,
            "wall_seconds": round(elapsed_before + time.time() - started, 1),
            "hardware": training_hardware(),
            "data": [str(d) for d in data_dirs],
            "training_pairs": len(pairs),
            **({"initialised_from": initialised_from} if initialised_from else {}),
        }

    stop = _StopFlag()
    previous_handler = signal.signal(signal.SIGTERM, stop) if _main_thread() else None
    interrupted = False
    window_loss, window_start, window_steps = 0.0, time.time(), 0
    model.train()
    emit({"event": "start", "step": step, "iterations": config.iterations, "resumed": resume})
    batches = batch_stream(
        sampler,
        range(step, config.iterations),
        config.batch_size,
        workers=data_workers,
        pin_memory=torch_device.type == "cuda",
    )
    try:
        while step < config.iterations:
            if stop.requested:
                interrupted = True
                break
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs_cpu, targets_cpu = next(batches)
            inputs = inputs_cpu.to(torch_device, non_blocking=True).contiguous(
                memory_format=memory_format
            )
            targets = targets_cpu.to(torch_device, non_blocking=True)
            use_bf16 = (
                config.precision == "bf16"
                and step < config.iterations - config.fp32_final_iterations
            )
            loss = training_step(model, optimizer, inputs, targets, config, lr, bf16=use_bf16)
            if loss is None:
                raise TrainingError(f"loss stopped being finite at iteration {step}: lower lr or theta")
            if ema is not None:
                ema.update(model)
            step += 1
            window_loss += loss.item()
            window_steps += 1
            if step % config.log_every == 0 or step == config.iterations:
                seconds = time.time() - window_start
                record(
                    {
                        "event": "train",
                        "step": step,
                        "loss": window_loss / window_steps,
                        "lr": lr,
                        "seconds_per_iter": seconds / window_steps,
                        "bf16": use_bf16,
                    }
                )
                window_loss, window_start, window_steps = 0.0, time.time(), 0
            if val_items and (step % config.validate_every == 0 or step == config.iterations):
                scores = _validate(model, val_items, torch_device)
                mean_psnr = float(np.mean([scores[f"x{s}"] for s in config.scales]))
                candidate, candidate_scores, candidate_mean = model, scores, mean_psnr
                extra: dict[str, float] = {}
                if ema is not None:
                    ema_scores = _validate(ema.model, val_items, torch_device)
                    ema_mean = float(np.mean([ema_scores[f"x{s}"] for s in config.scales]))
                    extra = {f"ema_x{s}": ema_scores[f"x{s}"] for s in config.scales}
                    extra["ema_mean"] = ema_mean
                    final_choice = "ema" if ema_mean > mean_psnr else "weights"
                    if final_choice == "ema":
                        candidate, candidate_scores, candidate_mean = ema.model, ema_scores, ema_mean
                record({"event": "validate", "step": step, **scores, "mean": mean_psnr, **extra})
                if candidate_mean > best.get("mean", -math.inf):
                    best = {**candidate_scores, "mean": candidate_mean, "step": step}
                    if ema is not None:
                        best["ema"] = float(candidate is ema.model)
                    save_weights(
                        candidate,
                        out_dir / "best.safetensors",
                        scales=tuple(float(s) for s in config.scales),
                        training=training_metadata(),
                        evaluation={"validation": best},
                    )
                window_start = time.time()
            if step % config.checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        interrupted = True
    except RuntimeError as error:  # e.g. CUDA out of memory, a data worker killed
        raise TrainingError(
            f"training failed at iteration {step} ({error}); the last checkpoint is kept in "
            f"{last_path}: continue with --resume"
        ) from error
    finally:
        batches.close()
        checkpoint()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    final: Path | None = None
    if not interrupted:
        chosen = {"final_weights": final_choice} if ema is not None else {}
        final = save_weights(
            ema.model if ema is not None and final_choice == "ema" else model,
            out_dir / "final.safetensors",
            scales=tuple(float(s) for s in config.scales),
            training=training_metadata(),
            evaluation={"validation": best, **chosen},
        )
        if ema is not None:
            save_weights(
                ema.model,
                out_dir / "ema.safetensors",
                scales=tuple(float(s) for s in config.scales),
                training=training_metadata(),
                evaluation={"validation": best, "weights": "ema"},
            )
    record({"event": "stopped" if interrupted else "finished", "step": step})
    log.close()
    best_path = out_dir / "best.safetensors"
    return TrainResult(
        out_dir,
        step,
        interrupted,
        best,
        final,
        elapsed_before + time.time() - started,
        iterations=config.iterations,
        best_weights=best_path if best and best_path.is_file() else None,
        checkpoint=last_path,
    )


def _load_initial_weights(
    path: Path, config: TrainConfig
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict of ``path`` (checked against the recipe) and what to record about it."""
    source, info = load_weights(path)
    if (info.depth, info.channels) != (config.depth, config.channels):
        raise TrainingError(
            f"{path}: expected depth {config.depth} x {config.channels} channels (the recipe), "
            f"got depth {info.depth} x {info.channels}"
        )
    record = {
        "path": portable_path(path),
        "weights_digest": info.sha256,
        "iterations": info.training.get("iterations"),
        "wall_seconds": info.training.get("wall_seconds"),
        "recipe": info.training.get("recipe", {}).get("name"),
        "initialised_from": info.training.get("initialised_from"),
    }
    return source.state_dict(), record


class _StepBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Item ``i`` is the batch of step ``steps[i]``, so worker processes can cut it."""

    def __init__(self, sampler: PatchSampler, steps: range, batch_size: int) -> None:
        self.sampler = sampler
        self.steps = steps
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, targets = self.sampler.batch(self.steps[index], self.batch_size)
        return torch.from_numpy(inputs), torch.from_numpy(targets)


def batch_stream(
    sampler: PatchSampler,
    steps: range,
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """The batches of ``steps`` in order, as float32 CPU tensors ``(batch, 1, P, P)``.

    With ``workers`` > 0 they are cut ahead of time in worker processes; the result is the
    same batches in the same order as with ``workers == 0``.
    """
    dataset = _StepBatches(sampler, steps, batch_size)
    if workers == 0:
        for index in range(len(dataset)):
            yield dataset[index]
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        worker_init_fn=_ignore_stop_signals,
    )
    yield from loader


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the training process, which stops cleanly and then
    shuts them down (a worker killed first would abort the run with DataLoader's error)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
