"""``vdsr train``: a training run (new, resumed or fine-tuned), its progress and how it ended."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vdsr_deploy.cli.common import app, escape, make_console, usage_error, user_errors
from vdsr_deploy.cli.options import DeviceOption

if TYPE_CHECKING:
    from train.config import TrainConfig


@app.command()
def train(
    config: Annotated[
        str | None,
        typer.Option(
            "--config", "-c", help="Recipe: a built-in name ({recipes}) or a TOML file. Default: fast."
        ),
    ] = None,
    data: Annotated[list[Path] | None, typer.Option("--data", help="HR training image folders (repeatable).")] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Validation folder (e.g. Set5).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoints, log, weights.")] = Path(
        "runs/vdsr"
    ),
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in OUT (last.safetensors) with its recipe, iterations and folders.",
        ),
    ] = False,
    init_weights: Annotated[
        Path | None,
        typer.Option("--init-weights", help="Start from these weights (fine-tune; new optimizer state)."),
    ] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Override the recipe's iterations.")] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Seconds to train for: measure the step time here and set the iterations to fit.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Processes cutting batches ahead of the model (0: inline).")
    ] = 0,
    device: DeviceOption = "auto",
) -> None:
    """Train VDSR (paper recipe or a faster one) with checkpoints, resume and validation.

    Every file a run writes (last, best and final .safetensors) works as --weights for the
    other commands. --resume continues a stopped run exactly: its recipe, iterations and data
    folders come from the checkpoint, so --config and --data are not needed again (given and
    different, they are refused).
    """
    from train.budget import fit_to_budget
    from train.config import load_config
    from train.loop import train as run_training
    from train.settings import resumed_config

    if not data and not resume:
        usage_error("give at least one --data folder of HR training images (e.g. ../shared/data/train/t91)")
    console = make_console()
    with user_errors():
        if time_budget is not None and (iterations is not None or resume):
            usage_error("--time-budget sets the iterations of a new run: drop --iterations/--resume")
        recipe: TrainConfig | None = None
        if config is not None or not resume:
            recipe = load_config(config or "fast")
        if time_budget is not None and recipe is not None:
            fitted = fit_to_budget(recipe, time_budget, device)
            console.print(fitted.describe())
            recipe = fitted.recipe
        if iterations is not None:
            recipe = recipe.replace(iterations=iterations) if recipe else resumed_config(out, iterations=iterations)
        with _train_progress(console) as on_event:
            result = run_training(
                recipe,
                data_dirs=data,
                out_dir=out,
                val_dir=val,
                resume=resume,
                init_weights=init_weights,
                device=device,
                data_workers=workers,
                on_event=on_event,
            )
    _render_training(console, result)
    if result.interrupted:
        raise typer.Exit(130)


@contextmanager
def _train_progress(console: Any) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Training events -> a bar on a terminal, one line per logged step otherwise (a pipe or a
    log file gets progress too); data preparation is its own phase, before the bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    interactive = bool(console.is_terminal)
    progress = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not interactive,
    )
    task = progress.add_task("train", total=None, status="", start=False)
    total = 0

    def on_event(event: dict[str, Any]) -> None:
        nonlocal total
        kind = event["event"]
        if kind == "warning":
            console.print(f"[yellow]warning:[/yellow] {escape(str(event['message']))}")
        elif kind == "preparing":
            scales = ", ".join(f"x{s}" for s in event["scales"])
            images = f"{event['images']} image{'s' if event['images'] != 1 else ''}"
            console.print(f"preparing data: {images} at {scales}...")
        elif kind == "prepared":
            validation = f", {event['validation_images']} validation items" if event["validation_images"] else ""
            console.print(f"prepared {event['pairs']} training pairs{validation} in {event['seconds']:.1f} s")
        elif kind == "start":
            total = event["iterations"]
            verb = "resuming at" if event["resumed"] else "training from"
            console.print(f"{verb} iteration {event['step']} of {total}")
            progress.update(task, total=total, completed=event["step"])
            progress.start_task(task)
            progress.start()
        elif kind == "train":
            status = f"loss {event['loss']:.5f} lr {event['lr']:.2e} {1 / event['seconds_per_iter']:.2f} it/s"
            progress.update(task, completed=event["step"], status=status)
            if not interactive:
                console.print(f"step {event['step']}/{total} {status}")
        elif kind == "validate":
            scores = " ".join(f"{key} {value:.2f}" for key, value in event.items() if _is_scale_key(key))
            progress.console.print(f"step {event['step']}: validation PSNR {scores}")

    try:
        yield on_event
    finally:
        progress.stop()


def _is_scale_key(key: str) -> bool:
    return key.startswith("x") and key[1:].isdigit()


def _render_training(console: Any, result: Any) -> None:
    """How the run ended, as a short table: iterations, time, best PSNR and its weights."""
    from rich.table import Table

    state = "stopped early" if result.interrupted else "finished"
    table = Table(title=f"training {state}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("iterations", f"{result.iterations_done:,} of {result.iterations:,}")
    seconds = result.wall_seconds
    table.add_row("wall time", f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min")
    best = result.best_psnr
    if best:
        scores = ", ".join(f"{key} {value:.2f} dB" for key, value in best.items() if _is_scale_key(key))
        table.add_row("best validation PSNR", f"{scores} (iteration {int(best['step']):,})")
    else:
        table.add_row("best validation PSNR", "- (no --val folder, or no validation yet)")
    if result.final_weights is not None:
        table.add_row("weights", escape(str(result.final_weights)))
    if result.best_weights is not None:
        table.add_row("best weights", escape(str(result.best_weights)))
    table.add_row("checkpoint", f"{escape(str(result.checkpoint))} (also loads as --weights)")
    console.print(table)
    weights = result.weights
    if result.interrupted:
        console.print(f"continue with: vdsr train --resume --out {escape(str(result.out_dir))}", soft_wrap=True)
    if weights is not None:
        console.print(f"upscale with: vdsr upscale --weights {escape(str(weights))} IMAGES -o OUT", soft_wrap=True)
