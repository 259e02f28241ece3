"""NVIDIA ModelOpt: ``hf_quant_config.json`` (legacy) or inline ``quant_method: modelopt``.

Follows vLLM's ``ModelOptQuantConfigBase``: ``quant_algo`` (upper-cased) is FP8,
FP8_PER_CHANNEL_PER_TOKEN, FP8_PB_WO, NVFP4, W4A16_NVFP4, MXFP8 or MIXED_PRECISION with
per-layer ``quantized_layers``; ``exclude_modules`` / ``ignore`` entries match exactly, as a
dotted prefix, or as fnmatch wildcards. Tensors: FP8 ``weight`` + 0-d ``weight_scale`` /
``input_scale``; NVFP4 ``weight`` (packed U8), ``weight_scale`` (FP8, one per 16 inputs),
``weight_scale_2`` and ``input_scale`` (0-d).

The other FP8 algos, as vLLM 0.33.0 registers them (``modelopt.py``, the ``QuantKeyScheme``
classes that ``resolve()`` picks; 0.18.0-0.24.0 register the same shapes in
``ModelOptFp8PcPtLinearMethod`` / ``ModelOptFp8PbWoLinearMethod``):

* FP8_PER_CHANNEL_PER_TOKEN (``KFp8StaticChannel``): FP8 ``weight`` [out, in] and a 1-D F32
  ``weight_scale`` [out]; activations are quantized per token at run time, so no
  ``input_scale``.
* FP8_PB_WO (``KFp8Block128``): FP8 ``weight`` and a 4-D F32 ``weight_scale``
  [ceil(out/128), 1, in/128, 1] (ModelOpt's export shape; the loader's shape assert refuses
  the 2-D grid).
* MXFP8 (``ModelOptMxFp8Config`` / ``KMxfp8Static``, also claimed for ``quant_method:
  mxfp8`` and ``modelopt_mxfp8``): FP8 ``weight`` and a U8/E8M0 ``weight_scale``
  [out, in/32].

ModelOpt also exports W4A8_AWQ, which no vLLM release here lists in ``QUANT_ALGOS`` (the
loader's refusal, QS402); qscale does not model its tensors, so an engine without that
refusal gets QS102.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qscale.engines import EngineSpec
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats._api import (
    BuiltByEveryRelease,
    Resolution,
    SkipList,
    Wildcards,
    require_list,
    wildcard,
)
from qscale.modules import ModuleInfo, ModuleKind
from qscale.schemes import (
    E8M0,
    FLOAT_SCALE,
    FP8,
    U8,
    QuantArgs,
    QuantScheme,
    Shapes,
    Strategy,
    TensorSpec,
    full,
    groups,
    packed_in,
    per_channel_1d,
    per_tensor,
    unpacked,
)

METHOD = "modelopt"
ALGOS = ("FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO", "NVFP4", "W4A16_NVFP4", "MXFP8",
         "MXFP4", "W4A8_AWQ", "MIXED_PRECISION")
#: algos ModelOpt exports whose tensors qscale does not model (only an engine's refusal of
#: the whole algo can be reported)
UNMODELLED_ALGOS = frozenset({"W4A8_AWQ"})
#: algos whose MoE experts vLLM 0.33.0 builds with ``ModelOptFp8MoEMethod`` (per-tensor
#: ``w13_weight_scale`` [E, 2] / ``w2_weight_scale`` [E] only), which qscale does not model
DENSE_ONLY_ALGOS = frozenset({"FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO"})
#: vLLM loads ``quant_method: mxfp8`` checkpoints with ``ModelOptMxFp8Config`` from 0.24.0
#: (``quantization/__init__.py``, ``method_to_config["mxfp8"]``; 0.23.0 maps the name to its
#: online ``OnlineQuantizationConfig``)
MXFP8_TAG_SINCE = (0, 24, 0)
#: the block of FP8_PB_WO, fixed in vLLM (``KFp8Block128``, 0.18-0.24 ``_WEIGHT_BLOCK_SIZE``)
PB_WO_BLOCK = 128


def pb_wo_scale(o: int, i: int) -> Shapes:
    """FP8_PB_WO ``weight_scale``: ModelOpt's 4-D block grid [ceil(out/128), 1, in/128, 1]."""
    return ((math.ceil(o / PB_WO_BLOCK), 1, math.ceil(i / PB_WO_BLOCK), 1),)


