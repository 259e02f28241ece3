"""The interface every format parser implements, and the matching helpers they share."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol, Self

from qscale.errors import ConfigError, QscaleError
from qscale.modules import ModuleInfo
from qscale.schemes import QuantScheme

if TYPE_CHECKING:
    from qscale.engines import EngineSpec


@dataclass(frozen=True, slots=True)
class Resolution:
    """The scheme a format assigns to one module, and why."""

    scheme: QuantScheme | None  #: None: the module stays unquantized
    reason: str  #: e.g. "ignored by `re:.*mlp.gate$`", "config_groups.group_0 (target `Linear`)"


#: how an engine matches a skip-list entry against a module name: ``match(name, entry)``
Matcher = Callable[[str, str], bool]


@dataclass(frozen=True, slots=True)
class SkipList:
    """A config's list of modules left unquantized, as the engine reads it (QS204)."""

    key: str  #: its key under ``quantization_config`` (``ignore``, ``exclude_modules``, …)
    entries: Sequence[str]
    match: Matcher  #: how the engine matches an entry against a module name
    #: entries that match no module and still act (Quark's that skip a whole fused-MoE
    #: layer by naming part of it), among the modules resolved so far
    acting: frozenset[str] = frozenset()
    #: entries are name suffixes, which the engine tests against its own layer names (a
    #: fused layer is one name for its shards: FP-Quant), not against the checkpoint's
    on_engine_layers: bool = False


class QuantFormat(Protocol):
    """A parsed quantization config that resolves each module's scheme."""

    @property
    def method(self) -> str:
        """The ``quant_method`` it parses."""
        ...

    @property
    def config_key(self) -> str:
        """Where the config came from ("config.json" or "hf_quant_config.json")."""
        ...

    def resolve(self, module: ModuleInfo) -> Resolution:
        """The scheme of one module (only Linear and fused-expert modules are asked)."""
        ...

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """The error ``engine`` (None: the newest vLLM) stops on while building this config
        at start-up, before any weight loads; None when it builds it. A ``ConfigError``
        (QS101) for a config the release refuses, an ``UnknownFormat`` (QS102) for one it
        builds in a way qscale does not model."""
        ...

    def for_engine(self, engine: EngineSpec | None) -> QuantFormat:
        """This config as ``engine``'s release (None: the newest vLLM) builds it: the one
        :meth:`resolve` and :meth:`refusal` answer for (Quark's schemes differ by release)."""
        ...

    def skip_list(self) -> SkipList | None:
        """The config's list of modules the engine leaves unquantized, with the engine's way
        of matching it; None for a format with no such list (or one QS204 does not judge)."""
        ...


class NoSkipList:
    """``skip_list`` for formats whose configs list no modules to skip (or whose list QS204
    does not judge)."""

    __slots__ = ()

    def skip_list(self) -> SkipList | None:
        """None."""
        return None


class SameInEveryRelease:
    """``for_engine`` for formats whose modules resolve alike in every release (what differs
    by release is in :meth:`QuantFormat.refusal` or the load plan)."""

    __slots__ = ()

    def for_engine(self, engine: EngineSpec | None) -> Self:
        """Itself."""
        del engine
        return self


class BuiltByEveryRelease(SameInEveryRelease):
    """``refusal`` for formats whose configs no modelled release refuses as a whole (their
    per-module refusals are load-plan findings, QS402)."""

    __slots__ = ()

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """None: every modelled release builds the config."""
        del engine
        return None


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression `{pattern}` ({exc})") from None


def equal_or_regex(name: str, pattern: str) -> bool:
    """compressed-tensors / vLLM matching: exact name, or ``re:`` + ``re.match`` (anchored)."""
    if pattern.startswith("re:"):
        return _compile(pattern[3:]).match(name) is not None
    return name == pattern


def ends_with(name: str, entry: str) -> bool:
    """FP-Quant / vLLM matching: the entry ends the name (``prefix.endswith(entry)``)."""
    return name.endswith(entry)


def first_match(name: str, patterns: Iterable[str]) -> str | None:
    """The first pattern that matches ``name`` exactly or as a ``re:`` regex."""
    return next((p for p in patterns if equal_or_regex(name, p)), None)


def wildcard(name: str, pattern: str) -> bool:
    """vLLM's ModelOpt matching (``is_layer_excluded``): fnmatch wildcards, else substring,
    also with the ``language_model.`` component removed from the name."""
    names = (name, name.replace("language_model.", "", 1))
    if any(c in pattern for c in "*?["):
        return any(fnmatch.fnmatchcase(n, pattern) for n in names)
    return any(pattern in n for n in names)


