"""SARIF 2.1.0 output, for GitHub code scanning and other SARIF viewers.

Every rule of the registry is listed in ``tool.driver.rules``; each group of findings with one
cause (qscale.findings.group_findings) becomes one result with its rule, level, message (with
the count when the group has more than one finding), the checkpoint file of its first finding
(relative to the checkpoint folder, under the ``CHECKPOINT`` base id), the tensor / engine
param / config key as logical locations, up to :data:`RELATED` other members as
``relatedLocations``, ``properties.count``, and qscale's stable fingerprint of its first
finding under ``partialFingerprints``. Results stay under GitHub's 25,000 per run
(:data:`MAX_RESULTS`; past it, a notification says how many were left out).

A partial check (a rule skipped or crashed, or an engine version qscale has not read) has
``executionSuccessful: false`` and one error notification per cause, under
``invocations[0].toolExecutionNotifications``; so does a run that could not finish at all
(:func:`error_log`, exit 2), with no results.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from qscale import __version__, rules
from qscale.baseline import FINGERPRINT_KEY, fingerprint
from qscale.findings import FindingGroup, Location, Report, Severity
from qscale.rules._api import Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
# No project URL is published yet; the package index page is where `pip install qscale` points.
INFORMATION_URI = "https://pypi.org/project/qscale/"
CHECKPOINT_BASE = "CHECKPOINT"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
#: GitHub code scanning takes at most 25,000 results per run (and drops the rest)
MAX_RESULTS = 25_000
#: how many other members of a group a result lists as ``relatedLocations``
RELATED = 10


def checkpoint_folder(source: str) -> str:
    """The checkpoint folder as the user named it: ``source``, or its folder for a single
    ``.safetensors`` file. Finding files are relative to it."""
    if source.endswith(".safetensors"):
        return str(PurePath(source).parent)
    return source


def render(report: Report) -> str:
    """The report as a SARIF 2.1.0 log (pretty-printed JSON with a trailing newline)."""
    return json.dumps(sarif_log(report), indent=2) + "\n"


def _tool() -> dict[str, Any]:
    return {
        "driver": {
            "name": "qscale",
            "version": __version__,
            "semanticVersion": __version__,
            "informationUri": INFORMATION_URI,
            "rules": [_rule(r) for r in rules.ALL_RULES],
        }
    }


def sarif_log(report: Report) -> dict[str, Any]:
    """The report as SARIF-shaped data: one run, every rule, one result per group."""
    index = {r.code: i for i, r in enumerate(rules.ALL_RULES)}
    groups = report.groups
    kept = groups[:MAX_RESULTS]
    invocation = _invocation(report, index)
    if len(groups) > len(kept):
        invocation.setdefault("toolExecutionNotifications", []).append(
            {
                "level": "warning",
                "message": {
                    "text": f"{len(groups) - len(kept)} of {len(groups)} results left out:"
                    f" code scanning takes at most {MAX_RESULTS} per run"
                },
            }
        )
    run: dict[str, Any] = {
        "tool": _tool(),
        "originalUriBaseIds": {CHECKPOINT_BASE: _base(report.source)},
        "invocations": [invocation],
        "results": [_result(g, index) for g in kept],
        "properties": {
            "source": report.source,
            "engine": report.engine,
            "layout": report.layout,
            "complete": report.complete,
            "summary": dict(report.summary),
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def error_log(message: str, hint: str = "", source: str = "") -> dict[str, Any]:
    """The SARIF log of a run that could not finish (exit 2): no results, and
    ``executionSuccessful: false`` with the error as a notification."""
    text = f"{message} (hint: {hint})" if hint else message
    run: dict[str, Any] = {
        "tool": _tool(),
        "originalUriBaseIds": {CHECKPOINT_BASE: _base(source or ".")},
        "invocations": [
            {
                "executionSuccessful": False,
                "toolExecutionNotifications": [{"level": "error", "message": {"text": text}}],
            }
        ],
        "results": [],
        "properties": {"source": source, "complete": False},
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _rule(r: Rule) -> dict[str, Any]:
    body = r.doc.strip().split("\n", 1)
    details = body[1].strip() if len(body) > 1 else r.summary
    return {
        "id": r.code,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": details},
        "help": {"text": details, "markdown": f"**{r.code} {r.name}**: {r.summary}\n\n{details}"},
        "defaultConfiguration": {"level": _LEVEL[r.severity]},
        "properties": {
            "tags": list(dict.fromkeys(("quantization", *r.tags))),
            "input": r.check is None,
        },
    }


def _base(source: str) -> dict[str, Any]:
    folder = PurePath(checkpoint_folder(source))
    if folder.is_absolute():
        uri = folder.as_uri().rstrip("/") + "/"
        return {"uri": uri, "description": {"text": "the checkpoint folder"}}
    rel = folder.as_posix()
    return {
        "uri": "./" if rel == "." else quote(rel.rstrip("/")) + "/",
        "uriBaseId": "%SRCROOT%",
        "description": {"text": "the checkpoint folder, relative to where qscale ran"},
    }


def _result(g: FindingGroup, index: dict[str, int]) -> dict[str, Any]:
    f = g.first
    out: dict[str, Any] = {"ruleId": f.code}
    if f.code in index:
        out["ruleIndex"] = index[f.code]
    out["level"] = _LEVEL[f.severity]
    text = f.message
    if g.count > 1:
        text += f" (×{g.count}: {g.count - 1} more finding(s) of this cause)"
    out["message"] = {"text": text}
    out["locations"] = [_location(f.location)]
    if g.count > 1:
        out["relatedLocations"] = [
            {"id": i, **_location(m.location)}
            for i, m in enumerate(g.members[1 : RELATED + 1], start=1)
        ]
    out["partialFingerprints"] = {FINGERPRINT_KEY: fingerprint(f)}
    props: dict[str, Any] = {"severity": f.severity.label, "count": g.count, **f.location.as_dict()}
    if f.fix is not None:
        props["fix"] = {"title": f.fix.title, "applicability": f.fix.applicability.value}
    out["properties"] = props
    return out


def _location(loc: Location) -> dict[str, Any]:
    # Every finding concerns the checkpoint; one without a file (an engine-version note) points
    # at config.json, which every checkpoint has, since code scanning drops results that name
    # no file.
    uri = quote(PurePath(loc.file or "config.json").as_posix())
    out: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": {"uri": uri, "uriBaseId": CHECKPOINT_BASE}}
    }
    logical = []
    if loc.tensor:
        logical.append({"name": loc.tensor, "fullyQualifiedName": loc.tensor, "kind": "variable"})
    if loc.param:
        logical.append({"name": loc.param, "fullyQualifiedName": loc.param, "kind": "member"})
    if loc.key:
        logical.append({"name": loc.key, "fullyQualifiedName": loc.key, "kind": "property"})
    if logical:
        out["logicalLocations"] = logical
    return out


def _invocation(report: Report, index: dict[str, int]) -> dict[str, Any]:
    def note(level: str, code: str, text: str) -> dict[str, Any]:
        rule: dict[str, Any] = {"id": code}
        if code in index:
            rule["index"] = index[code]
        return {"level": level, "message": {"text": text}, "associatedRule": rule}

    execution = [note("error", c, f"{c} crashed: {e}") for c, e in report.crashed]
    if report.unmodelled:
        execution.append(note("error", "QS010", f"QS010 {report.unmodelled}"))
    # a skipped rule leaves the check partial: an error, as a crash is, not a note
    execution += [note("error", c, f"{c} did not run: {why}") for c, why in report.skipped]
    config = [
        note(
            "note",
            f.code,
            f"stale baseline entry {fingerprint(f)} ({f.code}"
            f" {_where(f.location)}) matches no finding",
        )
        for f in report.stale
    ]
    out: dict[str, Any] = {"executionSuccessful": report.complete}
    if execution:
        out["toolExecutionNotifications"] = execution
    if config:
        out["toolConfigurationNotifications"] = config
    return out


def _where(loc: Location) -> str:
    return loc.tensor or loc.param or loc.key or loc.file or "checkpoint"
