"""Option values parsed without pydantic where the answer is plain.

Typer (0.29) turns every value of a command's parameters — defaults included — through a
pydantic ``TypeAdapter``, built on first use: importing pydantic and building the adapters costs
~0.1 s, more than `qscale rule QS204` spends on anything else. For the annotations qscale's
commands use (str, int, bool, Enum, Path, list of these), :func:`install` gives each parameter a
coercion that returns what the adapter would for the values where that is plain (a ``str`` for
``str``, a decimal within the bounds for ``int``, a member name for an ``Enum``, …) and hands
every other value — the ones that end in an error message — to typer's own adapter, so that the
values and the messages stay typer's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

try:  # typer's internals: without them (another typer), every value goes through pydantic
    from typer._coercion import RuntimeParam, build_runtime_param
    from typer._param_types import coerce_cli_choice, coerce_cli_path
    from typer.core import _TyperParameter
except ImportError:  # pragma: no cover - depends on the installed typer
    RuntimeParam = None  # type: ignore[assignment,misc]

#: a leaf's coercion: the value, or SLOW where typer's adapter must decide
Leaf = Callable[[Any, Any, Any, Any], Any]
SLOW = object()
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,17}")


def _str(value: Any, info: Any, param: Any, ctx: Any) -> Any:
    return value if type(value) is str else SLOW


def _bool(value: Any, info: Any, param: Any, ctx: Any) -> Any:
    return value if type(value) is bool else SLOW


def _int(value: Any, info: Any, param: Any, ctx: Any) -> Any:
    if type(value) is str and _DECIMAL.fullmatch(value):
        value = int(value)
    if type(value) is not int or info.clamp:
        return SLOW
    if (info.min is not None and value < info.min) or (info.max is not None and value > info.max):
        return SLOW  # typer words the range
    return value


def _enum(annotation: type[Enum]) -> Leaf:
    choices = list(annotation)

    def coerce(value: Any, info: Any, param: Any, ctx: Any) -> Any:
        try:  # the function typer's choice adapter calls, with the same arguments
            return coerce_cli_choice(value, choices=choices, case_sensitive=info.case_sensitive,
                                     ctx=ctx)
        except ValueError:
            return SLOW

    return coerce


def _path(value: Any, info: Any, param: Any, ctx: Any) -> Any:
    if info.path_type is not None or type(value) is not str or not value:
        return SLOW
    try:  # typer's path check, given the Path its adapter would have made of the str
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    except Exception:  # typer's adapter raises its own error for it
        return SLOW


def _leaf(annotation: Any, info: Any) -> Leaf | None:
    if info.parser is not None:
        return None
    if annotation is str:
        return _str
    if annotation is bool:
        return _bool
    if annotation is int:
        return _int
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _enum(annotation)
    if annotation is Path:
        return _path
    return None


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class PlainParam(RuntimeParam):
        """A parameter's coercion: :data:`Leaf` per value, typer's adapter for the rest."""

        leaf: Leaf
        listed: bool

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            if self.listed:
                items = value if isinstance(value, list | tuple) else [value]
                out = [self.leaf(v, info, param, ctx) for v in items]
                if all(o is not SLOW for o in out):
                    return out
            else:
                one = self.leaf(value, info, param, ctx)
                if one is not SLOW:
                    return one
            return build_runtime_param(param.type_descriptor)._coerce_value(
                value, param=param, ctx=ctx)


def install(command: Any, ctx: Any) -> int:
    """Give the parameters of ``command`` (a typer-built click command; its help option as
    ``ctx`` names it included) that take plain values a coercion without pydantic; returns how
    many got one."""
    if RuntimeParam is None or not hasattr(_TyperParameter, "get_runtime_param"):
        return 0  # pragma: no cover - another typer: its own coercion throughout
    n = 0
    for param in command.get_params(ctx):
        desc = getattr(param, "type_descriptor", None)
        if not isinstance(param, _TyperParameter) or desc is None or param._runtime_param:
            continue
        if desc.file_annotation is not None:
            continue
        annotation, listed = desc.annotation, get_origin(desc.annotation) is list
        if listed:
            (annotation,) = get_args(annotation)
        leaf = _leaf(annotation, desc.parameter_info)
        if leaf is None:
            continue
        try:
            plain = PlainParam(desc.parameter_info, desc.annotation, leaf, listed)
        except TypeError:  # pragma: no cover - another typer's RuntimeParam
            return n
        param._runtime_param = plain
        n += 1
    return n
