"""Stacked, ExpertNames, Family: model families as data, in vLLM's own vocabulary."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qscale.errors import ConfigError

ShardId = int | str | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Stacked:
    """One ``stacked_params_mapping`` entry: checkpoint ``weight`` loads into ``param``."""

    param: str  #: engine name fragment, e.g. ".qkv_proj"
    weight: str  #: checkpoint name fragment, e.g. ".q_proj"
    shard: ShardId  #: "q"/"k"/"v", an int, or a tuple of ints (Qwen3.5 in_proj_qkv)
    #: engine-name prefix of the module whose loader holds this entry ("" everywhere), e.g.
    #: ``visual.`` for a vision tower's own ``load_weights``
    scope: str = ""


@dataclass(frozen=True, slots=True)
class ConfigRead:
    """A ``quantization_config`` key the engine's model code reads while it builds the model:
    a config without it fails to build in the releases ``since`` <= v < ``until``."""

    key: str
    since: tuple[int, ...]
    until: tuple[int, ...]  #: the first release that no longer reads it
    where: str  #: the code that reads it, e.g. ``DeepSeek-V4's attention (…__init__)``
    value: str  #: what the releases that stopped reading it use instead (the fix's value)


@dataclass(frozen=True, slots=True)
class ExpertNames:
    """Per-expert checkpoint names mapped onto fused ``w13``/``w2`` parameters."""

    gate: str = "gate_proj"
    down: str = "down_proj"
    up: str = "up_proj"


@dataclass(frozen=True, slots=True)
class Family:
    """What the engine fuses, renames and skips for one model family."""

    name: str
    architectures: tuple[str, ...]
    stacked: tuple[Stacked, ...]
    #: fused leaf -> partition sizes, as products of text-config fields ("a*b" or "2*a*b")
    partitions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: checkpoint prefix -> engine prefix, first match wins
    prefix_map: tuple[tuple[str, str], ...] = ()
    #: substring renames applied before everything else (vLLM ``orig_to_new_substr``)
    substr_map: tuple[tuple[str, str], ...] = ()
    #: suffix renames of fused 3-D expert tensors and similar (vLLM ``orig_to_new_suffix``);
    #: per-expert names (``experts.<i>.…``) go through the expert mapping instead
    suffix_map: tuple[tuple[str, str], ...] = ()
    #: regex renames applied first (vLLM ``orig_to_new_regex``)
    regex_map: tuple[tuple[str, str], ...] = ()
    #: renames a model's own loader code makes, each only when its guard fragment is in the
    #: name ("" always): (old, new, guard), e.g. ERNIE-4.5 ``moe_statics`` -> ``gate``
    code_renames: tuple[tuple[str, str, str], ...] = ()
    #: checkpoint names the engine skips (draft/MTP layers load only into the draft model)
    skip_prefixes: tuple[str, ...] = ()
    #: name fragments whose tensors the engine skips (``if "rotary_emb.inv_freq" in name``,
    #: a mapper entry to None); ``re:`` starts a regex, ``$:`` a suffix
    skip_substrings: tuple[str, ...] = ()
    #: the config field past which ``layers.<i>`` are draft (MTP) layers the main model skips
    #: (vLLM ``get_spec_layer_idx_from_weight_name``)
    draft_layers_from: str | None = None
    #: engine-name prefixes of children built without a quantization config, and the
    #: ``quant_method`` values that holds for (``*``: every one); e.g. Kimi-K2.5's
    #: ``vision_tower`` under compressed-tensors (``_maybe_ignore_quant_config``)
    unquantized_prefixes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: fused module leaf -> how many logical shards the engine builds it with (its
    #: ``packed_modules_mapping``): a tensor stored fused on disk (Phi-3 ``qkv_proj``) loads
    #: with shard id None into every one of their per-tensor scale slots
    packed: Mapping[str, int] = field(default_factory=dict)
    #: built from the generated engine catalogue (not a hand-written override)
    generated: bool = False
    experts: ExpertNames | None = None
    shared_expert: str | None = None  #: ".shared_expert." (Qwen) or ".shared_experts." (DeepSeek)
    #: fused leaves that exist only when a config field is set, e.g. DeepSeek fused_qkv_a_proj
    requires: Mapping[str, str] = field(default_factory=dict)
    #: module-name suffixes the engine builds with ``quant_config=None`` (router gates)
    never_quantized: tuple[str, ...] = ()
    #: fused leaves the engine builds by concatenating the shards' tensors and loading the
    #: result whole (SGLang DeepSeek ``fused_qkv_a_proj_with_mqa``), not shard by shard into
    #: per-partition slots; 0-d per-tensor scales then keep the first shard's value only
    concatenated: tuple[str, ...] = ()
    #: engine-module suffix -> how the engine splits that layer over TP (``row``,
    #: ``replicated``, ``column``) where its leaf name does not say (qscale.sharding), e.g. a
    #: ``MergedColumnParallelLinear(disable_tp=True)``
    tp_splits: Mapping[str, str] = field(default_factory=dict)
    #: (release, names): the releases before ``release`` build the fused-MoE layer with these
    #: checkpoint names (vLLM ``FusedMoE(ckpt_names=…)``, which its compressed-tensors MoE
    #: method probes) instead of the expert mapping's
    moe_layer_names_before: tuple[tuple[int, int, int], ExpertNames] | None = None
    #: the engine code that builds the fused routed-experts layer with the expert mapping's
    #: checkpoint names (from :attr:`moe_layer_names_before`'s release on, where set): QS203
    #: names it where the config's targets match none of the names the layer is probed on
    moe_layer_built_by: str | None = None
    #: ``quantization_config`` keys vLLM's model code reads while building (a config without
    #: one fails to build in those releases; :class:`ConfigRead`)
    reads_quant_config: tuple[ConfigRead, ...] = ()
    #: the engines whose loaders this family was read from (empty: every profiled engine);
    #: another engine's load of the architecture is not planned (QS103)
    read_from: tuple[str, ...] = ()
    #: engine name -> the fields that differ in that engine's loader (its own vocabulary)
    engines: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def build_refusal(self, qc: Any, where: str, engine: str,
                      version: tuple[int, ...] | None, label: str) -> ConfigError | None:
        """The engine's failure to build the model, where the release reads a
        :attr:`reads_quant_config` key that ``qc`` lacks: the quantization config as the
        engine sets it on its model config (``hf_config.quantization_config``), read from the
        file ``where``."""
        if engine != "vllm" or version is None:
            return None
        for read in self.reads_quant_config:
            if not read.since <= tuple(version) < read.until:
                continue
            if isinstance(qc, Mapping) and read.key in qc:
                continue
            observed = ("has no `quantization_config`" if not isinstance(qc, Mapping) else
                        f"has a `quantization_config` without `{read.key}`")
            until = ".".join(map(str, read.until))
            return ConfigError(
                f"{where}: {label} builds {read.where} with"
                f" `config.quantization_config[\"{read.key}\"]`; this config {observed}, so"
                " the model fails to build",
                hint=f"serve it with vLLM {until} or later (which uses {read.value} without"
                     f" reading it), or add \"{read.key}\": \"{read.value}\" to"
                     + (" quantization_config" if where == "config.json" else
                        f" the top level of {where}"),
            )
        return None

    def for_engine(self, engine: str) -> Family:
        """This family as ``engine``'s loader sees it (its overrides applied)."""
        changes = self.engines.get(engine)
        return replace(self, engines={}, **changes) if changes else self

    def draft(self, name: str, text: Mapping[str, Any]) -> bool:
        """Whether ``name`` belongs to a draft (MTP) layer: loaded by the draft model only."""
        if name.startswith(self.skip_prefixes):  # one C call for the common miss
            hit = next(p for p in self.skip_prefixes if name.startswith(p))
            if not self.generated or "mtp" in hit or "nextn" in hit:
                return True
        if self.draft_layers_from is not None:
            m = _LAYER.search(name)
            limit = text.get(self.draft_layers_from)
            return m is not None and isinstance(limit, int) and int(m.group(1)) >= limit
        return False

    def loaded_by_main_model(self, name: str, text: Mapping[str, Any]) -> bool:
        """False for modules the main model's loader passes over (draft layers, dropped
        prefixes such as a vision tower in a language-only build)."""
        return not (name.startswith(self.skip_prefixes) or self.draft(name, text))

    def builds_unquantized(self, module: str) -> str | None:
        """The suffix by which the engine builds this module unquantized, if any."""
        return next((s for s in self.never_quantized if module.endswith(s)), None)

    def child_unquantized(self, module: str, method: str | None) -> str | None:
        """The child (engine-name prefix) the engine builds without a quantization config
        under ``method`` that holds this module, if any."""
        eng = self.engine_name(module)
        for prefix, methods in self.unquantized_prefixes:
            if eng.startswith(prefix) and ("*" in methods or method in methods):
                return prefix
        return None

    def engine_name(self, name: str) -> str:
        """A checkpoint name after the family's regex, substring and prefix renames, in vLLM
        ``WeightsMapper``'s order (each rule that matches, in turn; a hand-written family
        stops at its first prefix rule)."""
        for old, new, guard in self.code_renames:
            if old in name and guard in name:
                name = name.replace(old, new)
        for pattern, new in self.regex_map:
            name = re.sub(pattern, new, name)
        for old, new in self.substr_map:
            if old in name:
                name = name.replace(old, new, 1)
        for old, new in self.prefix_map:
            if name.startswith(old):
                name = new + name[len(old) :]
                if not self.generated:
                    return name
        return name

    def engine_modules(self, module: str,
                       version: tuple[int, ...] | None = None) -> tuple[str, ...]:
        """The engine's names for a checkpoint module, as its quantization config matching
        sees them: the module after the family's renames and its stacked rename (the fused
        layer it loads into), or, for a routed expert, the names vLLM's compressed-tensors
        MoE method probes on the fused experts layer, ``<experts>.0.<gate|up|down name>``
        (``CompressedTensorsMoEMethod.get_moe_method``, from the checkpoint names the layer
        is built with: the expert mapping's, or :attr:`moe_layer_names_before` in older
        releases)."""
        eng = self.engine_name(f"{module}.weight").removesuffix(".weight")
        ex = self.expert_layer_names(eng, version)
        if ex is not None:
            head = eng.partition(".experts.")[0]
            return tuple(f"{head}.experts.0.{p}" for p in (ex.gate, ex.up, ex.down))
        for st in self.stacked:  # the loader's ``if weight_name not in name: continue``
            if st.weight in eng and eng.startswith(st.scope):
                head, rest = eng[: len(st.scope)], eng[len(st.scope):]
                return (head + rest.replace(st.weight, st.param, 1),)
        return (eng,)

    def expert_layer_names(self, engine_module: str,
                           version: tuple[int, ...] | None = None) -> ExpertNames | None:
        """The checkpoint names the engine builds the fused-MoE layer of a routed expert with
        (``engine_module`` in the engine's naming, ``<…>.experts.<i>.<projection>``): the
        expert mapping's, or :attr:`moe_layer_names_before`'s in older releases. None where
        the module is no routed expert."""
        ex = self.experts
        if ex is None:
            return None
        _, sep, tail = engine_module.partition(".experts.")
        idx, _, proj = tail.partition(".")
        if not (sep and idx.isdigit() and proj in (ex.gate, ex.up, ex.down)):
            return None
        old = self.moe_layer_names_before
        if old is not None and version is not None and version < old[0]:
            return old[1]
        return ex

    def partition_sizes(self, leaf: str, text: Mapping[str, Any]) -> tuple[int, ...] | None:
        """Sizes of the fused parameter's partitions from the config, if the family says."""
        exprs = self.partitions.get(leaf)
        if exprs is None:
            return None
        return tuple(_eval(e, text, f"{self.name}.{leaf}") for e in exprs)


_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def _eval(expr: str, text: Mapping[str, Any], where: str) -> int:
    total = 0
    for term in expr.split("+"):
        value = 1
        for factor in term.split("*"):
            f = factor.strip()
            if f.isdigit():
                value *= int(f)
                continue
            v = text.get(f)
            if not isinstance(v, int):
                raise ConfigError(
                    f"config.json: `{f}` (needed for {where}) is missing or not an integer"
                )
            value *= v
        total += value
    return total
