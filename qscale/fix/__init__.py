"""`qscale fix`: rewrite a checkpoint so the engine loads it correctly, or reject it.

    from qscale.fix import fix
    result = fix("ckpt", "ckpt-fixed", engine="vllm==0.19.1")   # FixResult
    result.status, result.exit_code, result.records

Importing this package does not import torch; only the unsafe fixes do, when they run.
"""

from qscale.fix.api import fix
from qscale.fix.ignores import IgnoreMismatch, find_ignore_mismatches
from qscale.fix.model import Change, FixPlan, FixResult, Rejection, Status
from qscale.fix.planner import FIXERS, plan_fix

__all__ = [
    "FIXERS",
    "Change",
    "FixPlan",
    "FixResult",
    "IgnoreMismatch",
    "Rejection",
    "Status",
    "find_ignore_mismatches",
    "fix",
    "plan_fix",
]