class Wildcards:
    """A whole list of :func:`wildcard` patterns, compiled once: :meth:`first` tells a name
    that no pattern matches (most modules of a large MoE) with a regex or two, instead of one
    ``fnmatch`` per pattern, and finds the first pattern that matches through a tree of
    pattern ranges (each tested as one regex, built on first use): a few dozen tests per
    name however long the list, where walking it made resolving quadratic in the model's
    depth (a ModelOpt ``exclude_modules`` that names every layer)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._root = _Range(self.patterns, 0, len(self.patterns))

    def first(self, name: str) -> str | None:
        """The first pattern, in list order, that matches ``name`` (as :func:`wildcard`)."""
        names = (name, name.replace("language_model.", "", 1))
        found = self._root.first(names)
        return None if found is None else self.patterns[found]


def _is_glob(p: str) -> bool:
    return any(c in p for c in "*?[")


class _Range:
    """Patterns ``lo ..< hi`` of a list: whether any matches a name (a regex of its globs,
    one of its substrings shaped as their trie), and which one first, through
    :data:`FANOUT` sub-ranges, down to :data:`LEAF` patterns tried one by one."""

    FANOUT = 16
    LEAF = 16
    __slots__ = ("_children", "_globs", "_ordered", "_subs", "hi", "lo", "patterns")

    def __init__(self, patterns: tuple[str, ...], lo: int, hi: int) -> None:
        self.patterns, self.lo, self.hi = patterns, lo, hi
        self._globs: re.Pattern[str] | None = None
        self._subs: re.Pattern[str] | None = None
        self._children: list[_Range] | None = None
        self._ordered: tuple[tuple[int, str, re.Pattern[str] | None], ...] | None = None
        own = patterns[lo:hi]
        globs = [p for p in own if _is_glob(p)]
        if globs:  # a whole-name match of one of them, costing about the name's length
            self._globs = re.compile(_glob_trie_regex(globs))
        subs = [p for p in own if not _is_glob(p)]
        if subs:  # a search costs about the name's length, not the number of substrings
            self._subs = re.compile(_trie_regex(subs))

    def _hits(self, names: tuple[str, str]) -> bool:
        g, s = self._globs, self._subs
        return bool(
            (g is not None and (g.match(names[0]) or g.match(names[1])))
            or (s is not None and (s.search(names[0]) or s.search(names[1])))
        )

    def first(self, names: tuple[str, str]) -> int | None:
        """The index of the first pattern of this range that matches one of ``names``."""
        if not self._hits(names):
            return None
        if self.hi - self.lo <= self.LEAF:
            if self._ordered is None:
                self._ordered = tuple(
                    (i, p, re.compile(fnmatch.translate(p)) if _is_glob(p) else None)
                    for i, p in enumerate(self.patterns[self.lo : self.hi], self.lo)
                )
            for i, p, glob in self._ordered:
                if glob is None:
                    if p in names[0] or p in names[1]:
                        return i
                elif glob.match(names[0]) or glob.match(names[1]):
                    return i
            return None
        if self._children is None:
            step = -(-(self.hi - self.lo) // self.FANOUT)
            self._children = [_Range(self.patterns, a, min(a + step, self.hi))
                              for a in range(self.lo, self.hi, step)]
        for child in self._children:
            found = child.first(names)
            if found is not None:
                return found
        return None


def _glob_trie_regex(globs: Iterable[str]) -> str:
    """A regex whose ``match`` is a whole-name match of one of the globs (as
    ``fnmatch.translate`` each), written as the character trie of their literal heads (the
    text before the first ``*``, ``?`` or ``[``) with each glob's translated rest where its
    head ends: the regex engine follows the name down one path of the trie instead of
    trying every glob in turn (a list of 10^3 per-layer globs made that the cost of
    resolving every module)."""
    heads = []
    for g in globs:
        cut = next(i for i, c in enumerate(g) if c in "*?[")
        heads.append((g[:cut], fnmatch.translate(g[cut:])))
    return _head_trie_regex(heads)


def _trie_regex(words: Iterable[str]) -> str:
    """A regex matching exactly the given strings, written as their character trie."""
    return _head_trie_regex((w, "") for w in words)


def _head_trie_regex(heads: Iterable[tuple[str, str]]) -> str:
    """The character trie of literal heads as a regex, each ``(head, rest)`` continuing with
    the regex ``rest`` where its head ends (longer heads tried first)."""
    trie: dict[str, Any] = {}
    for head, rest in heads:
        node = trie
        for c in head:
            node = node.setdefault(c, {})
        node.setdefault("", []).append(rest)

    def emit(node: dict[str, Any]) -> str:
        alts = [re.escape(c) + emit(child) for c, child in sorted(node.items()) if c]
        alts += [f"(?:{r})" if r else "" for r in dict.fromkeys(node.get("", ()))]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie)


def require_list(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    """A list of strings at ``obj[key]`` (missing means empty)."""
    value = obj.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of strings")
    return value


def loaded_instance(obj: object, module: str, cls: str) -> object | None:
    """``obj`` if it is an instance of ``qscale.formats.<module>.<cls>``, else None, without
    importing that module: a config of the class exists only once its module is loaded, and
    a check imports the parser of its own format alone (:data:`qscale.formats.FORMATS`)."""
    mod = sys.modules.get(f"qscale.formats.{module}")
    return obj if mod is not None and isinstance(obj, getattr(mod, cls)) else None
