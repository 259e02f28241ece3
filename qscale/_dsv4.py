"""Which checkpoints are in DeepSeek-V4's own ``deepseek_v4_fp8`` format, and the scale name
that format adds: needed by the format (:mod:`qscale.formats.deepseek_v4_fp8`) and by the
deep scan (:mod:`qscale.scale_scan`), which runs before any format is parsed. Imports nothing
of qscale, so that the checkpoint reader can use it.

vLLM 0.33.0: ``DeepseekV4FP8Config.override_quantization_method`` claims ``fp8`` and
``deepseek_v4_fp8`` configs of ``model_type: deepseek_v4`` (``deepseek_v4/quant_config.py``),
and, in the class CUDA and ROCm build from 0.30.0 (``deepseek_v41/quant_config.py``), of
``deepseek_v4_text``, ``deepseek_v41`` and ``deepseek_v41_text`` too. The model's mapper
(``_make_deepseek_v4_weights_mapper``, ``nvidia/model.py``) renames every tensor whose name
ends in ``.scale`` to ``weight_scale_inv`` or ``weight_scale``.

The names claimed are the engine catalogue's ``deepseek_v4.claims`` of the newest release
(read from the wheels; tests/test_catalogue_torchao_dsv4.py holds these constants to it):
constants here because this module imports nothing of qscale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

METHOD = "deepseek_v4_fp8"
#: ``quant_method`` values vLLM hands to ``DeepseekV4FP8Config`` for these model types
METHODS = frozenset({"fp8", METHOD})
#: the model type that override applies to, and the one model whose names are modelled
MODEL_TYPE = "deepseek_v4"
#: the model types the 0.30.0+ CUDA/ROCm config class also claims; only DeepSeek-V4's names
#: are modelled, so the format answers these with QS102
OTHER_MODEL_TYPES = frozenset({"deepseek_v4_text", "deepseek_v41", "deepseek_v41_text"})
#: the leaf name the mapper renames to a weight scale (a trailing ``.scale``)
SCALE_PARAM = "scale"


def applies(method: str, model_type: str | None) -> bool:
    """Whether vLLM loads a config of ``method`` for ``model_type`` as ``deepseek_v4_fp8``."""
    return method == METHOD or (method in METHODS and (
        model_type == MODEL_TYPE or model_type in OTHER_MODEL_TYPES))


def scale_params(config: Mapping[str, Any]) -> frozenset[str]:
    """Leaf names, besides the usual scale names, that hold scales in a checkpoint of this
    ``config.json``: ``scale`` where the quantization config is ``deepseek_v4_fp8``."""
    qc = config.get("quantization_config")
    if not isinstance(qc, Mapping):
        return frozenset()
    method = qc.get("quant_method")
    model_type = config.get("model_type")
    if isinstance(method, str) and applies(
            method, model_type if isinstance(model_type, str) else None):
        return frozenset({SCALE_PARAM})
    return frozenset()
