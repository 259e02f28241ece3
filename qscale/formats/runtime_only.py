"""One of vLLM 0.33's online quantization names in a checkpoint: refused by the engine (a
runtime method, not a checkpoint format).

The names: ``online``, ``fp8_per_tensor``, ``fp8_per_block``, ``fp8_per_channel``,
``int8_per_channel_weight_only``, ``nvfp4_per_token``.

vLLM 0.33.0 maps each of them to ``OnlineQuantizationConfig`` (``quantization/__init__.py``
registers the ``_ONLINE_SHORTHANDS`` of ``vllm/config/quantization.py`` with ``setdefault``),
which quantizes the BF16 / F16 weights of an unquantized checkpoint while they load; its
``from_config`` (``online/base.py``) raises ``NotImplementedError`` for any checkpoint config,
so a ``config.json`` naming one of them stops vLLM at start-up. They are chosen at serve time
instead (``--quantization fp8_per_block``, or ``--quantization online`` with
``--quantization-config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from qscale.errors import ConfigError
from qscale.formats.registry import RUNTIME_ONLY, RUNTIME_REASON

METHODS = RUNTIME_ONLY


def parse_runtime_only(qc: Mapping[str, Any], *, config_key: str = "config.json") -> NoReturn:
    """A checkpoint config naming an online method: the engine's refusal."""
    method = str(qc.get("quant_method")).lower()
    serve = "online --quantization-config ..." if method == "online" else method
    raise ConfigError(
        f"{config_key}: quant_method {method!r} is a {RUNTIME_REASON}",
        hint=f"drop quantization_config from the unquantized checkpoint and pass"
        f" `--quantization {serve}` when serving",
    )
