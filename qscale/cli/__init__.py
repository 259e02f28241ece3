"""The typer app; main() maps QscaleError to an `error:`/`hint:` pair and exit code 2."""

from __future__ import annotations

import ast
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import typer
import typer._click as click  # the click typer is built on (vendored by this typer)
from typer._click.exceptions import UsageError
from typer.core import TyperCommand, TyperGroup

from qscale import __version__, _exit, _malloc
from qscale.cli import _coerce
from qscale.errors import QscaleError

#: command -> its module under qscale/cli and function. A module is imported only when its
#: command runs (or when its --help is asked for): `qscale --version`, `qscale --help` and
#: `qscale rule X` start without numpy, the engine catalogue or the rules' formats.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("check", "check_cmd"),
    "inspect": ("inspect", "inspect_cmd"),
    "plan": ("plan", "plan_cmd"),
    "layouts": ("layouts", "layouts_cmd"),
    "models": ("models", "models_cmd"),
    "rule": ("rule", "rule_cmd"),
    "fix": ("fix", "fix_cmd"),
}
_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


def _docstring(module: str, func: str) -> str:
    """The command function's docstring, read from its source without importing it."""
    tree = ast.parse((Path(__file__).parent / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == func:
            return ast.get_docstring(node) or ""
    return ""


def load_command(name: str) -> click.Command:
    """The click command typer builds for ``name``, its module imported now."""
    module, func = COMMANDS[name]
    # click's plain help, not rich's boxed table: rich cuts long option names
    # (`--enable-expert-…`) to fit 80 columns; click wraps the help text instead
    sub = typer.Typer(pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None, context_settings=_SETTINGS)
    sub.command(name)(getattr(importlib.import_module(f"qscale.cli.{module}"), func))
    cmd = typer.main.get_command(sub)
    cmd.name = name
    # plain values without pydantic (~0.1 s); the context names the help option
    _coerce.install(cmd, click.Context(cmd, help_option_names=_SETTINGS["help_option_names"]))
    return cmd


class _LazyGroup(TyperGroup):
    """Lists the commands from :data:`COMMANDS` (help from their docstrings) and builds a
    command only to run it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        return TyperCommand(cmd_name, help=_docstring(*COMMANDS[cmd_name]))

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _coerce.install(self, ctx)  # --debug, --help: no pydantic
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in COMMANDS:
            return args[0], load_command(args[0]), args[1:]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        args = [*ctx._protected_args, *ctx.args]  # the command and its arguments, unparsed
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # a bad option of a command: its document, then usage
            _usage_document(args, exc.format_message())
            raise


def _asked_format(args: list[str]) -> str | None:
    """The value of the last ``-f``/``--format`` in ``args`` (as click would take it), if any."""
    found = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("-f", "--format") and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--format="):
            found = arg.partition("=")[2]
        elif arg.startswith("-f") and not arg.startswith("--") and len(arg) > 2:
            found = arg[2:]
    return found


def _usage_document(args: list[str], message: str) -> None:
    """For a usage error in a run asked for a machine-readable format, that format's exit-2
    document on stdout, so that a CI step reading it gets a document, not nothing. The usage
    text click prints stays on stderr."""
    from qscale.cli.options import CheckFormat, emit_error

    if not args or args[0] not in COMMANDS:
        return
    try:
        fmt = CheckFormat(_asked_format(args[1:]) or "console")
    except ValueError:  # the format itself may be what is wrong
        return
    if args[0] != "check" and fmt is not CheckFormat.json:
        return  # the other commands write JSON or the console only
    emit_error(fmt, f"usage: {message}", hint=f"`qscale {args[0]} -h` lists the options")


app = typer.Typer(
    name="qscale",
    cls=_LazyGroup,
    help="Will this quantized checkpoint load correctly in vLLM or SGLang? Checks it without a"
    " GPU, from safetensors headers and scale values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings=_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qscale {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
) -> None:
    if debug:
        import logging  # only under --debug (~5 ms at start-up)

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def _command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (its first word that is not an option)."""
    return next((a for a in argv[1:] if not a.startswith("-")), None)


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("QSCALE_DEBUG") == "1"


def _hint(exc: QscaleError) -> str:
    """The error's hint, pointing at the rule doc when the error carries a rule's code."""
    if exc.code is None:
        return exc.hint
    from qscale.cli.rule import rule_codes  # the codes as the rule sources declare them

    if exc.code not in rule_codes():
        return exc.hint
    explain = f"`qscale rule {exc.code}` explains it"
    return f"{exc.hint}; {explain}" if exc.hint else explain


def run() -> None:
    """Console-script entry point: :func:`main`, then ``os._exit`` with its exit code, so that
    what the command built is not freed object by object at shutdown (``qscale._exit``)."""
    _exit.ENABLED = True
    try:
        main()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise  # a message to print: the interpreter's own exit prints it
        _exit.exit_now(exc.code or 0)
    _exit.exit_now(0)


#: numpy's OpenBLAS starts a pool of worker threads when numpy is imported, and they spin
#: for a while: ~0.1 s of CPU on every command, which multiplies no matrix (2-core VM, the
#: numpy 2 wheel). The command line asks for one thread; a value the user set is kept.
#: (torch's CPU build multiplies with its own MKL / OpenMP threads, which this leaves alone.)
_BLAS_THREADS = ("OPENBLAS_NUM_THREADS",)


def main() -> None:
    """The command line, in this process (``run`` is the console script)."""
    if "numpy" not in sys.modules:  # read once, when numpy's BLAS loads
        for var in _BLAS_THREADS:
            os.environ.setdefault(var, "1")
    _malloc.tune()
    if _command(sys.argv) == "check":  # off from start-up: the imports collect nothing
        _exit.pause_gc()
    debug = _debugging(sys.argv)
    try:
        app()
    except QscaleError as exc:
        if debug:
            raise
        code = f"{exc.code} " if exc.code else ""
        typer.echo(f"error: {code}{exc.message}", err=True)
        hint = _hint(exc)
        if hint:
            typer.echo(f"hint: {hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        typer.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
        typer.echo("hint: rerun with --debug and report the traceback", err=True)
        sys.exit(2)
