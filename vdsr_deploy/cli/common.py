"""What every ``vdsr`` command shares: the Typer app and its help, user errors, the console.

One error style: every error is one line ``error: ...`` on stderr. A usage error (an
unknown option, a value of the wrong type or out of range, options that contradict each
other: Click's own errors and :class:`~vdsr_deploy.errors.ConfigError`) exits with
:data:`USAGE_EXIT` = 2, as Click and argparse do; any other
:class:`~vdsr_deploy.errors.VdsrError` (a missing file, a missing runtime, work that
failed) exits 1 (:func:`user_errors`, :func:`fail`, :func:`usage_error`). Help is plain
text, not rich markup, so ``[cluster]`` shows as written. The console writes to stderr, so
``--json`` output stays alone on stdout. Nothing heavy is imported here: ``vdsr --help``
stays light.
"""

from __future__ import annotations

import inspect
import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import typer.core
from typer._click.exceptions import MissingParameter, NoArgsIsHelpError, UsageError  # typer >= 0.29 vendors Click
from typer.exceptions import TyperException

if TYPE_CHECKING:
    from vdsr_deploy.backends.registry import RunnerSpec

_Function = TypeVar("_Function", bound=Callable[..., Any])
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})
USAGE_EXIT = 2
"""Exit code of a usage error (as Click and argparse); failures of the work exit 1."""
FAILURE_EXIT = 1


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
            if param.metavar is None:  # words (PATH, NUMBER, TEXT), not <list[str]>
                param.metavar = "" if param.is_flag else _value_word(param, ctx)
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
                usage_error(f"{flag} takes no value: write {flag} alone (or leave it out), not '{flag} {value}'")
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] INPUTS...`` as Click writes it (not ``{inputs}...``)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_argument_name(p) for p in self.get_params(ctx) if isinstance(p, typer.core.TyperArgument)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, typer.core.TyperArgument):
                arguments.append((_argument_name(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return _main_with_one_error_style(super().main, *args, **kwargs)


_VALUE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "bool": "BOOLEAN"}


def _value_word(param: Any, ctx: Any) -> str:
    """What an option's value is, in a word: PATH, NUMBER, INTEGER or TEXT (typer's own
    label is a Python type: ``<float>``, ``<list[str]>``)."""
    label = str(param.display_type(ctx)).strip("<>").removeprefix("list[").removesuffix("]")
    return _VALUE_WORDS.get(label, label.upper())


def _argument_name(param: typer.core.TyperArgument) -> str:
    name = (param.name or "").upper()
    name = name if param.required else f"[{name}]"
    return name + ("..." if param.nargs != 1 else "")


def _main_with_one_error_style(
    main: Callable[..., Any], args: Sequence[str] | None = None, *rest: Any, **kwargs: Any
) -> Any:
    """Run Click's ``main`` with every usage error as one ``error:`` line and exit 2 (Click
    would print a usage block and a boxed or capitalised message)."""
    standalone = kwargs.pop("standalone_mode", True)
    try:
        result = main(args, *rest, standalone_mode=False, **kwargs)
    except NoArgsIsHelpError as error:
        error.show()
        sys.exit(error.exit_code)
    except TyperException as error:  # Click's errors: usage errors, a file Click could not open
        if not standalone:
            raise
        typer.echo(f"error: {_click_message(error)}", err=True)
        sys.exit(USAGE_EXIT if isinstance(error, UsageError) else FAILURE_EXIT)
    except typer.Abort:
        if not standalone:
            raise
        typer.echo("error: aborted", err=True)
        sys.exit(FAILURE_EXIT)
    if standalone:
        sys.exit(result if isinstance(result, int) else 0)
    return result


def _click_message(error: TyperException) -> str:
    """Click's message on one line, lower-case first, with where to read the options."""
    param = getattr(error, "param", None)
    if isinstance(error, typer.BadParameter) and not isinstance(error, MissingParameter) and param is not None:
        detail = error.message[:1].lower() + error.message[1:]
        message = f"{max(param.opts, key=len, default=param.name)}: {detail}"  # "--scale: input should be ..."
    else:
        message = error.format_message()
    message = " ".join(message.split()).rstrip(".")
    message = message[:1].lower() + message[1:]
    message = message.replace("(Possible options:", "(possible options:")
    context = getattr(error, "ctx", None)
    if isinstance(error, UsageError) and context is not None:
        message += f" (see '{context.command_path} --help')"
    return message


def reflow_help(text: str) -> str:
    """Docstring -> help: each paragraph on one line (the terminal wraps it), paragraphs kept."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


class _Group(typer.core.TyperGroup):
    """The ``vdsr`` group: the same one error style as its commands, and each command's
    first sentence whole in the list (wrapped, not cut short with "...")."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return _main_with_one_error_style(super().main, *args, **kwargs)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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
    rich_markup_mode=None,  # plain help: "[cluster]" is text, not a style tag
    cls=_Group,
    context_settings={"max_content_width": 1000},  # help follows the terminal's width
)


def _print_version(value: bool) -> None:
    if value:
        from vdsr_deploy import __version__

        typer.echo(f"vdsr-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """The options of ``vdsr`` itself (before the command)."""


def fail(message: str, code: int = FAILURE_EXIT) -> NoReturn:
    """``error: message`` on stderr, then exit ``code`` (1: the work failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def usage_error(message: str) -> NoReturn:
    """A usage error: ``error: message`` on stderr, exit 2."""
    fail(message, USAGE_EXIT)


@contextmanager
def user_errors() -> Iterator[None]:
    """Any :class:`VdsrError` inside -> one ``error:`` line; exit 2 for a
    :class:`ConfigError` (a bad option value), else 1."""
    from vdsr_deploy.errors import ConfigError, VdsrError

    try:
        yield
    except ConfigError as error:
        usage_error(str(error))
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


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 Ray worker``, ``2 Ray workers``: a count and its noun, singular for one."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


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
        usage_error(f"{problem}; use --halo {radius} or more, or pass --inexact-halo to accept that")
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
    foreign_model: bool = False,
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
        foreign_model=foreign_model,
    )
