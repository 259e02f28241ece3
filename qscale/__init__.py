"""qscale: will this quantized checkpoint load correctly in vLLM or SGLang?

Public API: read_checkpoint, resolve_quantization, check, fix, the report model, and for loader
authors the load plan (plan_load, expand_shard_id, LoadPlan, MergedParam) and the simulated
processing after load (process).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from qscale._version import __version__

if TYPE_CHECKING:
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

#: public name -> the module it lives in; imported on first use (PEP 562), so that
#: `import qscale.cli` and `qscale --version` do not load numpy or the engine catalogue
_LAZY = {
    "Checkpoint": "qscale.checkpoint",
    "ModelConfig": "qscale.checkpoint",
    "LoadPlan": "qscale.engines.loader",
    "MergedParam": "qscale.engines.loader",
    "ShardSlot": "qscale.engines.loader",
    "expand_shard_id": "qscale.engines.loader",
    "plan_load": "qscale.engines.loader",
    "Processed": "qscale.engines.processing",
    "process": "qscale.engines.processing",
    "QscaleError": "qscale.errors",
    "Applicability": "qscale.findings",
    "Finding": "qscale.findings",
    "Fix": "qscale.findings",
    "Location": "qscale.findings",
    "Report": "qscale.findings",
    "Severity": "qscale.findings",
    "FixResult": "qscale.fix",
    "fix": "qscale.fix",
    "ModuleQuant": "qscale.formats",
    "QuantMap": "qscale.formats",
    "resolve_quantization": "qscale.formats",
    "CheckOptions": "qscale.runner",
    "check": "qscale.runner",
    "QuantArgs": "qscale.schemes",
    "QuantScheme": "qscale.schemes",
    "TensorSpec": "qscale.schemes",
    "read_checkpoint": "qscale.source",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qscale' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(ModuleType):
    """``qscale.fix`` is the function, as when every name was imported eagerly: the import
    system binds the subpackage ``qscale.fix`` on the package once it has loaded it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fix" and isinstance(value, ModuleType):
            value = value.fix
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
