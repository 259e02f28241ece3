"""fix(src, out, ...): plan, write into a temporary folder, re-check, then rename to DST."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qscale._version import __version__
from qscale.checkpoint import Checkpoint, read_local_checkpoint
from qscale.errors import CheckpointNotFound, ShardIndexError, UsageError
from qscale.findings import Finding, Report, Severity
from qscale.fix.index import read_ignoring_index
from qscale.fix.model import FixPlan, FixResult, Status, finding_key
from qscale.fix.planner import plan_fix
from qscale.fix.render import plan_dict
from qscale.fix.writer import check_destination, commit, discard, finish, write_output
from qscale.layout import Deployment
from qscale.runner import CheckOptions, check


def compare(plan: FixPlan, after: Report) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """Findings the applied changes claimed to resolve that ``after`` still has, and errors in
    ``after`` that the checkpoint did not have before."""
    now = {finding_key(f): f for f in after.findings}
    claimed = {finding_key(f) for c in plan.applied for f in c.resolves}
    before = {finding_key(f) for f in plan.report.findings}
    still = tuple(now[k] for k in sorted(claimed & now.keys()))
    introduced = tuple(
        f for k, f in sorted(now.items()) if k not in before and f.severity >= Severity.ERROR
    )
    return still, introduced


def fix(  # noqa: PLR0913 (the options of `qscale fix`, keyword-only)
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    engine: str | None = None,
    unsafe: bool = False,
    dry_run: bool = False,
    force: bool = False,
    deployment: Deployment | None = None,
) -> FixResult:
    """Fix the checkpoint folder ``src`` for ``engine`` into the new folder ``out``.

    Safe fixes are applied; unsafe ones only with ``unsafe``. A finding at error severity that
    no applied fix resolves rejects the checkpoint (nothing is written). The output is written
    into ``OUT.qscale-tmp-*``, re-checked for the same engine, and renamed to ``out`` only when
    every finding a fix claimed is gone and no new error appeared. ``dry_run`` plans only.
    ``force`` replaces an existing ``out`` that an earlier `qscale fix` wrote. ``deployment``
    is the layout the checkpoint will be served with (default: one GPU, CUDA), as for
    `qscale check`: the plan and the re-check use its findings, so a fix is applied only
    where that check asks for one.

    Raises:
        QscaleError: unreadable input, a bad ``out``, a rule crash (exit code 2).
    """
    root = Path(src)
    if not root.is_dir():
        raise CheckpointNotFound(
            f"{src}: not a checkpoint folder", hint="`qscale fix` takes the checkpoint's folder"
        )
    if out is None and not dry_run:
        raise UsageError("--out is required", hint="e.g. --out ./model-fixed, or use --dry-run")
    dst = Path(out) if out is not None else None
    if dst is not None and not dry_run:
        check_destination(root, dst, force=force)
    stale = None
    try:
        ckpt = read_local_checkpoint(root)
    except ShardIndexError as exc:
        lenient = read_ignoring_index(root, exc)
        if lenient is None:
            raise
        ckpt, stale = lenient
    deployment = deployment or Deployment()
    plan = plan_fix(ckpt, engine=engine, unsafe=unsafe, stale_index=stale, deployment=deployment)
    if dry_run:
        return FixResult(plan, Status.DRY_RUN)
    if plan.blocked:
        return FixResult(plan, Status.REJECTED)
    assert dst is not None
    recheck = CheckOptions(engine=engine, deployment=deployment)
    return _write(ckpt, plan, dst, recheck=recheck, unsafe=unsafe, force=force)


def _write(
    ckpt: Checkpoint,
    plan: FixPlan,
    dst: Path,
    *,
    recheck: CheckOptions,
    unsafe: bool,
    force: bool,
) -> FixResult:
    written = write_output(ckpt, plan.applied, dst, rebuild_index=plan.rebuild_index)
    try:
        after = check(read_local_checkpoint(written.tmp), recheck)
        still, introduced = compare(plan, after)
    except BaseException:
        discard(written)
        raise
    records, configs = tuple(written.records), tuple(written.config_edits)
    if still or introduced:
        discard(written)
        return FixResult(
            plan, Status.RECHECK_FAILED, None, records, configs, after, still, introduced
        )
    status = Status.FIXED if plan.applied else Status.CLEAN
    manifest: dict[str, Any] = {
        **plan_dict(plan),
        "qscale_version": __version__,
        "source": str(ckpt.root.resolve() if ckpt.root else ckpt.source),
        "unsafe_fixes": unsafe,
        "status": status.value,
        "recheck": {"engine": after.engine, "findings": len(after.findings)},
    }
    finish(written, manifest)
    commit(written, dst, force=force)
    return FixResult(plan, status, str(dst), records, configs, after)
