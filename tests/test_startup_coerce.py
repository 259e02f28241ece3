"""The CLI's option values parsed without pydantic (qscale/cli/_coerce.py) are typer's: for each
command line, the values a command gets, or the error it stops with, are those of the same
command as typer builds it, whose values all go through pydantic."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer._click as click

from qscale.cli import _SETTINGS, COMMANDS, load_command
from qscale.cli._coerce import PlainParam

#: command -> command lines after its name: good values, and values typer refuses
LINES: dict[str, list[list[str]]] = {
    "check": [
        ["m"],
        ["m", "--tp", "2", "--dp", "4", "--ep", "8", "-e", "vllm==0.33.0"],
        ["m", "--tp", "007"], ["m", "--tp", "+3"], ["m", "--tp", " 2"], ["m", "--tp", "1_0"],
        ["m", "--tp", "0"], ["m", "--tp", "-1"], ["m", "--tp", "abc"], ["m", "--tp", "2.0"],
        ["m", "--tp", "99999999999999999999999"], ["m", "--ep", ""],
        ["m", "-f", "json"], ["m", "-f", "JSON"], ["m", "-f", "xml"], ["m", "--fail-on", "info"],
        ["m", "--platform", "rocm-aiter"], ["m", "--platform", "ROCM"], ["m", "--platform", ""],
        ["m", "--select", "QS2,QS301", "--select", "QS4", "--ignore", "QS303"],
        ["m", "--output", "out.json"], ["m", "--output", ""], ["m", "--baseline", "."],
        ["m", "--write-baseline", "b.json", "--header-only", "--allow-partial"],
        ["m", "--sequence-parallel-moe", "--a2a-backend", "deepep"],
        ["m", "--no-sequence-parallel-moe", "--enable-expert-parallel"],
        [], ["m", "n"], ["m", "--tp"], ["m", "--bogus"],
    ],
    "rule": [["QS204"], ["qs204"], [], ["--all"], ["--all", "QS1"], [""]],
    "models": [[], ["-e", "sglang==0.5.12", "-f", "json", "-o", "m.json"], ["-f", "yaml"]],
    "layouts": [["m", "--max-tp", "32", "--max-ep", "1"], ["m", "--max-ep", "0"],
                ["m", "--platform", "rocm"], ["m", "--platform", "gpu"]],
    "fix": [["m", "-o", "out", "--unsafe-fixes", "--dry-run", "--tp", "4", "-f", "json"],
            ["m", "--tp", "x"]],
    "inspect": [["m", "--name", "model.layers.0", "--quantized", "-f", "json"]],
    "plan": [["m", "--param", "w", "-o", "p.json"], ["m", "-f", "Json"]],
}


def _typer_built(name: str) -> click.Command:
    """``name`` as typer builds it: every value through typer's pydantic adapters."""
    sub = typer.Typer(pretty_exceptions_enable=False, add_completion=False,
                      rich_markup_mode=None, context_settings=_SETTINGS)
    sub.command(name)(load_command(name).callback)  # type: ignore[arg-type]
    cmd = typer.main.get_command(sub)
    cmd.name = name
    return cmd


def _parse(cmd: click.Command, args: list[str]) -> tuple[str, Any]:
    """The values ``cmd`` gets from ``args`` (with their types), or the error it stops with."""
    try:
        ctx = cmd.make_context(cmd.name or "", list(args))
    except click.ClickException as exc:
        return type(exc).__name__, exc.format_message()
    return "ok", {k: (type(v), v) for k, v in ctx.params.items()}


def test_the_command_lines_cover_every_command():
    assert set(LINES) == set(COMMANDS)


@pytest.mark.parametrize(("name", "args"),
                         [(name, args) for name, lines in LINES.items() for args in lines])
def test_values_and_errors_are_typers(name, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _parse(load_command(name), args) == _parse(_typer_built(name), args)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_of_every_command_parses_without_pydantic(name):
    cmd = load_command(name)
    ctx = click.Context(cmd, help_option_names=_SETTINGS["help_option_names"])
    untaken = [p.name for p in cmd.get_params(ctx)
               if not isinstance(getattr(p, "_runtime_param", None), PlainParam)]
    assert untaken == []


def test_a_value_typer_refuses_gets_typers_message():
    # the plain path hands a value it cannot take to typer's adapter, which words the error
    kind, message = _parse(load_command("check"), ["m", "--tp", "0"])
    assert kind == "BadParameter" and "greater than or equal to 1" in message
    assert "pydantic" in sys.modules


def test_a_path_option_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    kind, params = _parse(load_command("check"), ["m", "-o", "r.json", "--baseline", "b.json"])
    assert kind == "ok"
    assert params["output"] == (type(Path("r.json")), Path("r.json"))
    assert params["baseline"][1] == Path("b.json")
