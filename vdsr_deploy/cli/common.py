"""What every ``vdsr`` command shares: the Typer app and its help, user errors, the console.

Every :class:`~vdsr_deploy.errors.VdsrError` becomes one sentence on stderr and exit code
1 (:func:`user_errors`, :func:`fail`); the console writes to stderr, so ``--json`` output
stays alone on stdout. Nothing heavy is imported here: ``vdsr --help`` stays light.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
import typer.core

if TYPE_CHECKING:
    from vdsr_deploy.backends.registry import RunnerSpec

_Function = TypeVar("_Function", bound=Callable[..., Any])
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


class _Command(typer.core.TyperCommand):
    """Help as a user reads it: flags show no ``<bool>`` (they take no value), docstring
    paragraphs flow to the terminal's width instead of breaking where the source line ended,
    and ``{recipes}`` in an option's help lists the built-in training recipes. A flag given a
    value (``--overwrite true``) is an error, not an input file named ``true``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.help:
            self.help = reflow_help(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            if param.is_flag and param.metavar is None:
                param.metavar = ""
            if param.help and "{recipes}" in param.help:
                from train.config import builtin_recipes

                param.help = param.help.replace("{recipes}", ", ".join(builtin_recipes()))
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        flags = {
            name
            for param in self.get_params(ctx)
            if isinstance(param, typer.core.TyperOption) and param.is_flag
            for name in (*param.opts, *param.secondary_opts)
        }
        for flag, value in itertools.pairwise(args):
            if flag in flags and value.lower() in BOOLEAN_WORDS and not Path(value).exists():
                fail(f"{flag} takes no value: write {flag} alone (or leave it out), not '{flag} {value}'")
        return super().parse_args(ctx, args)


def reflow_help(text: str) -> str:
    """Docstring -> help: each paragraph on one line (the terminal wraps it), paragraphs kept."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


class _Typer(typer.Typer):
    """Every command uses :class:`_Command` (also those other modules add)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[_Function], _Function]:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _Typer(
    name="vdsr",
    help="VDSR super-resolution: train, export, build engines, upscale, evaluate, validate, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    from vdsr_deploy.errors import VdsrError

    try:
        yield
    except VdsrError as error:
        fail(str(error))
    except OSError as error:
        # a refusal of the file system the library did not word (a file where an output
        # folder goes, no permission, a full disk): one sentence naming the path
        fail(os_error_sentence(error))


def os_error_sentence(error: OSError) -> str:
    """``PATH: cannot use it (REASON)``, and what a file in the way of a folder means."""
    where = f"{error.filename}: " if error.filename else ""
    reason = error.strerror or str(error)
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason += "; a file stands where a folder is expected"
    return f"{where}cannot use this path ({reason})"


def make_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def escape(text: str) -> str:
    """``text`` safe inside rich markup: file names and messages may hold ``[...]`` (e.g. a
    pip extra), which rich would otherwise take for a style tag and drop."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def check_halo(
    halo: int, tile: int, inexact: bool, weights: Path | None, onnx: Path | None, console: Any
) -> None:
    """Refuse a halo below the model's receptive radius (its depth in pixels) unless
    ``--inexact-halo`` accepts it, then warn. Unreadable files are left to the runner to report."""
    from vdsr_deploy.errors import VdsrError
    from vdsr_deploy.model.identity import receptive_radius

    if tile == 0:
        return
    try:
        radius = receptive_radius(weights, onnx)
    except (VdsrError, ValueError):
        return
    if halo >= radius:
        return
    problem = (
        f"--halo {halo} is below the network's receptive radius ({radius} px): tiles would not "
        "match whole-image inference (visible seams)"
    )
    if not inexact:
        fail(f"{problem}; use --halo {radius} or more, or pass --inexact-halo to accept that")
    console.print(f"[yellow]warning:[/yellow] {escape(problem)}")


def runner_spec(
    backend: str,
    device: str,
    precision: str,
    provider: str,
    weights: Path | None,
    onnx: Path | None,
    engine: Path | None,
    engines_dir: Path | None,
    threads: int,
) -> RunnerSpec:
    """The :class:`~vdsr_deploy.runtime.prepare.RunnerSpec` of the runtime options."""
    from vdsr_deploy.backends.registry import RunnerSpec

    return RunnerSpec(
        backend=backend,
        device=device,
        precision=precision,
        provider=provider,
        weights=weights,
        onnx=onnx,
        engine=engine,
        engines_dir=engines_dir,
        threads=threads,
    )
