"""``vdsr eval``: PSNR/SSIM on HR folders by the paper's protocol, as tables and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, escape, make_console, runner_spec, user_errors
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
    scales: Annotated[
        list[float],
        typer.Option(
            "--scale",
            "-s",
            help="Integer scales (repeatable): the paper's protocol crops each HR image to a multiple of the "
            "scale and shrinks it by that factor, so 2.5 has no HR/LR pair; upscale takes any factor > 1.",
        ),
    ] = [2, 3, 4],  # noqa: B006
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
    """PSNR/SSIM on Y (modcrop, MATLAB bicubic, shave = scale) against bicubic.

    The defaults differ from upscale's on purpose: PyTorch fp32 on whole images (--tile 0)
    is the reference, so the figures are the network's own (the README's table); pass
    --backend, --precision or --tile to score another runtime or path.
    """
    from vdsr_deploy.evaluation.report import write_reports
    from vdsr_deploy.evaluation.run import evaluate_folders
    from vdsr_deploy.protocol import check_scale
    from vdsr_deploy.runtime.resolve import precision_warning_for

    with user_errors():
        spec = runner_spec(backend, device, precision, provider, weights, None, None, engines_dir, threads)
        warning = precision_warning_for(spec)
        if warning:  # before the slow part starts
            make_console().print(f"[yellow]warning:[/yellow] {escape(warning)}")
        integers = [int(check_scale(scale, integer=True)) for scale in scales]  # says why 2.5 is refused
        reports = evaluate_folders(folders, integers, spec, tile=tile, ensemble=ensemble)
    console = make_console()
    for report in reports:
        console.print(_table(report))
    if out is not None:
        with user_errors():
            write_reports(reports, out)
        console.print(f"reports written to {escape(str(out))}")


def _table(report: Any) -> Any:
    from rich.table import Table

    from vdsr_deploy.evaluation.report import TERMINAL_COLUMNS, terminal_rows

    table = Table(title=escape(f"{report.dataset} — {report.method}"))
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="right")
    for row in terminal_rows(report):
        table.add_row(*(escape(cell) for cell in row))
    return table
