"""maker(): build a frozen, slotted dataclass without its generated ``__init__``.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` (looked up by
name, once per field): about three times the cost of the slot stores themselves. Checks build
10^5 of a few such records (modules, their resolutions, shard slots); :func:`maker` gives a
function that stores the fields straight into the slots, and yields an object equal to what
the class's own constructor gives (same fields, same defaults when the caller passes them all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """``make(*fields)`` for a slotted dataclass, every ``__init__`` field positional and
    required (the defaults are not filled in: pass every field). ``__post_init__`` is not
    run: the caller sets the fields it would."""
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    setters = tuple(getattr(cls, n).__set__ for n in names)
    new = object.__new__
    if len(setters) == 3:
        s0, s1, s2 = setters

        def make3(a: Any, b: Any, c: Any) -> T:
            o = new(cls)
            s0(o, a)
            s1(o, b)
            s2(o, c)
            return o

        return make3

    def make(*values: Any) -> T:
        o = new(cls)
        for s, v in zip(setters, values, strict=True):
            s(o, v)
        return o

    return make
