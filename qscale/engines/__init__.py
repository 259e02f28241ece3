"""The engine side of qscale: what an engine release does with a checkpoint, as data, and the
simulation that applies it. Its modules, in the order a check uses them:

1. this module: ``--engine NAME==VERSION`` -> :class:`EngineSpec` (the profile row of that
   version, :mod:`.profiles`: tuple shard ids, scale sentinels, post-load processing, …);
2. :mod:`.catalogue`: which architectures the release serves and how its loader names
   tensors (generated data, ``data/<engine>.json``), with the hand-written overrides of
   :mod:`.families` -> the :class:`~qscale.engines.families.Family` to plan with;
3. :mod:`.loader`: every checkpoint tensor into its merged parameter and scale slot;
4. :mod:`.processing`: what ``process_weights_after_loading`` makes of the slots.

:mod:`.extract` and :mod:`.generate` write the catalogue from released wheels; the check path
never imports them. A new engine release that changes no loader behaviour is a regenerated
catalogue; one that changes behaviour is a new profile row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from qscale.engines.profiles import PROFILES, EngineProfile, TupleScale
from qscale.errors import UnknownEngine

Version = tuple[int, ...]

__all__ = [
    "PROFILES",
    "EngineProfile",
    "EngineSpec",
    "TupleScale",
    "modelled_releases",
    "parse_engine",
    "resolve",
    "unmodelled",
]


def parse_version(text: str) -> Version:
    """``0.19.1`` -> (0, 19, 1); suffixes like ``.post1``, ``rc1`` or ``+cu128`` are dropped.
    Padded with zeros to three parts, as PEP 440 compares them: ``0.20`` is ``0.20.0`` (not
    a version before it, which would select 0.19.1's facts)."""
    m = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    if not m:
        raise UnknownEngine(f"cannot read engine version {text!r}")
    parts = tuple(int(x) for x in m.group(1).split("."))
    return parts + (0,) * (3 - len(parts))


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """The engine the user named, and the profile that models it."""

    engine: str
    version: Version | None  #: None: the newest profile
    profile: EngineProfile
    exact: bool  #: False when the version fell outside every profile's range
    #: the range the user gave (``vllm>=0.19,<0.21``) when ``version`` was picked from it
    requested: str | None = None

    @property
    def label(self) -> str:
        """``vllm==0.19.1``."""
        if self.version is None:
            return f"{self.engine}{self.profile.range_label}"
        return f"{self.engine}=={'.'.join(map(str, self.version))}"


def resolve(engine: str, version: Version | None) -> EngineSpec:
    """The profile for an engine version; an unknown version maps to the nearest profile."""
    rows = [p for p in PROFILES if p.engine == engine]
    if not rows:
        raise UnknownEngine(
            f"unknown engine {engine!r}",
            hint=f"known engines: {', '.join(sorted({p.engine for p in PROFILES}))}",
        )
    if version is None:
        return EngineSpec(engine, None, rows[-1], True)
    for p in rows:
        if p.low <= version < p.high:
            return EngineSpec(engine, version, p, True)
    nearest = rows[0] if version < rows[0].low else rows[-1]
    return EngineSpec(engine, version, nearest, False)


_OPS = {
    "==": lambda v, w: v == w,
    "!=": lambda v, w: v != w,
    ">=": lambda v, w: v >= w,
    "<=": lambda v, w: v <= w,
    ">": lambda v, w: v > w,
    "<": lambda v, w: v < w,
}
_CLAUSE = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*([^,<>=!\s]+)\s*$")


def modelled_releases(engine: str) -> tuple[str, ...]:
    """The releases of ``engine`` whose loader source qscale has read (its generated
    catalogue, ``data/<engine>.json``); () when the engine has no catalogue."""
    from qscale.engines import catalogue  # the catalogue module imports this one

    cat = catalogue.load(engine)
    return cat.releases if cat is not None else ()


def _modelled_text(engine: str) -> str:
    releases = modelled_releases(engine)
    if releases:
        return f"qscale models {len(releases)} {engine} releases, {releases[0]} to {releases[-1]}"
    ranges = ", ".join(p.range_label for p in PROFILES if p.engine == engine)
    return f"qscale models {engine} by version ranges ({ranges}) and has no release list for it"


def unmodelled(spec: EngineSpec) -> str:
    """Why the version asked for is not one qscale has read, or "" when it is.

    A version is modelled when an engine profile covers it and, for an engine with a
    catalogue, it lies between the first and the newest release read (a patch release in
    between is modelled by the release before it). Anything else is checked as the nearest
    modelled release: an extrapolation, so ``qscale check`` calls the check partial (QS010).
    """
    if spec.version is None:
        return _format_gaps(spec)
    releases = modelled_releases(spec.engine)
    if not spec.exact:
        nearest = f"{spec.engine} {spec.profile.range_label}"
    elif releases and spec.version > parse_version(releases[-1]):
        nearest = f"{spec.engine}=={releases[-1]}, the newest release read"
    elif releases and spec.version < parse_version(releases[0]):
        nearest = f"{spec.engine}=={releases[0]}, the oldest release read"
    else:
        return _format_gaps(spec)
    return (
        f"{spec.label} is outside the versions qscale has read ({_modelled_text(spec.engine)});"
        f" modelled as {nearest}"
    )


def _format_gaps(spec: EngineSpec) -> str:
    """Why a catalogued release is not fully modelled: quantization-format facts its
    catalogue has no entry for, or values qscale's rows do not know ("" when neither)."""
    from qscale.engines import catalogue, wna16  # both import this module

    gaps = catalogue.format_gaps(spec.engine, spec.version)
    unknown = wna16.unknown_values(spec.engine, spec.version)
    if not gaps and not unknown:
        return ""
    cat = catalogue.load(spec.engine)
    release = cat.release_for(spec.version) if cat is not None else None
    parts = [f"has no entry for the quantization-format fact(s) {', '.join(gaps)} (not read"
             " in that release)"] if gaps else []
    parts += [f"has values qscale does not model for {', '.join(unknown)}"] if unknown else []
    return (f"the {spec.engine}=={release} catalogue {'; and '.join(parts)}; the formats that"
            " use them are modelled by the nearest release that has them")


def _from_range(name: str, spec: str, clauses: list[tuple[str, Version]]) -> EngineSpec:
    """The newest modelled release that satisfies every clause."""
    releases = modelled_releases(name)
    if not releases:
        resolve(name, None)  # an unknown engine says so first
        raise UnknownEngine(
            f"--engine {spec!r}: version ranges need the engine's release list;"
            f" {_modelled_text(name)}",
            hint=f"name one version, e.g. --engine {name}=={_example(name)}",
        )
    fits = [r for r in releases if all(_OPS[op](parse_version(r), v) for op, v in clauses)]
    if not fits:
        raise UnknownEngine(
            f"--engine {spec!r}: no release qscale models is in that range; {_modelled_text(name)}",
            hint=f"pick a range that includes one of them, or name one: --engine"
            f" {name}=={releases[-1]}",
        )
    return replace(resolve(name, parse_version(fits[-1])), requested=spec)


def _example(name: str) -> str:
    rows = [p for p in PROFILES if p.engine == name]
    return "0.5.12" if name == "sglang" else ".".join(map(str, rows[-1].low)) if rows else "X"


def parse_engine(spec: str | None) -> EngineSpec:
    """``vllm``, ``vllm==0.19.1``, ``sglang==0.5.12``, or a range such as ``vllm>=0.19`` /
    ``vllm>=0.19,<0.21``; default: the newest vLLM profile.

    A range checks the newest release qscale models inside it (every release qscale has read
    is listed by ``qscale models``); a range that holds none is an error naming them.
    """
    if spec is None:
        return resolve("vllm", None)
    m = re.match(r"\s*([A-Za-z][\w.-]*)\s*(.*)$", spec)
    if not m:
        raise UnknownEngine(f"cannot read --engine {spec!r}")
    name, rest = m.group(1).lower(), m.group(2).strip()
    if not rest:
        return resolve(name, None)
    if rest.startswith("==") and "," not in rest and not rest[2:].strip():
        raise UnknownEngine(f"--engine {spec!r}: missing version after `==`")
    clauses = []
    for part in rest.split(","):
        c = _CLAUSE.match(part)
        if not c:
            raise UnknownEngine(
                f"cannot read --engine {spec!r}",
                hint="use NAME==VERSION (vllm==0.19.1) or a range (vllm>=0.19,<0.21)",
            )
        clauses.append((c.group(1), parse_version(c.group(2))))
    if len(clauses) == 1 and clauses[0][0] == "==":
        return resolve(name, clauses[0][1])
    return _from_range(name, spec.strip(), clauses)
