"""SARIF 2.1.0 output, for GitHub code scanning and other SARIF viewers.

Every rule of the registry is listed in ``tool.driver.rules``; each finding becomes a result
with its rule, level, message, the checkpoint file (relative to the checkpoint folder, under
the ``CHECKPOINT`` base id), the tensor / engine param / config key as logical locations, and
qscale's stable fingerprint under ``partialFingerprints``. A partial check (a rule skipped or
crashed) has ``executionSuccessful: false`` and one error notification per rule that did not
run, under ``invocations[0].toolExecutionNotifications``.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from qscale import __version__, rules
from qscale.baseline import FINGERPRINT_KEY, fingerprint
from qscale.findings import Finding, Location, Report, Severity
from qscale.rules._api import Rule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
# No project URL is published yet; the package index page is where `pip install qscale` points.
INFORMATION_URI = "https://pypi.org/project/qscale/"
CHECKPOINT_BASE = "CHECKPOINT"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def checkpoint_folder(source: str) -> str:
    """The checkpoint folder as the user named it: ``source``, or its folder for a single
    ``.safetensors`` file. Finding files are relative to it."""
    if source.endswith(".safetensors"):
        return str(PurePath(source).parent)
    return source


def render(report: Report) -> str:
    """The report as a SARIF 2.1.0 log (pretty-printed JSON with a trailing newline)."""
    return json.dumps(sarif_log(report), indent=2) + "\n"


def sarif_log(report: Report) -> dict[str, Any]:
    """The report as SARIF-shaped data: one run, every rule, one result per finding."""
    index = {r.code: i for i, r in enumerate(rules.ALL_RULES)}
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "qscale",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(r) for r in rules.ALL_RULES],
            }
        },
        "originalUriBaseIds": {CHECKPOINT_BASE: _base(report.source)},
        "invocations": [_invocation(report, index)],
        "results": [_result(f, index) for f in report.findings],
        "properties": {
            "source": report.source,
            "engine": report.engine,
            "complete": report.complete,
            "summary": dict(report.summary),
        },
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


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": f.code}
    if f.code in index:
        out["ruleIndex"] = index[f.code]
    out["level"] = _LEVEL[f.severity]
    out["message"] = {"text": f.message}
    out["locations"] = [_location(f.location)]
    out["partialFingerprints"] = {FINGERPRINT_KEY: fingerprint(f)}
    props: dict[str, Any] = {"severity": f.severity.label, **f.location.as_dict()}
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
