"""The load plan's former home, kept for callers of the library API: it moved to
:mod:`qscale.engines.loader`, the simulation step of the engine package."""

from qscale.engines.loader import (
    LoadPlan,
    MergedParam,
    Refusal,
    ShardSlot,
    expand_shard_id,
    map_tensor,
    plan_load,
    unfilled_params,
)

__all__ = [
    "LoadPlan",
    "MergedParam",
    "Refusal",
    "ShardSlot",
    "expand_shard_id",
    "map_tensor",
    "plan_load",
    "unfilled_params",
]
