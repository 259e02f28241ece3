"""Model families as data, keyed by ``config.architectures[0]``."""

from __future__ import annotations

from collections.abc import Mapping

from qscale.engines.families import deepseek, deepseek_v4, glm, gpt_oss, llama, qwen
from qscale.engines.families._api import ExpertNames, Family, ShardId, Stacked

ALL_FAMILIES: tuple[Family, ...] = (
    *qwen.FAMILIES,
    deepseek.DEEPSEEK_V2,
    deepseek_v4.DEEPSEEK_V4,
    llama.LLAMA,
    gpt_oss.GPT_OSS,
    glm.GLM4_MOE,
)

FAMILIES: Mapping[str, Family] = {a: f for f in ALL_FAMILIES for a in f.architectures}
#: architecture -> why qscale does not plan it, where the generated facts would say it can
NOT_PLANNED: Mapping[str, str] = {**deepseek_v4.NOT_PLANNED}

__all__ = ["ALL_FAMILIES", "FAMILIES", "NOT_PLANNED", "ExpertNames", "Family", "ShardId", "Stacked"]
