"""qscale's torch-free compressed-tensors parser against compressed-tensors itself.

vLLM validates every ``weights`` / ``input_activations`` block with
``compressed_tensors.QuantizationArgs.model_validate``; qscale mirrors that validation in
``qscale/formats/compressed_tensors.py`` so the check path never imports torch. These tests
keep the two in step: (a) every preset scheme parses to the same arguments, (b) what
compressed-tensors rejects qscale rejects, what it accepts qscale reads alike, and (c) the
tensors qscale expects per format are those the compressor (and the quantization lifecycle,
for activation parameters) puts in the checkpoint.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import torch
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.format import infer_module_format
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import (
    QuantizationArgs,
    QuantizationConfig,
    QuantizationScheme,
    QuantizationStrategy,
)
from compressed_tensors.quantization.lifecycle.initialize import (
    initialize_module_for_quantization,
)
from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

from qscale.errors import ConfigError
from qscale.formats import compressed_tensors as qct
from qscale.schemes import QuantArgs

GROUPED = ("group", "tensor_group")


def ct_accepts(raw: dict[str, Any]) -> QuantizationArgs | None:
    """compressed-tensors' verdict; its validators raise ValidationError, TypeError (a string
    group_size) and NotImplementedError (float widths other than 4, 6, 8)."""
    try:
        return QuantizationArgs.model_validate(copy.deepcopy(raw))
    except (ValueError, TypeError, NotImplementedError):
        return None


def ct_view(a: QuantizationArgs) -> dict[str, Any]:
    strategy = QuantizationStrategy(a.strategy).value
    return {
        "type": str(getattr(a.type, "value", a.type)),
        "num_bits": a.num_bits,
        "strategy": strategy,
        # QuantArgs keeps a group size only where it sizes groups (-1 and 0 mean channel)
        "group_size": a.group_size if strategy in GROUPED else None,
        "block": tuple(a.block_structure) if a.block_structure else None,
        "dynamic": "local" if a.dynamic == "local" else bool(a.dynamic),
        "symmetric": a.symmetric,
    }


def qs_view(q: QuantArgs) -> dict[str, Any]:
    return {
        "type": q.type,
        "num_bits": q.num_bits,
        "strategy": q.strategy.value,
        "group_size": q.group_size,
        "block": q.block,
        "dynamic": q.dynamic,
        "symmetric": q.symmetric,
    }


def scheme_of(name: str) -> QuantizationScheme:
    return QuantizationScheme(targets=["Linear"], **copy.deepcopy(PRESET_SCHEMES[name]))


PRESET_ARGS = [
    pytest.param(name, role, id=f"{name}-{role}")
    for name, preset in PRESET_SCHEMES.items()
    for role in ("weights", "input_activations")
    if preset.get(role) is not None
]


# --------------------------------------------------------------------------- (a) presets


def test_preset_table_is_found() -> None:
    assert len(PRESET_ARGS) >= 40
    assert {"FP8", "FP8_DYNAMIC", "FP8_BLOCK", "NVFP4", "MXFP4", "W4A16"} <= set(PRESET_SCHEMES)


@pytest.mark.parametrize(("name", "role"), PRESET_ARGS)
def test_preset_args_parse_alike(name: str, role: str) -> None:
    args: QuantizationArgs = getattr(scheme_of(name), role)
    dumped = json.loads(json.dumps(args.model_dump()))  # as it sits in config.json
    assert qs_view(qct.parse_args(dumped, f"{name}.{role}")) == ct_view(args)
    # and a second trip through compressed-tensors gives the same arguments
    again = ct_accepts(dumped)
    assert again is not None and ct_view(again) == ct_view(args)


@pytest.mark.parametrize("name", [n for n, p in PRESET_SCHEMES.items() if p.get("weights")])
def test_preset_quantization_config_parses(name: str) -> None:
    """A whole ``quantization_config`` as compressed-tensors serializes it once compressed
    (the in-memory default format, "fakequant", is replaced by the compressor's)."""
    fmt = infer_module_format(torch.nn.Linear, scheme_of(name)).value
    qc = QuantizationConfig(
        config_groups={"group_0": scheme_of(name)}, ignore=["lm_head"], format=fmt
    )
    raw = json.loads(json.dumps(qc.model_dump(mode="json")))
    parsed = qct.parse(raw)
    (group,) = parsed.groups
    assert group.targets == ("Linear",)
    assert parsed.ignore == ("lm_head",)
    assert qs_view(group.scheme.weights) == ct_view(scheme_of(name).weights)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- (b) validation

#: One entry per validation rule of ``QuantizationArgs``: its field validators
#: (validate_type, validate_group, validate_block_structure, validate_strategy,
#: validate_actorder, validate_dynamic), the pydantic field types, ``extra="forbid"``,
#: and each branch of ``validate_model_after``.
INVALID: dict[str, dict[str, Any]] = {
    # field validators and field types
    "type-unknown": {"type": "fp"},
    "type-not-string": {"type": 4},
    "num-bits-fraction": {"num_bits": 8.5},
    "num-bits-null": {"num_bits": None},
    "num-bits-text": {"num_bits": "eight"},
    "symmetric-text": {"symmetric": "maybe"},
    "symmetric-null": {"symmetric": None},
    "group-size-below-minus-one": {"group_size": -2},
    "group-size-string": {"strategy": "group", "group_size": "128"},
    "block-three-dims": {"strategy": "block", "block_structure": [128, 128, 1]},
    "block-float": {"strategy": "block", "block_structure": [128.0, 128]},
    "block-zero": {"strategy": "block", "block_structure": [0, 128]},
    "block-bad-string": {"strategy": "block", "block_structure": "128xfoo"},
    "block-upper-x": {"strategy": "block", "block_structure": "128X128"},
    "block-not-list": {"strategy": "block", "block_structure": 128},
    "strategy-unknown": {"strategy": "row"},
    "strategy-not-string": {"strategy": 1},
    "actorder-true": {"actorder": True},
    "actorder-group": {"actorder": "group"},
    "actorder-dynamic": {"actorder": "Dynamic"},
    "actorder-unknown": {"actorder": "columns"},
    "actorder-wrong-case": {"actorder": "WEIGHT"},
    "dynamic-text": {"dynamic": "true"},
    "dynamic-null": {"dynamic": None},
    "dynamic-two": {"dynamic": 2},
    "scale-dtype-unknown": {"scale_dtype": "torch.float7"},
    "zp-dtype-not-string": {"zp_dtype": 8},
    "observer-not-string": {"observer": 5},
    "observer-kwargs-list": {"observer_kwargs": []},
    "extra-field": {"num_bits": 8, "granularity": "tensor"},
    # validate_model_after
    "inferred-group-size-zero": {"group_size": 0},
    "token-static": {"strategy": "token", "dynamic": False},
    "group-without-size": {"strategy": "group"},
    "tensor-group-without-size": {"strategy": "tensor_group", "dynamic": "local"},
    "group-size-zero": {"strategy": "group", "group_size": 0},
    "group-size-without-group": {"strategy": "channel", "group_size": 128},
    "block-without-structure": {"strategy": "block"},
    "structure-without-block": {"strategy": "channel", "block_structure": [128, 128]},
    "dynamic-channel": {"strategy": "channel", "dynamic": True},
    "dynamic-block": {"strategy": "block", "block_structure": [128, 128], "dynamic": True},
    "dynamic-attn-head": {"strategy": "attn_head", "dynamic": True},
    "local-not-tensor-group": {"strategy": "group", "group_size": 16, "dynamic": "local"},
    "float-16-bits": {"type": "float", "num_bits": 16},
}

#: Accepted by both, and read alike: inference and the lax coercions pydantic applies.
VALID: dict[str, dict[str, Any]] = {
    "empty": {},
    "infer-group": {"group_size": 128},
    "infer-channel": {"group_size": -1},
    "channel-minus-one": {"strategy": "channel", "group_size": -1},
    "channel-size-zero": {"strategy": "channel", "group_size": 0},
    "block-string": {"strategy": "block", "block_structure": "128x128"},
    "block-string-spaces": {"strategy": "block", "block_structure": "64 x 128"},
    "block-list": {"type": "float", "strategy": "block", "block_structure": [64, 128]},
    "upper-case": {"type": "FLOAT", "strategy": "TENSOR_GROUP", "group_size": 16,
                   "dynamic": "LOCAL", "num_bits": 4},
    "token-dynamic": {"strategy": "token", "dynamic": True, "type": "float"},
    "group-dynamic": {"strategy": "group", "group_size": 128, "dynamic": True},
    "tensor-dynamic": {"dynamic": True},
    "attn-head-static": {"strategy": "attn_head"},
    "asymmetric": {"symmetric": False, "group_size": 32, "num_bits": 4},
    "num-bits-string": {"num_bits": "4", "group_size": 128},
    "num-bits-integral-float": {"num_bits": 8.0},
    "group-size-integral-float": {"group_size": 128.0},
    "symmetric-text": {"symmetric": "false"},
    "symmetric-zero": {"symmetric": 0},
    "dynamic-one": {"dynamic": 1},
    "actorder-weight": {"actorder": "weight", "group_size": 128},
    "actorder-static": {"actorder": "static", "group_size": 128},
    "actorder-false": {"actorder": False},
    "actorder-null": {"actorder": None},
    "scale-dtype": {"scale_dtype": "torch.float8_e4m3fn", "zp_dtype": "uint8"},
    "float-16-with-zp-dtype": {"type": "float", "num_bits": 16, "zp_dtype": "float16"},
    "float-6": {"type": "float", "num_bits": 6, "strategy": "group", "group_size": 32},
    "int-16": {"num_bits": 16},
    "observer": {"observer": "minmax", "observer_kwargs": {"averaging_constant": 0.1}},
    "nulls": {"strategy": None, "group_size": None, "block_structure": None,
              "scale_dtype": None, "zp_dtype": None, "observer": None},
}  # fmt: skip


def test_invalid_table_covers_every_validator() -> None:
    validators = {
        "validate_type", "validate_group", "validate_block_structure", "validate_strategy",
        "validate_actorder", "validate_dynamic",
    }  # fmt: skip
    assert validators <= set(dir(QuantizationArgs))  # the rules this table mirrors still exist
    assert len(INVALID) >= 10


@pytest.mark.parametrize("raw", list(INVALID.values()), ids=list(INVALID))
def test_invalid_args_rejected_by_both(raw: dict[str, Any]) -> None:
    assert ct_accepts(raw) is None, "compressed-tensors accepts it: fix the table"
    with pytest.raises(ConfigError, match=r"^w: "):
        qct.parse_args(copy.deepcopy(raw), "w")


@pytest.mark.parametrize("raw", list(VALID.values()), ids=list(VALID))
def test_valid_args_read_alike(raw: dict[str, Any]) -> None:
    ct = ct_accepts(raw)
    assert ct is not None, "compressed-tensors rejects it: fix the table"
    assert qs_view(qct.parse_args(copy.deepcopy(raw), "w")) == ct_view(ct)


#: Values tried for each field, alone: qscale must accept exactly what compressed-tensors
#: accepts, and read the same value.
FIELD_VALUES: dict[str, list[Any]] = {
    "num_bits": [4, "8", " 8 ", "+8", "1_6", "8.0", 8.0, True, 8.5, "8.5", "1e1", None, [8], {}],
    "type": ["int", "Float", "INT", "fp", "", None, 1, ["int"]],
    "symmetric": [True, False, 0, 1, 2, 1.0, 0.5, "true", "False", "yes", "off", "T", "n",
                  " true", "maybe", "", None, []],
    "group_size": [None, -1, 0, 1, 128, 128.0, 128.5, -2, True, "128", [128]],
    "strategy": [None, "tensor", "Channel", "GROUP", "token", "attn_head", "row", "", 1, []],
    "dynamic": [False, True, 0, 1, 2, 1.0, "local", "Local", "true", "", None, []],
    "actorder": [None, False, True, 0, 1, "weight", "static", "group", "dynamic", "GROUP",
                 "WEIGHT", "Static", "", 2, []],
    "scale_dtype": [None, "float16", "torch.bfloat16", "torch.uint8", "float8_e8m0fnu",
                    "torch.float7", "Tensor", "", 5, []],
    "observer": [None, "minmax", "", 5, []],
    "observer_kwargs": [{}, {"a": 1}, None, [], "x"],
}  # fmt: skip

_NEEDS: dict[str, dict[str, Any]] = {  # companions that make a value meaningful
    "group_size": {},
    "strategy": {"group_size": None},
    "dynamic": {"strategy": "tensor_group", "group_size": 16},
}
FIELD_CASES = [
    pytest.param(field, value, id=f"{field}={value!r}")
    for field, values in FIELD_VALUES.items()
    for value in values
]


@pytest.mark.parametrize(("field", "value"), FIELD_CASES)
def test_field_coercion_matches(field: str, value: Any) -> None:
    raw = {**_NEEDS.get(field, {}), field: value}
    if field == "strategy" and isinstance(value, str) and value.lower() == "token":
        raw["dynamic"] = True
    ct = ct_accepts(raw)
    try:
        qs: QuantArgs | None = qct.parse_args(copy.deepcopy(raw), "w")
    except ConfigError:
        qs = None
    assert (qs is None) == (ct is None), (raw, ct, qs)
    if qs is not None and ct is not None:
        assert qs_view(qs) == ct_view(ct)


def test_known_torch_dtypes_cover_torch() -> None:
    """qscale names the torch dtypes without importing torch; a torch that adds one fails here
    rather than making qscale reject a config vLLM accepts."""
    names = {n for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)}
    assert names <= qct.TORCH_DTYPES, sorted(names - qct.TORCH_DTYPES)


