"""A stand-in for ``qscale.engines.catalogue`` with its API (``architectures``, ``lookup``,
``served``, ``load(engine).releases``), for tests of what reads it (QS105, `qscale models`,
docs/models.md) that must not depend on the generated engine data."""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from qscale.engines import EngineSpec
from qscale.rules.qs105_architecture_not_served import _CATALOGUE


@dataclass(frozen=True, slots=True)
class Arch:
    name: str
    status: str
    why: str
    source: str
    kind: str


@dataclass(frozen=True, slots=True)
class Data:
    engine: str
    releases: tuple[str, ...]


#: release -> (name, kind, why); why "" means planned
Rows = Mapping[str, Sequence[tuple[str, str, str]]]


def install(monkeypatch: pytest.MonkeyPatch, engine: str, rows: Rows) -> types.ModuleType:
    """Make ``import qscale.engines.catalogue`` give a catalogue of ``engine`` holding
    ``rows`` (releases in ascending order); other engines have no data."""
    releases = tuple(rows)

    def release(spec: EngineSpec) -> str | None:
        if spec.engine != engine:
            return None
        if spec.version is None:
            return releases[-1]
        at = [r for r in releases if tuple(map(int, r.split("."))) <= spec.version]
        return at[-1] if at else None

    def architectures(spec: EngineSpec) -> tuple[Arch, ...]:
        r = release(spec)
        if r is None:
            return ()
        return tuple(
            Arch(n, "not-plannable" if why else "planned", why, f"{n.lower()}.py@{engine}=={r}", k)
            for n, k, why in sorted(rows[r])
        )

    def lookup(spec: EngineSpec, arch: str) -> Arch | None:
        return next((a for a in architectures(spec) if a.name == arch), None)

    mod = types.ModuleType(_CATALOGUE)
    mod.architectures = architectures
    mod.lookup = lookup
    mod.served = lambda spec: release(spec) is not None
    mod.load = lambda e: Data(e, releases) if e == engine else None
    monkeypatch.setitem(sys.modules, _CATALOGUE, mod)
    return mod
