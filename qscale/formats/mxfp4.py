"""``quant_method: mxfp4`` (gpt-oss): only the fused MoE experts are MXFP4.

vLLM's ``Mxfp4Config`` reads nothing from the config (``modules_to_not_convert`` is ignored):
every Linear layer is unquantized and each layer's ``experts`` module stores
``{gate_up,down}_proj_blocks`` (packed E2M1, ``[E, out, in/32, 16]``) and ``*_scales``
(E8M0, ``[E, out, in/32]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from qscale.formats._api import BuiltByEveryRelease, NoSkipList, Resolution
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import E8M0, U8, QuantArgs, QuantScheme, Shapes, Strategy, TensorSpec

METHOD = "mxfp4"


def _blocks(o: int, i: int) -> Shapes:
    return ((o, i // 32, 16),)


def _logical(s: tuple[int, ...]) -> tuple[int, int] | None:
    return (s[0], s[1] * 32) if len(s) == 3 else None


def _scales(o: int, i: int) -> Shapes:
    return ((o, i // 32),)


#: Shapes here are per expert: the stored tensors carry a leading expert dimension.
SCHEME = QuantScheme(
    METHOD,
    "MXFP4 experts",
    QuantArgs("float", 4, Strategy.GROUP, group_size=32, scale_format="e8m0"),
    None,
    tuple(
        spec
        for proj in ("gate_up_proj", "down_proj")
        for spec in (
            TensorSpec(f"{proj}_blocks", U8, _blocks, logical=_logical),
            TensorSpec(f"{proj}_scales", E8M0, _scales, ref=f"{proj}_blocks"),
        )
    ),
)


@dataclass(frozen=True, slots=True)
class Mxfp4Config(NoSkipList, BuiltByEveryRelease):
    """gpt-oss MXFP4: experts quantized, everything else BF16."""

    config_key: str = "config.json"
    method: str = METHOD

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Experts are MXFP4; Linear layers are not quantized by this method."""
        if module.kind == ModuleKind.FUSED_EXPERTS:
            return Resolution(SCHEME, "quant_method mxfp4 (MoE experts)")
        return Resolution(None, "quant_method mxfp4 quantizes only MoE experts")


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json") -> Mxfp4Config:
    """Parse a gpt-oss ``quant_method: mxfp4`` config (no field changes the scheme)."""
    del qc
    return Mxfp4Config(config_key)