# --------------------------------------------------------------------------- (c) tensors

#: Schemes per format: the presets compressed-tensors compresses with it, and variants
#: (asymmetric weights, static activations) that change the parameter list.
FORMAT_SCHEMES: dict[str, list[str | dict[str, Any]]] = {
    "float-quantized": [
        "FP8", "FP8_DYNAMIC", "FP8_BLOCK",
        {"weights": {"type": "float", "strategy": "channel", "symmetric": False},
         "input_activations": {"type": "float", "strategy": "tensor", "symmetric": False}},
    ],
    "pack-quantized": ["W4A16", "W4A16_ASYM", "W8A16", "W2A16", "W3A16",
                       {"weights": {"num_bits": 4, "strategy": "channel", "symmetric": False}}],
    "nvfp4-pack-quantized": [
        "NVFP4A16", "NVFP4",
        {"weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group",
                     "group_size": 16, "symmetric": False}},
    ],
    "mxfp4-pack-quantized": [
        "MXFP4A16", "MXFP4", "MXFP4XFP8",
        {"weights": {"num_bits": 4, "type": "float", "group_size": 32, "symmetric": False}},
    ],
}  # fmt: skip
FORMAT_CASES = [
    pytest.param(fmt, s, id=f"{fmt}-{s if isinstance(s, str) else i}")
    for fmt, schemes in FORMAT_SCHEMES.items()
    for i, s in enumerate(schemes)
]


