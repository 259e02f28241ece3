"""FixResult as JSON (also the manifest's body) or as console text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from qscale._version import __version__
from qscale.findings import Finding, group_findings
from qscale.fix.model import (
    Change,
    ConfigEdit,
    DropTensor,
    Edit,
    FixPlan,
    FixResult,
    RenameTensor,
    WriteTensor,
)
from qscale.report.json_report import group_dict

#: 2: findings are grouped by cause, as in `qscale check`'s JSON (schema 3): one entry per
#: cause with ``count`` and ``examples``
SCHEMA_VERSION = 2


def _grouped(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [group_dict(g) for g in group_findings(findings)]


def _rejected(plan: FixPlan) -> list[dict[str, Any]]:
    """The findings no fix resolves, one entry per cause and reason."""
    by_reason: dict[tuple[str, bool], list[Finding]] = {}
    for r in plan.rejected:
        by_reason.setdefault((r.reason, r.blocking), []).append(r.finding)
    return [
        {"finding": group, "reason": reason, "blocking": blocking}
        for (reason, blocking), findings in by_reason.items()
        for group in _grouped(findings)
    ]


def _shape(shape: Any) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def edit_dict(e: Edit, stored: Mapping[str, Any]) -> dict[str, Any]:
    """One planned edit, with the stored tensor's dtype and shape where it has one."""
    match e:
        case WriteTensor():
            old = stored.get(e.name)
            return {
                "edit": "write",
                "tensor": e.name,
                "file": e.file,
                "before": {"dtype": old.dtype, "shape": list(old.shape)} if old else None,
                "after": {"dtype": e.dtype, "shape": list(e.shape)},
                "bytes": e.nbytes,
            }
        case RenameTensor():
            return {"edit": "rename", "tensor": e.old, "to": e.new, "file": e.file}
        case DropTensor():
            return {"edit": "drop", "tensor": e.name, "file": e.file}
        case ConfigEdit():
            return {
                "edit": "config",
                "file": e.file,
                "pointer": e.pointer,
                "action": e.action.value,
                "value": e.value,
            }
    raise AssertionError(e)


