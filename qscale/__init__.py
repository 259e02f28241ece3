"""qscale: will this quantized checkpoint load correctly in vLLM or SGLang?

Public API: read_checkpoint, resolve_quantization, check, fix, the report model, and for loader
authors the load plan (plan_load, expand_shard_id, LoadPlan, MergedParam) and the simulated
processing after load (process).
"""

from __future__ import annotations

from qscale._version import __version__
from qscale.checkpoint import Checkpoint, ModelConfig
from qscale.engines.loader import LoadPlan, MergedParam, ShardSlot, expand_shard_id, plan_load
from qscale.engines.processing import Processed, process
from qscale.errors import QscaleError
from qscale.findings import Applicability, Finding, Fix, Location, Report, Severity
from qscale.fix import FixResult, fix
from qscale.formats import ModuleQuant, QuantMap, resolve_quantization
from qscale.runner import CheckOptions, check
from qscale.schemes import QuantArgs, QuantScheme, TensorSpec
from qscale.source import read_checkpoint

__all__ = [
    "Applicability",
    "CheckOptions",
    "Checkpoint",
    "Finding",
    "Fix",
    "FixResult",
    "LoadPlan",
    "Location",
    "MergedParam",
    "ModelConfig",
    "ModuleQuant",
    "Processed",
    "QscaleError",
    "QuantArgs",
    "QuantMap",
    "QuantScheme",
    "Report",
    "Severity",
    "ShardSlot",
    "TensorSpec",
    "__version__",
    "check",
    "expand_shard_id",
    "fix",
    "plan_load",
    "process",
    "read_checkpoint",
    "resolve_quantization",
]
