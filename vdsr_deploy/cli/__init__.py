"""The ``vdsr`` command line: parse, build a config, call one library function, render.

One module per command group (:mod:`.upscale`, :mod:`.train`, :mod:`.evaluate`,
:mod:`.validate`, :mod:`.bench`, :mod:`.export` with ``build``, :mod:`.info`, :mod:`.cache`), on the shared
app, help and error handling of :mod:`.common` and the options of :mod:`.options`.
Importing this package registers every command on :data:`app` (the ``vdsr`` entry point);
heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

from vdsr_deploy.cli.common import app, reflow_help

# Command modules register on import, in the order `vdsr --help` lists them.
# isort: off
from vdsr_deploy.cli import upscale, export, info, cache, evaluate, train, validate, bench
# isort: on

__all__ = ["app", "main", "reflow_help"]
_COMMANDS = (upscale, export, info, cache, evaluate, train, validate, bench)


def main() -> None:  # pragma: no cover - entry point convenience
    app()
