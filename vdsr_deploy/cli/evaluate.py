"""``vdsr eval``: PSNR/SSIM on HR folders by the paper's protocol, as tables and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, make_console, runner_spec, user_errors
from vdsr_deploy.cli.options import (
    BackendOption,
    DeviceOption,
    EnginesOption,
    EnsembleOption,
    PrecisionOption,
    ProviderOption,
    ThreadsOption,
    TileOption,
    WeightsOption,
)


@app.command("eval")
def evaluate_command(
    folders: Annotated[list[Path], typer.Argument(help="Folders of HR images (e.g. Set5).")],
    scales: Annotated[list[int], typer.Option("--scale", "-s", help="Scales (repeatable).")] = [2, 3, 4],  # noqa: B006
    weights: WeightsOption = None,
    backend: BackendOption = "torch",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    provider: ProviderOption = "cpu",
    engines_dir: EnginesOption = None,
    tile: TileOption = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write <name>.json and <name>.md reports here.")] = None,
    threads: ThreadsOption = 0,
    ensemble: EnsembleOption = False,
) -> None:
    """PSNR/SSIM on Y (modcrop, MATLAB bicubic, shave = scale) against bicubic."""
    from vdsr_deploy.evaluation.report import write_reports
    from vdsr_deploy.evaluation.run import evaluate_folders

    with user_errors():
        spec = runner_spec(backend, device, precision, provider, weights, None, None, engines_dir, threads)
        reports = evaluate_folders(folders, scales, spec, tile=tile, ensemble=ensemble)
    console = make_console()
    for report in reports:
        console.print(_table(report))
    if out is not None:
        with user_errors():
            write_reports(reports, out)
        console.print(f"reports written to {out}")


def _table(report: Any) -> Any:
    from rich.table import Table

    from vdsr_deploy.evaluation.report import TERMINAL_COLUMNS, terminal_rows

    table = Table(title=f"{report.dataset} — {report.method}")
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="right")
    for row in terminal_rows(report):
        table.add_row(*row)
    return table