def scheme_for_algo(algo: str, group_size: int = 16) -> QuantScheme:
    """The tensors ModelOpt's HF export writes for one quantized Linear."""
    fp8 = QuantArgs("float", 8, Strategy.TENSOR)
    if algo == "FP8":
        return QuantScheme(
            METHOD,
            "FP8 per-tensor, static act",
            fp8,
            fp8,
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, per_tensor),
                TensorSpec("input_scale", FLOAT_SCALE, per_tensor),
            ),
        )
    if algo == "FP8_PER_CHANNEL_PER_TOKEN":
        return QuantScheme(
            METHOD,
            "FP8 per-channel, dynamic per-token act",
            QuantArgs("float", 8, Strategy.CHANNEL),
            QuantArgs("float", 8, Strategy.TOKEN, dynamic=True),
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, per_channel_1d),
            ),
        )
    if algo == "FP8_PB_WO":
        # block=None: vLLM's ModelOpt block checks (input a multiple of 128, a partial last
        # output block padded in 0.33) differ from Fp8Config's, which QS503 models
        return QuantScheme(
            METHOD,
            "FP8 block 128x128, dynamic act",
            QuantArgs("float", 8, Strategy.BLOCK),
            QuantArgs("float", 8, Strategy.GROUP, group_size=PB_WO_BLOCK, dynamic=True),
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", FLOAT_SCALE, pb_wo_scale),
            ),
        )
    if algo == "MXFP8":
        mx8 = QuantArgs("float", 8, Strategy.GROUP, group_size=32, scale_format="e8m0")
        return QuantScheme(
            METHOD,
            "MXFP8",
            mx8,
            replace(mx8, dynamic=True),
            (
                TensorSpec("weight", FP8, full, unpacked()),
                TensorSpec("weight_scale", E8M0, groups(32)),
            ),
        )
    if algo in ("NVFP4", "W4A16_NVFP4"):
        w = QuantArgs("float", 4, Strategy.TENSOR_GROUP, group_size=group_size)
        act = w if algo == "NVFP4" else None
        specs = [
            TensorSpec("weight", U8, packed_in(2), unpacked(2)),
            TensorSpec("weight_scale", FP8, groups(group_size)),
            TensorSpec("weight_scale_2", FLOAT_SCALE, per_tensor),
        ]
        if act is not None:
            specs.append(TensorSpec("input_scale", FLOAT_SCALE, per_tensor))
        return QuantScheme(METHOD, "NVFP4" if act else "NVFP4 (weight-only)", w, act, tuple(specs))
    if algo == "MXFP4":  # exported by ModelOpt; vLLM's ModelOpt loader refuses it
        mx = QuantArgs("float", 4, Strategy.GROUP, group_size=32, scale_format="e8m0")
        return QuantScheme(
            METHOD,
            "MXFP4",
            mx,
            None,
            (
                TensorSpec("weight", U8, packed_in(2), unpacked(2)),
                TensorSpec("weight_scale", E8M0, groups(32)),
            ),
        )
    raise UnknownFormat(
        f"ModelOpt quant_algo {algo!r} is not modelled",
        hint=f"qscale models ModelOpt {', '.join(ALGOS)}",
    )


