"""Per-expert name templates: compute once per ``….experts.<i>.…`` shape, not once per expert.

A 512-expert MoE stores ~99 % of its tensors under ``layers.<l>.mlp.experts.<i>.<proj>.…``.
Where a step treats every expert index alike (the engine's renames and skips do, unless a
rule names a particular index), its result for expert ``j`` is its result for expert ``i``
with the index swapped. :class:`ExpertMemo` computes a step once per *template* (the name
with its expert index blanked, same number of digits) and re-instantiates it, under two
guards:

- **statically**, the caller passes only steps whose rules hold no text that could tell one
  index from another (:func:`index_blind_literals`, :func:`index_blind_regexes`): no literal
  with a digit at a component start, no regex with a literal digit, a digit class or a
  back-reference. Anything else is computed name by name;
- **by example**, the second distinct index of every template is computed for real as well
  and compared with the re-instantiated result; a template whose results do not follow the
  index is computed name by name from then on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

R = TypeVar("R")

_MARK = ".experts."
_MARK_LEN = len(_MARK)
#: the blank of an index of n digits, n < 32 (a longer index cannot be a tensor's expert)
_HASHES = tuple("#" * n for n in range(32))
#: a digit where a name component starts (``.0.``, ``3.gate``): text that can name an index
_COMPONENT_DIGIT = re.compile(r"(?:^|\.)\d")
_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}")


def split_expert(name: str) -> tuple[str, int, int] | None:
    """``(template key, start, end)`` of a per-expert name's index digits ``name[start:end]``,
    else None. The key keeps the number of digits (``experts.#.`` vs ``experts.##.``), so
    that a pattern such as ``\\d\\.`` sees every name of one template alike."""
    i = name.find(_MARK)
    if i < 0:
        return None
    j = i + _MARK_LEN
    k = name.find(".", j)
    if k <= j or k - j >= len(_HASHES) or not name[j:k].isdigit():
        return None
    return f"{name[:j]}{_HASHES[k - j]}{name[k:]}", j, k


def index_blind_literals(texts: Iterable[str]) -> bool:
    """Whether substring/prefix fragments cannot tell expert indices apart: none has a digit
    at the start of a name component (``experts.0.``, ``.1.``, ``12.w1``)."""
    return not any(_COMPONENT_DIGIT.search(t) for t in texts)


def index_blind_regexes(patterns: Iterable[str]) -> bool:
    """Whether regexes treat every digit string of one length alike: no back-reference, and
    no literal digit or class holding digits where a name component can start (``experts\\.0``,
    ``\\.[0-7]``, ``(\\d)\\1``). A digit right after a letter (``w1``, ``fc2``, ``w[123]``)
    cannot touch an index, which starts a component; ``\\d`` and ``{m,n}`` are blind."""
    return all(_regex_blind(_QUANTIFIER.sub("{}", p)) for p in patterns)


def _regex_blind(p: str) -> bool:
    i = 0
    while i < len(p):
        c = p[i]
        if c == "\\":
            if p[i + 1 : i + 2].isdigit():
                return False  # a back-reference: equal digit strings only
            i += 2
            continue
        if c == "[":
            j = p.find("]", i + 2)
            if j < 0:
                return False
            if any(ch.isdigit() for ch in p[i:j]) and not _after_word(p, i):
                return False
            i = j + 1
            continue
        if c.isdigit() and not _after_word(p, i):
            return False
        i += 1
    return True


def _after_word(p: str, i: int) -> bool:
    """Whether ``p[i]`` follows a literal (unescaped) letter, digit or underscore."""
    return i > 0 and (p[i - 1].isalnum() or p[i - 1] == "_") and not (
        i > 1 and p[i - 2] == "\\"
    )


class _Template(Generic[R]):
    __slots__ = ("broken", "digits", "make", "result")

    def __init__(self, digits: str, result: R) -> None:
        self.digits = digits
        self.result = result
        self.make: Callable[[str], R] | None = None  #: set once verified
        self.broken = False


class ExpertMemo(Generic[R]):
    """``compute(name)`` memoized per expert template.

    ``bind(result, digits)`` turns a result computed for index ``digits`` into a function of
    another index's digits that gives that index's result, or returns None when it cannot
    (then every name of that template is computed). Results must be immutable."""

    def __init__(
        self,
        compute: Callable[[str], R],
        bind: Callable[[R, str], Callable[[str], R] | None],
    ) -> None:
        self._compute = compute
        self._bind = bind
        self._templates: dict[str, _Template[R]] = {}

    def each(self, names: Iterable[str]) -> list[R]:
        """``[self(name) for name in names]``, the path of a verified template inline (the
        call of a 10^5-tensor checkpoint's every name)."""
        out: list[R] = []
        add = out.append
        get = self._templates.get
        mark, after, hashes, top = _MARK, _MARK_LEN, _HASHES, len(_HASHES)
        for name in names:
            i = name.find(mark)
            if i >= 0:
                j = i + after
                k = name.find(".", j)
                if j < k < j + top:
                    digits = name[j:k]
                    t = get(f"{name[:j]}{hashes[k - j]}{name[k:]}")
                    if t is not None and t.make is not None and digits.isdigit():
                        add(t.make(digits))
                        continue
            add(self(name))
        return out

    def __call__(self, name: str) -> R:
        # split_expert, inline (once per tensor of the checkpoint)
        i = name.find(_MARK)
        if i < 0:
            return self._compute(name)
        j = i + _MARK_LEN
        k = name.find(".", j)
        digits = name[j:k]
        if k <= j or k - j >= len(_HASHES) or not digits.isdigit():
            return self._compute(name)
        t = self._templates.get(f"{name[:j]}{_HASHES[k - j]}{name[k:]}")
        if t is not None and t.make is not None:
            return t.make(digits)
        if t is None:
            result = self._compute(name)
            self._templates[f"{name[:j]}{_HASHES[k - j]}{name[k:]}"] = _Template(digits, result)
            return result
        if t.broken or digits == t.digits:
            return self._compute(name) if t.broken else t.result
        make = self._bind(t.result, t.digits)
        real = self._compute(name)
        if make is not None and make(digits) == real:
            t.make = make
        else:
            t.broken = True
        return real