def _scheme(s: str | dict[str, Any]) -> QuantizationScheme:
    return scheme_of(s) if isinstance(s, str) else QuantizationScheme(targets=["Linear"], **s)


def _qscale_args(scheme: QuantizationScheme) -> tuple[QuantArgs, QuantArgs | None]:
    assert scheme.weights is not None
    w = qct.parse_args(scheme.weights.model_dump(mode="json"), "weights")
    ia = scheme.input_activations
    return w, qct.parse_args(ia.model_dump(mode="json"), "inputs") if ia is not None else None


def _lifecycle_input_params(scheme: QuantizationScheme) -> set[str]:
    """The activation parameters compressed-tensors registers on a Linear (calibration writes
    them into the checkpoint as they are; symmetric zero points are dropped on save)."""
    m = torch.nn.Linear(256, 128)
    initialize_module_for_quantization(m, scheme)
    names = {n for n, _ in m.named_parameters() if n.startswith("input_")}
    ia = scheme.input_activations
    if ia is None or ia.symmetric:
        names.discard("input_zero_point")
    return names


@pytest.mark.parametrize(("fmt", "s"), FORMAT_CASES)
def test_format_tensor_names_match_compressor(fmt: str, s: str | dict[str, Any]) -> None:
    scheme = _scheme(s)
    assert infer_module_format(torch.nn.Linear, scheme).value == fmt
    w, ia = _qscale_args(scheme)
    specs = qct.tensor_specs(fmt, w, ia)
    expected = {p.param for p in specs}
    compressor = BaseCompressor.get_value_from_registry(fmt)
    written = set(compressor.compression_param_names(scheme))

    # the stored weight is the first spec, and the compressor writes it under that name
    assert specs[0].param in written and specs[0].param in ("weight", "weight_packed")
    # weight-side parameters: exactly the compressor's
    assert {p for p in expected if p.startswith("weight")} == {
        p for p in written if p.startswith("weight")
    }
    # activation parameters: those the lifecycle registers. The compressor's own list is not
    # the reference here: NVFP4PackedCompressor lists input_global_scale only for static
    # (dynamic=False) activations, but NVFP4's dynamic="local" activations carry one too
    # (initialize_qparams registers it for TENSOR_GROUP), and vLLM's W4A4 NVFP4 scheme
    # loads it.
    assert {p for p in expected if p.startswith("input_")} == _lifecycle_input_params(scheme)