@dataclass(frozen=True, slots=True)
class ModelOptConfig(BuiltByEveryRelease):
    """A parsed ModelOpt config."""

    algo: str
    default: QuantScheme | None
    layers: Mapping[str, QuantScheme]  #: MIXED_PRECISION: exact module name -> scheme
    exclude: tuple[str, ...]
    config_key: str = "hf_quant_config.json"
    method: str = METHOD
    #: MIXED_PRECISION: every per-layer ``quant_algo``
    layer_algos: frozenset[str] = frozenset()
    #: the ``quant_method`` spelling of an inline config (``mxfp8``: MiniMax-style tag)
    tag: str = METHOD
    #: MXFP8 ``hf_quant_config.json`` fields vLLM requires that the file lacks
    missing_fields: tuple[str, ...] = ()
    #: ``exclude`` compiled once (a large MoE has 10^5 modules, its list 10^2 entries)
    excluded: Wildcards = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "excluded", Wildcards(self.exclude))

    def skip_list(self) -> SkipList:
        """``exclude_modules``: fnmatch wildcards or substrings (vLLM's ``is_layer_excluded``)."""
        return SkipList("exclude_modules", self.exclude, wildcard)

    def refusal(self, engine: EngineSpec | None) -> ConfigError | UnknownFormat | None:
        """What stops ``engine`` building this config, or QS102 for an algo qscale does not
        model, unless ``engine`` refuses the algo outright (``modelopt_algos`` of its profile:
        then the loader reports that refusal)."""
        vllm = engine is None or engine.engine == "vllm"
        if self.algo == "MIXED_PRECISION" and not self.layer_algos and vllm:
            return ConfigError(
                f"{self.config_key}: vLLM refuses MIXED_PRECISION without layers (\"requires a"
                " non-empty 'quantized_layers' mapping\")",
                hint="list every quantized layer under quantized_layers",
            )
        if self.missing_fields and vllm:
            return ConfigError(
                f"{self.config_key}: vLLM refuses this MXFP8 config: it requires the fields"
                f" {list(self.missing_fields)} in `quantization`",
                hint="add them (kv_cache_quant_algo may be null, exclude_modules may be [])",
            )
        if self.tag == "mxfp8" and (engine is None or engine.engine != "vllm" or (
                engine.version is not None and engine.version < MXFP8_TAG_SINCE)):
            return UnknownFormat(
                f"{self.config_key}: quant_method 'mxfp8' is read as ModelOpt MXFP8 only by"
                " vLLM >= 0.24.0 (earlier releases map it to their online MXFP8"
                " quantization, and SGLang is not modelled); not checked for this engine",
                hint="check with --engine vllm>=0.24",
            )
        unmodelled = sorted({self.algo, *self.layer_algos} & UNMODELLED_ALGOS)
        if not unmodelled:
            return None
        algos = engine.profile.modelopt_algos if engine is not None else None
        if algos is not None and self.algo not in algos:
            # the engine refuses the config's quant_algo outright: say so here, where the
            # loader's QS402 would come with a QS203 per module (no scheme to check them by)
            return ConfigError(
                f"{self.config_key}: {engine.engine if engine else 'vllm'}'s ModelOpt loader"
                f" refuses quant_algo {self.algo} (\"ModelOpt currently only supports:"
                f" {', '.join(sorted(algos))}\")",
                hint="re-export the checkpoint with a supported quant_algo",
            )
        return UnknownFormat(
            f"{self.config_key}: ModelOpt quant_algo {unmodelled[0]} is not modelled by qscale"
            " (its tensors are not checked)",
            hint="qscale models ModelOpt"
            f" {', '.join(a for a in ALGOS if a not in UNMODELLED_ALGOS)}",
        )

    def resolve(self, module: ModuleInfo) -> Resolution:
        """Excluded modules stay BF16; MIXED_PRECISION looks each layer up by name."""
        hit = self.excluded.first(module.name)
        if hit is not None:
            return Resolution(None, f"excluded by `{hit}`")
        if self.algo == "MIXED_PRECISION":
            scheme = self.layers.get(module.name)
            if scheme is None:
                parent = module.name.rsplit(".", 1)[0]
                scheme = self.layers.get(parent)  # e.g. `mlp.experts` covers every expert
            if scheme is None and ".experts." in module.name:
                # a per-expert Linear (`mlp.experts.<e>.down_proj`, as ModelOpt splits fused
                # experts on export) under an entry for the whole `mlp.experts`: vLLM 0.33.0
                # looks the RoutedExperts layer up by that prefix (`_resolve_quant_algo`)
                scheme = self.layers.get(module.name.rpartition(".experts.")[0] + ".experts")
            if scheme is None:
                return Resolution(None, "not in quantized_layers")
            if scheme.label in _DENSE_ONLY_LABELS and _is_expert(module):
                raise UnknownFormat(
                    f"{self.config_key}: MIXED_PRECISION block/channel FP8 MoE experts"
                    f" (`{module.name}`) are not modelled (vLLM builds them with a separate"
                    " block-FP8 Fp8Config MoE method)",
                    hint="the dense layers are modelled; these MoE experts are not",
                )
            return Resolution(scheme, "quantized_layers")
        if self.algo in DENSE_ONLY_ALGOS and _is_expert(module):
            raise UnknownFormat(
                f"{self.config_key}: ModelOpt {self.algo} MoE experts (`{module.name}`) are not"
                " modelled: vLLM builds them with ModelOptFp8MoEMethod, which registers"
                " per-tensor expert scales only; qscale cannot check them",
                hint="the dense layers of this algo are modelled; MoE experts are not",
            )
        return Resolution(self.default, f"quant_algo {self.algo}")


