"""``quant_method: moe_wna16`` in a checkpoint: refused by the engines (a serve-time method).

vLLM 0.33.0 ``moe_wna16.py``: ``MoeWNA16Config.from_config`` reads ``quant_method`` again and
raises "moe_wna16 only support gptq and awq." for anything else, so a checkpoint whose
``quant_method`` is ``moe_wna16`` is refused (SGLang 0.5.12 ``moe_wna16.py`` likewise); the
method is chosen at serve time (``--quantization moe_wna16``) for a GPTQ or AWQ checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from qscale.errors import ConfigError

METHOD = "moe_wna16"


def parse_moe_wna16(qc: Mapping[str, Any], *, config_key: str = "config.json") -> NoReturn:
    """``quant_method: moe_wna16`` in a checkpoint: the engines' refusal."""
    raise ConfigError(
        f"{config_key}: quant_method 'moe_wna16' is refused by vLLM and SGLang (\"moe_wna16 only"
        " support gptq and awq.\": its config reads the checkpoint's own quant_method)",
        hint="store quant_method gptq or awq; pick moe_wna16 at serve time"
        " (`--quantization moe_wna16`)",
    )
