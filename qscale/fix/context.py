"""FixContext: what a fixer may look at; where the quantization config and its ignore list live."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from qscale.checkpoint import Checkpoint, ModelConfig
from qscale.engines import EngineSpec
from qscale.engines.loader import LoadPlan
from qscale.findings import Finding, Report
from qscale.fix.model import Change, ConfigEdit, Refusal
from qscale.formats import QuantConfigRef, QuantMap, quant_config_ref, resolve_quantization
from qscale.formats.compressed_tensors import CompressedTensorsConfig
from qscale.formats.fp8 import Fp8Config
from qscale.formats.modelopt import ModelOptConfig
from qscale.formats.quark import QuarkConfig
from qscale.layout import Deployment


@dataclass(frozen=True, slots=True)
class FixContext:
    """The checkpoint, its resolved quantization, the engine's load plan and the findings."""

    checkpoint: Checkpoint
    quant: QuantMap
    plan: LoadPlan | None
    report: Report
    engine: EngineSpec
    engine_arg: str | None = None  #: as the user gave it (None: the newest vLLM profile)
    #: the layout the checkpoint will be served with (what `check` was told): fixes answer
    #: the findings of that layout only
    deployment: Deployment = field(default_factory=Deployment)

    def findings(self, *codes: str) -> list[Finding]:
        """Findings whose code starts with one of ``codes``."""
        return [f for f in self.report.findings if f.code.startswith(codes)]

    def quant_config(self) -> QuantConfigRef | None:
        """The quantization config as stored (None for an unquantized checkpoint)."""
        return quant_config_ref(self.checkpoint)


def ignore_key(ctx: FixContext) -> str | None:
    """The config key of the list of modules left unquantized, in the format's spelling."""
    fmt, ref = ctx.quant.format, ctx.quant_config()
    if ref is None or fmt is None:
        return None
    if isinstance(fmt, CompressedTensorsConfig):
        return "ignore"
    if isinstance(fmt, QuarkConfig):
        return "exclude"
    if isinstance(fmt, Fp8Config):
        return "ignored_layers" if "ignored_layers" in ref.raw else "modules_to_not_convert"
    if isinstance(fmt, ModelOptConfig):
        return (
            "exclude_modules"
            if "exclude_modules" in ref.raw or "ignore" not in ref.raw
            else "ignore"
        )
    return None


Fixer = Callable[[FixContext], Iterable[Change | Refusal]]


def edited(ctx: FixContext, edits: list[ConfigEdit]) -> Checkpoint:
    """The checkpoint as it reads once ``edits`` are applied to its configs (tensors as
    stored): for checking a config change before anything is written."""
    from qscale.fix.apply import apply_edit

    ckpt = ctx.checkpoint
    raw = copy.deepcopy(dict(ckpt.config.raw))
    extra = {k: copy.deepcopy(dict(v)) for k, v in ckpt.extra_configs.items()}
    for e in edits:
        apply_edit(raw if e.file == "config.json" else extra[e.file], e)
    return dataclasses.replace(ckpt, config=ModelConfig(raw), extra_configs=extra)


def simulate(ctx: FixContext, edits: list[ConfigEdit]) -> Report:
    """The report the rules give once ``edits`` are applied to the configs (tensors
    unchanged): what a config-only change resolves, and what it breaks."""
    from qscale.runner import CheckOptions, run_rules

    new = edited(ctx, edits)
    return run_rules(
        new,
        resolve_quantization(new),
        CheckOptions(engine=ctx.engine_arg, deployment=ctx.deployment),
    )
