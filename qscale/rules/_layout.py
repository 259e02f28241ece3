"""The shared check of the QS50x layout rules: the layout's problems are computed once per
check and each rule reports the ones with its code."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from qscale.constraints import Problem, layout_problems, location
from qscale.rules._api import Applicability, Context, Finding, Fix, Rule

#: the last context's problems; holding the context keeps identity comparison sound
_last: tuple[Context, list[Problem]] | None = None


def problems(ctx: Context) -> list[Problem]:
    """The deployment's layout problems for this context (cached for the last context)."""
    global _last
    assert ctx.plan is not None
    if _last is None or _last[0] is not ctx:
        _last = (ctx, layout_problems(ctx.checkpoint, ctx.quant, ctx.plan, ctx.deployment))
    return _last[1]


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
