"""The scale tensors FP-Quant (``quant_method: fp_quant``) checkpoints add to the usual scale
names, for the deep scan (:mod:`qscale.scale_scan`), which runs before any format is parsed.
Imports nothing of qscale, so that the checkpoint reader can use it.

Per quantized Linear (fp_quant 0.3.2 ``module/linear.py`` ``FPQuantLinear``, vLLM 0.33.0
``quantization/fp_quant.py`` ``FPQuantLinearMethod.create_weights``): ``act_global_scale``
(a divisor, like ``weight_global_scale``, which is a scale name already), and, for MXFP4,
``scales``, the E8M0 group scales stored as U8 (``0xFF`` is NaN). NVFP4's ``scales`` hold
E4M3 bytes in U8, which the scan's U8 encoding (E8M0) would misread, so they are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METHOD = "fp_quant"


def scale_params(config: Mapping[str, Any]) -> frozenset[str]:
    """Leaf names, besides the usual scale names, that hold scales in a checkpoint of this
    ``config.json``."""
    qc = config.get("quantization_config")
    if not isinstance(qc, Mapping) or qc.get("quant_method") != METHOD:
        return frozenset()
    if qc.get("forward_dtype") == "mxfp4":
        return frozenset({"act_global_scale", "scales"})
    return frozenset({"act_global_scale"})
