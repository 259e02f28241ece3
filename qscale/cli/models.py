"""`qscale models`: every architecture an engine version serves, and whether qscale plans it."""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from typing import TYPE_CHECKING, Any

from qscale.cli.options import EngineOpt, FormatOpt, OutputFormat, OutputOpt, emit
from qscale.errors import UnknownEngine

if TYPE_CHECKING:  # the catalogue's data and rich: imported when the command runs, not by --help
    from qscale.engines import EngineSpec
    from qscale.engines.catalogue import Architecture

STATUSES = ("planned", "not-plannable")


def catalogued_releases(engine: str) -> tuple[str, ...]:
    """The releases of ``engine`` the catalogue holds data for, oldest first (empty: none)."""
    from qscale.engines import catalogue

    data = catalogue.load(engine)
    return data.releases if data is not None else ()


def served_architectures(spec: EngineSpec) -> tuple[Architecture, ...]:
    """Every architecture the engine version serves, as the catalogue has it.

    Raises:
        UnknownEngine: the catalogue is missing or holds no data for that engine version.
    """
    from qscale.engines import PROFILES, catalogue

    archs = catalogue.architectures(spec)
    if archs:
        return archs
    engines = dict.fromkeys(p.engine for p in PROFILES)
    known = [f"{e} {', '.join(rs)}" for e in engines if (rs := catalogued_releases(e))]
    hint = f"catalogued releases: {'; '.join(known)}" if known else "no engine is catalogued"
    raise UnknownEngine(
        f"{spec.label}: qscale's engine catalogue has no architectures for this version",
        hint=hint,
    )


def models_dict(spec: EngineSpec, archs: tuple[Architecture, ...]) -> dict[str, Any]:
    """The architectures as JSON-ready data, with the count of each status."""
    from qscale.engines.catalogue import release_label

    counts = Counter(a.status for a in archs)
    return {
        "engine": release_label(spec),
        "architectures": [
            {"name": a.name, "status": a.status, "why": a.why, "source": a.source} for a in archs
        ],
        "summary": {s: counts.get(s, 0) for s in STATUSES},
    }


def render_console(spec: EngineSpec, archs: tuple[Architecture, ...], *, width: int = 120) -> str:
    """A table of the architectures, then the counts."""
    from rich.console import Console
    from rich.table import Table

    data = models_dict(spec, archs)
    table = Table("architecture", "kind", "status", "why", title=data["engine"], expand=False)
    for a in archs:
        table.add_row(a.name, a.kind, a.status, a.why or "—")
    buf = io.StringIO()
    con = Console(file=buf, width=width, no_color=True, highlight=False, force_terminal=False)
    con.print(table)
    counts = ", ".join(f"{n} {s}" for s, n in data["summary"].items())
    n = f"{len(archs)} architecture{'s' if len(archs) != 1 else ''}"
    con.print(f"{data['engine']}: {n} served: {counts}")
    return buf.getvalue()


def models_cmd(
    engine: EngineOpt = None, fmt: FormatOpt = OutputFormat.console, output: OutputOpt = None
) -> None:
    """List every architecture an engine version serves, and whether qscale plans its load.

    planned: qscale simulates how the engine loads it, so every rule of `qscale check` runs.

    not-plannable: served, but qscale cannot plan its load (the why column says why).

    `qscale check` of a not-plannable checkpoint is partial: exit 2 unless --allow-partial.

    Examples:

      qscale models --engine vllm==0.33.0

      qscale models -e sglang==0.5.12 -f json
    """
    from qscale.engines import parse_engine

    spec = parse_engine(engine)
    archs = served_architectures(spec)
    if fmt == OutputFormat.json:
        emit(json.dumps(models_dict(spec, archs), indent=2) + "\n", output)
        return
    width = shutil.get_terminal_size((120, 24)).columns if output is None else 120
    emit(render_console(spec, archs, width=width), output)