@pytest.mark.parametrize("name", [n for n, p in PRESET_SCHEMES.items() if p.get("weights")])
def test_inferred_format_matches_compressed_tensors(name: str) -> None:
    scheme = scheme_of(name)
    w, ia = _qscale_args(scheme)
    assert scheme.weights is not None
    sd = qct.torch_dtype_name(scheme.weights.model_dump(mode="json").get("scale_dtype"), "", "")
    assert (
        qct.infer_format(w, ia, scale_dtype=sd)
        == infer_module_format(torch.nn.Linear, scheme).value
    )


def test_config_without_format_uses_inferred_format() -> None:
    qc = QuantizationConfig(config_groups={"g": scheme_of("MXFP8")}, format="mixed-precision")
    raw = json.loads(json.dumps(qc.model_dump(mode="json")))
    (group,) = qct.parse(raw).groups
    assert group.scheme.format == "compressed-tensors/mxfp8-quantized"


def test_pack_quantized_asymmetric_zero_point_is_packed() -> None:
    """W4A16_ASYM: the zero point is int32, packed 8 per word along the output dimension,
    as ``pack_to_int32(zp, packed_dim=0)`` writes it and vLLM's WNA16 registers it."""
    scheme = scheme_of("W4A16_ASYM")
    assert scheme.weights is not None
    w, ia = _qscale_args(scheme)
    specs = qct.tensor_specs("pack-quantized", w, ia)
    zp = next(p for p in specs if p.param == "weight_zero_point")
    packed = pack_to_int32(torch.zeros(256, 512 // 128, dtype=torch.int8), 4, packed_dim=0)
    assert zp.dtypes == {"I32"}
    assert tuple(packed.shape) in zp.accepted(256, 512)
