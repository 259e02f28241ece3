"""The shared experts of a planned checkpoint, read once per check for QS601 and QS801."""

from __future__ import annotations

from qscale.rules._api import Context
from qscale.shared_experts import SharedExperts, read_shared_experts


def shared_experts(ctx: Context) -> SharedExperts | None:
    """``read_shared_experts`` of the plan's family, computed when a rule first asks."""
    return ctx.shared(_read)


def _read(ctx: Context) -> SharedExperts | None:
    assert ctx.plan is not None
    return read_shared_experts(ctx.quant, ctx.plan.family)
