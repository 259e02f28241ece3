"""Shared Annotated options, so every command spells them the same way."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from qscale._files import refuse_overwrite, write_text_atomic
from qscale.errors import QscaleError, UsageError

F = TypeVar("F", bound=Callable[..., None])


class OutputFormat(str, Enum):
    """Report formats."""

    console = "console"
    json = "json"


class CheckFormat(str, Enum):
    """Formats of `qscale check`: the report formats plus the CI ones."""

    console = "console"
    json = "json"
    sarif = "sarif"
    github = "github"


class FailOn(str, Enum):
    """Lowest severity that makes `check` exit 1."""

    error = "error"
    warning = "warning"
    info = "info"


ModelArg = Annotated[
    str,
    typer.Argument(
        help="Checkpoint folder, a single .safetensors file, or org/name.", show_default=False
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        "-e",
        help="Target engine and version, e.g. vllm==0.19.1 or"
        " sglang==0.5.12 (default: the newest vLLM qscale models).",
    ),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]
CheckFormatOpt = Annotated[
    CheckFormat,
    typer.Option(
        "--format",
        "-f",
        help="Output format: console, json, sarif (SARIF 2.1.0 for code scanning) or github"
        " (GitHub Actions annotations).",
    ),
]
BaselineOpt = Annotated[
    Path | None,
    typer.Option(
        "--baseline",
        help="Drop the findings recorded in this baseline file from the report and exit code.",
    ),
]
WriteBaselineOpt = Annotated[
    Path | None,
    typer.Option(
        "--write-baseline",
        help="Record the current findings in FILE as accepted, and exit 0 (2 if a rule crashed,"
        " or if rules could not run and --allow-partial is not given).",
    ),
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to FILE instead of stdout.")
]


def split_codes(values: list[str] | None) -> list[str]:
    """`--select QS2,QS301 --select QS4` -> ["QS2", "QS301", "QS4"]."""
    return [c.strip() for v in values or [] for c in v.split(",") if c.strip()]


def emit_error(
    fmt: CheckFormat,
    message: str,
    *,
    hint: str = "",
    code: str | None = None,
    source: str = "",
) -> None:
    """For a run that cannot finish (exit 2), the document of ``fmt`` that says so: JSON
    ``{"error": …}``, a SARIF log with ``executionSuccessful: false``, a GitHub ``::error``
    line (the console gets only the ``error:`` / ``hint:`` lines on stderr). Always on
    stdout, never into ``--output``: a failed run must not replace an earlier report."""
    import json

    # the renderer of ``fmt`` alone (the console needs none): they import the rule registry
    text = f"{code} {message}" if code else message
    if fmt == CheckFormat.json:
        from qscale.report import json_report

        doc = json.dumps(json_report.error_dict(message, hint, code, source), indent=2) + "\n"
    elif fmt == CheckFormat.sarif:
        from qscale.report import sarif

        doc = json.dumps(sarif.error_log(text, hint, source), indent=2) + "\n"
    elif fmt == CheckFormat.github:
        from qscale.report import github

        doc = github.error_text(text, hint)
    else:
        return
    typer.echo(doc, nl=False)


def emit(text: str, output: Path | None, inputs: Sequence[Path] = ()) -> None:
    """Print to stdout, or write atomically to a file that is none of ``inputs``."""
    if output is None:
        typer.echo(text, nl=False)
        return
    refuse_overwrite(output, inputs, "--output")
    try:
        write_text_atomic(output, text)
    except OSError as exc:
        raise UsageError(
            f"--output: cannot write {output}: {exc.strerror or exc}",
            hint="pass a path in an existing, writable folder",
        ) from exc


def error_document(command: F) -> F:
    """Make a command with ``fmt`` and ``model`` parameters print JSON's error document
    (:func:`emit_error`) on stdout when it cannot finish with ``-f json``, as check does."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except QscaleError as exc:
            fmt = kwargs.get("fmt")
            if fmt is not None and fmt.value == CheckFormat.json.value:
                emit_error(CheckFormat.json, exc.message, hint=exc.hint, code=exc.code,
                           source=str(kwargs.get("model", "")))
            raise

    return run  # type: ignore[return-value]