def change_dict(c: Change, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A change as JSON-ready data."""
    return {
        "title": c.title,
        "fixer": c.fixer,
        "applicability": c.applicability.value,
        "codes": list(c.codes),
        "findings": _grouped(c.resolves),
        "detail": c.detail,
        "edits": [edit_dict(e, stored) for e in c.edits],
    }


def plan_dict(plan: FixPlan) -> dict[str, Any]:
    """The plan part shared by the JSON output and the manifest."""
    stored = plan.checkpoint.tensors if plan.checkpoint else {}
    rewritten = [a for a in plan.files if a.action == "rewrite"]
    return {
        "schema_version": SCHEMA_VERSION,
        "qscale_version": __version__,
        "source": plan.source,
        "engine": plan.engine,
        "changes": [change_dict(c, stored) for c in plan.applied],
        "available_unsafe": [change_dict(c, stored) for c in plan.available],
        "rejected": _rejected(plan),
        "files": [
            {
                "file": a.file,
                "action": a.action,
                "bytes": a.bytes,
                "source_bytes": a.source_bytes,
                "tensors": list(a.tensors),
            }
            for a in plan.files
        ],
        "bytes": {
            "rewritten_source": sum(a.source_bytes for a in rewritten),
            "rewritten_output": sum(a.bytes for a in rewritten),
            "linked": sum(a.bytes for a in plan.files if a.action == "link"),
            "new_tensor_data": sum(
                e.nbytes for c in plan.applied for e in c.edits if isinstance(e, WriteTensor)
            ),
        },
    }


def result_dict(result: FixResult) -> dict[str, Any]:
    """The whole result as JSON-ready data."""
    out = {
        **plan_dict(result.plan),
        "status": result.status.value,
        "exit_code": result.exit_code,
        "out": result.out,
        "tensors": list(result.records),
        "config": list(result.config_edits),
    }
    if result.recheck is not None:
        out["recheck"] = {
            "findings": _grouped(result.recheck.findings),
            "still_there": _grouped(result.still_there),
            "introduced": _grouped(result.introduced),
        }
    return out


def render_json(result: FixResult) -> str:
    """Pretty-printed JSON with a trailing newline."""
    return json.dumps(result_dict(result), indent=2) + "\n"


def _edit_line(d: Mapping[str, Any]) -> str:
    if d["edit"] == "write":
        b = d["before"]
        was = f"{b['dtype']} {_shape(b['shape'])}" if b else "new"
        a = d["after"]
        return f"write  {d['tensor']}  {was} -> {a['dtype']} {_shape(a['shape'])}  [{d['file']}]"
    if d["edit"] == "rename":
        return f"rename {d['tensor']} -> {d['to']}  [{d['file']}]"
    if d["edit"] == "drop":
        return f"drop   {d['tensor']}  [{d['file']}]"
    value = json.dumps(d["value"])
    value = value if len(value) <= 80 else value[:77] + "..."
    return f"config {d['file']} {d['pointer']} {d['action']} {value}"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.3f} MB" if n >= 10**5 else f"{n:,} B"


def render_console(result: FixResult) -> str:
    """Plan, rejections, files and bytes, and the outcome."""
    d = result_dict(result)
    errors = {r["tensor"]: r["error"] for r in result.records if r.get("error")}
    lines = [f"qscale fix {d['source']} for {d['engine']}"]
    for head, items in (("apply", d["changes"]), ("available", d["available_unsafe"])):
        for c in items:
            codes = ", ".join(c["codes"]) or "no finding"
            tag = c["applicability"] + (", needs --unsafe-fixes" if head == "available" else "")
            lines.append(f"  {head} ({tag}) [{codes}] {c['title']}")
            if c["detail"]:
                lines.append(f"      {c['detail']}")
            for e in c["edits"]:
                lines.append(f"      {_edit_line(e)}")
                if e.get("tensor") in errors and e["edit"] == "write":
                    err = errors[e["tensor"]]
                    lines.append(
                        "          error: " + ", ".join(f"{k} {v:.4g}" for k, v in err.items())
                    )
    for r in d["rejected"]:
        f = r["finding"]
        loc = f["location"]
        where = (
            loc.get("tensor")
            or loc.get("param")
            or " ".join(filter(None, (loc.get("file"), loc.get("key"))))
        )
        mark = "reject" if r["blocking"] else "leave "
        lines.append(f"  {mark} {f['code']} {f['severity']} {where}: {r['reason']}")
    b = d["bytes"]
    counts = {a: sum(f["action"] == a for f in d["files"]) for a in ("rewrite", "link", "write")}
    lines.append(
        f"files: {counts['rewrite']} rewritten ({_mb(b['rewritten_source'])} ->"
        f" {_mb(b['rewritten_output'])}), {counts['link']} linked ({_mb(b['linked'])}),"
        f" {counts['write']} config/index written; new tensor data {_mb(b['new_tensor_data'])}"
    )
    lines.append(_outcome(result))
    return "\n".join(lines) + "\n"


def _outcome(result: FixResult) -> str:
    s = result.status.value
    if s == "dry-run":
        return "dry run: nothing written" + (
            " (the checkpoint cannot be fixed: see `reject` above)" if result.plan.blocked else ""
        )
    if s == "rejected":
        n = len(result.plan.available)
        more = f"; {n} unsafe fix(es) available with --unsafe-fixes" if n else ""
        return f"rejected: nothing written (see `reject` above{more})"
    if s == "recheck-failed":
        names = ", ".join(f.code for f in (*result.still_there, *result.introduced))
        return f"re-check failed ({names}): the output was removed"
    n = len(result.recheck.findings) if result.recheck else 0
    return f"{s}: wrote {result.out}; re-check: {n} finding(s) remain"