_DENSE_ONLY_LABELS = frozenset(scheme_for_algo(a).label for a in DENSE_ONLY_ALGOS)


def _is_expert(module: ModuleInfo) -> bool:
    return module.kind == ModuleKind.FUSED_EXPERTS or ".experts." in module.name


def parse(qc: Mapping[str, Any], *, config_key: str = "hf_quant_config.json") -> ModelOptConfig:
    """Parse either the legacy ``{"quantization": {...}}`` file or the inline form."""
    tag = "mxfp8" if str(qc.get("quant_method", "")).lower() == "mxfp8" else METHOD
    body = qc.get("quantization", qc)
    where = f"{config_key}: quantization"
    if "quantization" not in qc and not qc.get("quant_algo") and tag == "mxfp8":
        # vLLM ``ModelOptMxFp8Config.from_config``: MiniMax-style ``quant_method: mxfp8`` +
        # ``ignored_layers`` is ModelOpt MXFP8
        body = {"quant_algo": "MXFP8", "exclude_modules": require_list(
            qc, "ignored_layers", f"{config_key}: quantization_config")}
    if not isinstance(body, dict):
        raise ConfigError(f"{where}: expected an object")
    algo = body.get("quant_algo")
    if not isinstance(algo, str):
        raise ConfigError(f"{where}: missing 'quant_algo'")
    algo = algo.upper()
    missing: tuple[str, ...] = ()
    if algo == "MXFP8" and "quantization" in qc:  # vLLM ``ModelOptMxFp8Config._from_config``
        missing = tuple(k for k in ("kv_cache_quant_algo", "exclude_modules") if k not in body)
    if algo not in ALGOS:
        raise UnknownFormat(
            f"{where}: ModelOpt quant_algo {algo!r} is not modelled",
            hint=f"qscale models ModelOpt {', '.join(ALGOS)}",
        )
    group = body.get("group_size", 16)
    if type(group) is not int:
        raise ConfigError(f"{where}: group_size must be an integer")
    key = "exclude_modules" if "exclude_modules" in body else "ignore"
    layers: dict[str, QuantScheme] = {}
    layer_algos: set[str] = set()
    if algo == "MIXED_PRECISION":
        raw = body.get("quantized_layers") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: quantized_layers must be an object")
        for name, spec in raw.items():
            a = str(spec.get("quant_algo", "")).upper()
            layer_algos.add(a)
            if a not in UNMODELLED_ALGOS:
                layers[name] = scheme_for_algo(a, int(spec.get("group_size", group)))
    modelled = algo not in UNMODELLED_ALGOS and algo != "MIXED_PRECISION"
    return ModelOptConfig(
        algo=algo,
        default=scheme_for_algo(algo, group) if modelled else None,
        layers=layers,
        exclude=tuple(require_list(body, key, where)),
        config_key=config_key,
        layer_algos=frozenset(layer_algos),
        tag=tag,
        missing_fields=missing,
    )
