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
from dataclasses import dataclass

from qscale.engines.profiles import PROFILES, EngineProfile, TupleScale
from qscale.errors import UnknownEngine

Version = tuple[int, ...]

__all__ = ["PROFILES", "EngineProfile", "EngineSpec", "TupleScale", "parse_engine", "resolve"]


def parse_version(text: str) -> Version:
    """``0.19.1`` -> (0, 19, 1); suffixes like ``.post1``, ``rc1`` or ``+cu128`` are dropped."""
    m = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    if not m:
        raise UnknownEngine(f"cannot read engine version {text!r}")
    return tuple(int(x) for x in m.group(1).split("."))


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """The engine the user named, and the profile that models it."""

    engine: str
    version: Version | None  #: None: the newest profile
    profile: EngineProfile
    exact: bool  #: False when the version fell outside every profile's range

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


def parse_engine(spec: str | None) -> EngineSpec:
    """``vllm``, ``vllm==0.19.1`` or ``sglang==0.5.12``; default: the newest vLLM profile."""
    if spec is None:
        return resolve("vllm", None)
    name, sep, ver = spec.partition("==")
    name = name.strip().lower()
    if sep and not ver.strip():
        raise UnknownEngine(f"--engine {spec!r}: missing version after `==`")
    return resolve(name, parse_version(ver.strip()) if sep else None)
