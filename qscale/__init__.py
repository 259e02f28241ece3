"""qscale: will this quantized checkpoint load correctly in vLLM or SGLang?

Public API: read_checkpoint, resolve_quantization, check, and the report model.
"""

from __future__ import annotations

__version__ = "0.1.0"

from qscale.checkpoint import Checkpoint, ModelConfig, read_checkpoint
from qscale.errors import QscaleError
from qscale.findings import Applicability, Finding, Fix, Location, Report, Severity
from qscale.formats import ModuleQuant, QuantMap, resolve_quantization
from qscale.runner import CheckOptions, check
from qscale.schemes import QuantArgs, QuantScheme, TensorSpec

__all__ = [
    "Applicability",
    "CheckOptions",
    "Checkpoint",
    "Finding",
    "Fix",
    "Location",
    "ModelConfig",
    "ModuleQuant",
    "QscaleError",
    "QuantArgs",
    "QuantMap",
    "QuantScheme",
    "Report",
    "Severity",
    "TensorSpec",
    "__version__",
    "check",
    "read_checkpoint",
    "resolve_quantization",
]
