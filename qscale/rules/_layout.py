"""The shared check of the QS50x layout rules: the layout's problems are computed once per
check and each rule reports the ones with its code."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from qscale.constraints import Problem, layout_problems, location
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule


def problems(ctx: Context) -> list[Problem]:
    """The deployment's layout problems for this context (computed once per check)."""
    return ctx.shared(_problems)


def _problems(ctx: Context) -> list[Problem]:
    assert ctx.plan is not None
    return layout_problems(ctx.checkpoint, ctx.quant, ctx.plan, ctx.deployment)


def check_for(code: str) -> Callable[[Context], Iterator[Finding]]:
    """The check of the layout rule ``code``."""

    def check(ctx: Context) -> Iterator[Finding]:
        assert ctx.plan is not None
        rule = _rule(code)
        for p in problems(ctx):
            if p.code == code:
                yield rule.finding(
                    f"{ctx.plan.engine.label}: {p.message}",
                    location(p, ctx.checkpoint),
                    fix=Fix(p.fix, Applicability.MANUAL),
                    severity=p.severity,
                )

    return check


def _rule(code: str) -> Rule:
    from qscale.rules import BY_CODE  # the registry imports the rule modules

    return BY_CODE[code]
