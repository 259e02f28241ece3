"""check_loaded(): fail closed when a loaded model holds scale values its kernels cannot use.

This is the loader side of qscale (it imports torch; ``import qscale`` does not import this
module). Run it on the engine's model **right after the weight loader has copied the checkpoint
in and before the engine post-processes the weights** — in vLLM, after
``DefaultModelLoader.load_weights`` and before ``process_weights_after_loading``. Only then is
every per-partition scale slot still visible: processing collapses them (FP8
``requantize_with_max_scale`` keeps one max scale per fused layer, NVFP4 keeps ``1/max`` of the
global scales), after which an unwritten slot can no longer be seen, only its damage. The vLLM
plugin (:mod:`qscale.integrations.vllm`) hooks exactly that point.

Scale parameters are recognised by their leaf name (:data:`SCALE_LEAVES`, with the fused-MoE
``w13_``/``w2_``/``w1_``/``w3_`` prefixes). KV-cache scales (``k_scale``, ``v_scale``,
``q_scale``, ``prob_scale``) are not inspected: vLLM fills them with -1.0 on purpose to mean
"not in the checkpoint, use the default".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum

import torch

from qscale.engines.loader import LoadPlan, MergedParam
from qscale.engines.profiles import FP8_SENTINEL
from qscale.errors import QscaleError

__all__ = ["SCALE_LEAVES", "GuardIssue", "GuardReport", "LoadGuardError", "Problem", "check_loaded"]

#: Leaf names of the parameters the guard inspects (a fused-MoE prefix may precede them).
SCALE_LEAVES = (
    "weight_scale",
    "weight_scale_inv",
    "weight_scale_2",
    "input_scale",
    "input_scale_2",
    "weight_global_scale",
    "input_global_scale",
)
_SCALE_LEAF = re.compile(rf"^(?:w13_|w2_|w1_|w3_)?(?:{'|'.join(SCALE_LEAVES)})$")
#: Scale tensors larger than this are not inspected (block and group scales of big layers);
#: per-tensor scales, even [experts, 2] ones, stay far below it.
DEFAULT_MAX_NUMEL = 1 << 16
_SHOWN_SLOTS = 8  #: slot indices named per parameter in a message
_SHOWN_PARAMS = 12  #: parameters named in the error message


class Problem(str, Enum):
    """What is wrong with a scale parameter (ordered as reported)."""

    SENTINEL = "sentinel"  #: still the engine's float32-min placeholder: never written
    NAN = "nan"  #: NaN: a placeholder (vLLM's pre-filled NaN or torch.empty) never written
    NON_FINITE = "non-finite"  #: +-inf
    NON_POSITIVE = "non-positive"  #: <= 0 (< 0 for 8-bit block scales, where 0 is a zero block)
    MISSING = "missing"  #: a parameter of the plan that the loaded model lacks
    SLOT_COUNT = "slot-count"  #: the loaded parameter does not have the plan's number of slots
    UNWRITTEN = "unwritten"  #: the plan predicts the loader never writes this slot
    PLAN_MISMATCH = "plan-mismatch"  #: the loaded slot differs from the plan's value


@dataclass(frozen=True, slots=True)
class GuardIssue:
    """One problem of one parameter, with the slots (flat indices) it concerns."""

    param: str
    problem: Problem
    shape: tuple[int, ...] = ()
    slots: tuple[int, ...] = ()
    values: tuple[float, ...] = ()  #: loaded values at ``slots``
    expected: tuple[float | None, ...] = ()  #: the plan's values at ``slots``

    def describe(self) -> str:
        """One clause for the error message."""
        where = f"`{self.param}` {self._slots()}"
        got = _join(self.values)
        match self.problem:
            case Problem.SENTINEL:
                return f"{where} = {got} (the float32-min placeholder: never written)"
            case Problem.NAN:
                return f"{where} = nan (a placeholder: never written)"
            case Problem.NON_FINITE:
                return f"{where} = {got} (not finite)"
            case Problem.NON_POSITIVE:
                return f"{where} = {got} (not positive)"
            case Problem.MISSING:
                return f"`{self.param}` is in the plan but not in the loaded model"
            case Problem.SLOT_COUNT:
                n, m = math.prod(self.shape), len(self.expected)
                return f"`{self.param}` has {n} values where the plan predicts {m} slots"
            case Problem.UNWRITTEN:
                return f"{where} = {got}, which the plan says the loader never writes"
            case Problem.PLAN_MISMATCH:
                return f"{where} = {got}, the plan predicts {_join(self.expected)}"

    def _slots(self) -> str:
        shown = [_index(i, self.shape) for i in self.slots[:_SHOWN_SLOTS]]
        extra = len(self.slots) - _SHOWN_SLOTS
        more = f" (+{extra} more)" if extra > 0 else ""
        return f"slot{'s' if len(self.slots) > 1 else ''} {', '.join(shown)}{more}"


@dataclass(frozen=True, slots=True)
class GuardReport:
    """What :func:`check_loaded` found."""

    issues: tuple[GuardIssue, ...]
    checked: tuple[str, ...]  #: scale parameters whose values were inspected
    skipped: tuple[str, ...]  #: scale parameters too large to inspect (block/group scales)
    compared: tuple[str, ...]  #: parameters compared slot by slot with the plan

    @property
    def ok(self) -> bool:
        """No issue found."""
        return not self.issues

    def message(self) -> str:
        """The issues as one paragraph."""
        params = sorted({i.param for i in self.issues})
        shown = [i.describe() for i in self.issues if i.param in params[:_SHOWN_PARAMS]]
        more = len(params) - _SHOWN_PARAMS
        tail = f"; and {more} more parameters" if more > 0 else ""
        return (
            f"{len(params)} scale parameter{'s' if len(params) > 1 else ''} of the loaded model"
            f" hold values the kernels cannot use: {'; '.join(shown)}{tail}"
        )


class LoadGuardError(QscaleError, RuntimeError):
    """A loaded model holds scale values its kernels cannot use."""

    default_hint = (
        "do not serve this model; run `qscale check CHECKPOINT --engine vllm==VERSION` to see"
        " which checkpoint tensors feed these scales and which engine versions load them"
    )

    def __init__(
        self, message: str, *, hint: str | None = None, report: GuardReport | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.report = report  #: everything the guard found


def check_loaded(
    params: torch.nn.Module | Mapping[str, torch.Tensor],
    plan: LoadPlan | None = None,
    *,
    raise_on_error: bool = True,
    max_numel: int = DEFAULT_MAX_NUMEL,
) -> GuardReport:
    """Check the scale parameters of a freshly loaded model, before weight post-processing.

    Args:
        params: the engine's model (parameters and buffers) or a name -> tensor mapping, in the
            engine's own parameter names.
        plan: ``qscale.engines.loader.plan_load(checkpoint, "vllm==X")`` for the running engine;
            when given, every per-tensor scale slot must equal the plan's value (exactly, after
            rounding the plan's value to the parameter's dtype) and every planned parameter
            must exist.
        raise_on_error: raise instead of returning a report with issues.
        max_numel: scale parameters with more elements are skipped (never copied).

    Raises:
        LoadGuardError: on any issue, unless ``raise_on_error`` is False.
    """
    tensors = _named_tensors(params)
    issues: list[GuardIssue] = []
    checked: list[str] = []
    skipped: list[str] = []
    seen: set[int] = set()  # a parameter registered under two names is inspected once
    for name, t in tensors.items():
        if not _SCALE_LEAF.match(name.rsplit(".", 1)[-1]) or id(t) in seen:
            continue
        seen.add(id(t))
        if t.numel() > max_numel:
            skipped.append(name)
            continue
        checked.append(name)
        issues.extend(_value_issues(name, t))
    compared: list[str] = []
    if plan is not None:
        flagged = {(i.param, s) for i in issues for s in i.slots}
        for mp in plan.params.values():
            issues.extend(_plan_issues(mp, tensors.get(mp.name), flagged, compared))
    order = list(Problem)
    issues.sort(key=lambda i: (i.param, order.index(i.problem)))
    report = GuardReport(tuple(issues), tuple(checked), tuple(skipped), tuple(compared))
    if issues and raise_on_error:
        raise LoadGuardError(report.message(), report=report)
    return report


def _named_tensors(params: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(params, torch.nn.Module):
        # remove_duplicate=False: a shared parameter is listed under every name the plan may use
        out: dict[str, torch.Tensor] = dict(params.named_parameters(remove_duplicate=False))
        out.update(params.named_buffers(remove_duplicate=False))
        return out
    return dict(params)


def _values(t: torch.Tensor) -> list[float]:
    """The elements of a small scale tensor as Python floats (a host copy of it only)."""
    flat = t.detach().reshape(-1)
    if t.dtype == torch.uint8:  # vLLM's MX scales: E8M0 exponents, 0xFF is NaN
        return [math.nan if b == 255 else 2.0 ** (b - 127) for b in flat.cpu().tolist()]
    if not t.is_floating_point():
        return []
    return [float(v) for v in flat.float().cpu().tolist()]


def _value_issues(name: str, t: torch.Tensor) -> Iterator[GuardIssue]:
    values = _values(t)
    # An 8-bit float block scale of 0 encodes an all-zero block; wider scales must be > 0.
    zero_ok = t.dtype.is_floating_point and t.element_size() == 1
    found: dict[Problem, list[int]] = {}
    for i, v in enumerate(values):
        if math.isnan(v):
            found.setdefault(Problem.NAN, []).append(i)
        elif v == FP8_SENTINEL:
            found.setdefault(Problem.SENTINEL, []).append(i)
        elif math.isinf(v):
            found.setdefault(Problem.NON_FINITE, []).append(i)
        elif v < 0 or (v == 0 and not zero_ok):
            found.setdefault(Problem.NON_POSITIVE, []).append(i)
    shape = tuple(t.shape)
    for problem, idx in found.items():
        yield GuardIssue(name, problem, shape, tuple(idx), tuple(values[i] for i in idx))


def _plan_issues(
    mp: MergedParam, t: torch.Tensor | None, flagged: set[tuple[str, int]], compared: list[str]
) -> Iterator[GuardIssue]:
    if t is None:
        yield GuardIssue(mp.name, Problem.MISSING)
        return
    if mp.slots is None or mp.errors:  # not a per-tensor scale, or a load the engine refuses
        return
    compared.append(mp.name)
    shape = tuple(t.shape)
    if t.numel() != len(mp.slots):
        yield GuardIssue(mp.name, Problem.SLOT_COUNT, shape, expected=mp.slots)
        return
    loaded = _values(t)
    unwritten: list[int] = []
    wrong: list[int] = []
    for i, (want, got) in enumerate(zip(mp.slots, loaded, strict=True)):
        if (mp.name, i) in flagged:
            continue
        if want is None:
            unwritten.append(i)
        elif got != _in_dtype(want, t.dtype):  # NaN differs from everything
            wrong.append(i)
    if unwritten:
        yield GuardIssue(
            mp.name, Problem.UNWRITTEN, shape, tuple(unwritten), tuple(loaded[i] for i in unwritten)
        )
    if wrong:
        yield GuardIssue(
            mp.name,
            Problem.PLAN_MISMATCH,
            shape,
            tuple(wrong),
            tuple(loaded[i] for i in wrong),
            tuple(mp.slots[i] for i in wrong),
        )


def _in_dtype(value: float, dtype: torch.dtype) -> float:
    """The plan's value as the engine stores it: the checkpoint value (exact in a float) copied
    into a parameter of ``dtype`` rounds once, exactly like this."""
    if dtype == torch.uint8 or not dtype.is_floating_point:
        return value
    return float(torch.tensor(value, dtype=torch.float64).to(dtype).float())


def _index(i: int, shape: tuple[int, ...]) -> str:
    if len(shape) < 2:
        return str(i)
    idx = []
    for dim in reversed(shape):
        idx.append(i % dim)
        i //= dim
    return "(" + ", ".join(map(str, reversed(idx))) + ")"


def _join(values: tuple[float | None, ...]) -> str:
    shown = ["unwritten" if v is None else f"{v:.9g}" for v in values[:_SHOWN_SLOTS]]
    text = ", ".join(shown)
    if len(values) > _SHOWN_SLOTS:
        return f"[{text}, ...]"
    return text if len(shown) == 1 else f"[{text}]"
