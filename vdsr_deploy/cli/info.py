"""``vdsr info``: versions, runtimes, GPU and default weights of this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vdsr_deploy.cli.common import app


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Versions, available runtimes and providers, GPU, the default weights and the cache folder."""
    from vdsr_deploy.runtime.info import system_info

    data = system_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key:>22}: {value}")
