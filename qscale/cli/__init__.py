"""The typer app; main() maps QscaleError to an `error:`/`hint:` pair and exit code 2."""

from __future__ import annotations

import logging
import os
import sys

import typer

from qscale import __version__, rules
from qscale.cli import check, fix, inspect, layouts, models, plan, rule
from qscale.errors import QscaleError

app = typer.Typer(
    name="qscale",
    help="Will this quantized checkpoint load correctly in vLLM or SGLang? Checks it without a"
    " GPU, from safetensors headers and scale values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's plain help, not rich's boxed table: rich cuts long option names
    # (`--enable-expert-…`) to fit 80 columns; click wraps the help text instead
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
)
app.command("check")(check.check_cmd)
app.command("inspect")(inspect.inspect_cmd)
app.command("plan")(plan.plan_cmd)
app.command("layouts")(layouts.layouts_cmd)
app.command("models")(models.models_cmd)
app.command("rule")(rule.rule_cmd)
app.command("fix")(fix.fix_cmd)


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
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("QSCALE_DEBUG") == "1"


def _hint(exc: QscaleError) -> str:
    """The error's hint, pointing at the rule doc when the error carries a rule's code."""
    if exc.code is None or exc.code not in rules.BY_CODE:
        return exc.hint
    explain = f"`qscale rule {exc.code}` explains it"
    return f"{exc.hint}; {explain}" if exc.hint else explain


def main() -> None:
    """Console-script entry point."""
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
