"""The load of torchao tensor subclasses into vLLM 0.33's merged and TP-sharded parameters, on
the transformers + torchao 0.18 exports in tests/fixtures/torchao/, against what real vLLM
0.33 loaded from them (tests/fixtures/vllm_golden/torchao/, oracle/torchao_oracle.py golden)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from builders import Built, from_files

from qscale import CheckOptions, check, plan_load, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import resolve_quantization
from qscale.layout import Deployment
from qscale.schemes import Strategy
from qscale.sharding import Split, read_shapes

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("llama-int8wo", "llama-fp8wo", "llama-intx4wo")
GOLDENS = sorted((FIXTURES / "vllm_golden" / "torchao").glob("*.json"))
#: safetensors dtype -> torch's name for it
TORCH = {"I8": "int8", "F32": "float32", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn"}
K_PROJ = "model.layers.0.self_attn.k_proj"


def codes(folder: Path, engine: str = "vllm==0.33.0", tp: int = 1) -> list[str]:
    report = check(read_checkpoint(folder),
                   CheckOptions(engine=engine, deployment=Deployment(tp=tp)))
    return [f.code for f in report.findings]


def meta(built: Built) -> dict[str, str]:
    assert isinstance(built.metadata, dict)
    return built.metadata


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("name", NAMES)
def test_real_exports_load_clean(name, tp):
    assert codes(FIXTURES / "torchao" / name, tp=tp) == []


def test_goldens_cover_every_fixture_at_tp_1_and_2():
    assert sorted(g.name for g in GOLDENS) == sorted(
        f"{n}@vllm-0.33.0-tp{tp}.json" for n in NAMES for tp in (1, 2))


def _predicted(folder: Path, tp: int) -> dict[str, dict[str, object]]:
    """Per engine weight, from qscale's plan: the subclass, block_size and every component's
    shape and dtype one TP rank holds (the scheme's shape rules at the rank's partition)."""
    ckpt = read_checkpoint(folder)
    quant = resolve_quantization(ckpt, "vllm==0.33.0")
    plan = plan_load(ckpt, "vllm==0.33.0")
    splits = {re.sub(r"\.\d+\.", ".#.", x.name): x.split
              for x in read_shapes(ckpt, quant, plan).layers}
    shapes = {t.name: t for h in ckpt.files for t in h.tensors}
    out: dict[str, dict[str, object]] = {}
    for p in plan.params.values():
        layer, _, leaf = p.name.rpartition(".")
        if not leaf.startswith("_weight_"):
            continue
        split = splits[re.sub(r"\.\d+\.", ".#.", layer)]
        rows, dtypes, entry = 0, set(), out.setdefault(f"{layer}.weight", {"components": {}})
        for src in p.sources:
            module = quant.modules[src.source.rpartition(".")[0]]
            scheme = module.scheme
            assert scheme is not None
            assert module.logical_shape is not None
            o, i = module.logical_shape
            o, i = (o // tp, i) if split in (Split.COLUMN, Split.QKV) else (o, i // tp)
            spec = scheme.spec(leaf)
            assert spec is not None
            (shape,) = spec.accepted(o, i)
            rows += shape[0]
            dtypes.add(TORCH[shapes[src.source].dtype])
            group = i if scheme.weights.strategy == Strategy.CHANNEL else scheme.weights.group_size
            entry.update(type=scheme.label.removeprefix("torchao "), block_size=[1, group])
        assert len(dtypes) == 1
        entry["components"][leaf.removeprefix("_weight_")] = {  # type: ignore[index]
            "shape": [rows, shape[1]], "dtype": dtypes.pop()}
    return out


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda g: g.stem)
def test_plan_equals_what_real_vllm_loaded(golden):
    data = json.loads(golden.read_text())
    assert data["vllm_version"] == "0.33.0" and data["load"] == "ok"
    predicted = _predicted(FIXTURES / data["checkpoint"], data["tp"])
    assert len(data["ranks"]) == data["tp"]
    for real in data["ranks"]:  # every rank holds the same shapes
        assert sorted(real) == sorted(predicted)
        for name, entry in real.items():
            components = {c: {"shape": v["shape"], "dtype": v["dtype"]}
                          for c, v in entry["components"].items()}
            assert all(v["equal_to_stored_slice"] for v in entry["components"].values()), name
            assert {**entry, "components": components} == predicted[name], name


def _mixed_k_proj(tmp_path: Path) -> Path:
    """int8wo with layer 0's k_proj taken from the Float8 export (real vLLM 0.33: "'Float8Tensor'
    object has no attribute 'zero_point'" from torchao's copy_ into qkv_proj)."""
    built = from_files(FIXTURES / "torchao" / "llama-int8wo")
    fp8 = from_files(FIXTURES / "torchao" / "llama-fp8wo")
    for piece in ("qdata", "scale", "zero_point"):
        built.tensors.pop(f"{K_PROJ}._weight_{piece}")
    for piece in ("qdata", "scale"):
        built.tensors[f"{K_PROJ}._weight_{piece}"] = fp8.tensors[f"{K_PROJ}._weight_{piece}"]
    meta(built)[f"{K_PROJ}.weight"] = meta(fp8)[f"{K_PROJ}.weight"]
    return built.write(tmp_path)


def test_shard_of_another_subclass_in_qkv_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=rf"`{K_PROJ}\.weight`.*`model\.layers\.0\.self_attn"
                       r"\.qkv_proj` as a torchao Int8Tensor.*stored as Float8Tensor"):
        codes(_mixed_k_proj(tmp_path))


def test_shard_without_a_component_is_refused(tmp_path):
    # flattened consistently without its zero point: the rebuilt Int8Tensor has none, the
    # parameter vLLM builds has one, and _same_metadata refuses the copy
    built = from_files(FIXTURES / "torchao" / "llama-int8wo")
    built.tensors.pop(f"{K_PROJ}._weight_zero_point")
    entry = json.loads(meta(built)[f"{K_PROJ}.weight"])
    entry["_tensor_data_names"] = ["qdata", "scale"]
    meta(built)[f"{K_PROJ}.weight"] = json.dumps(entry)
    with pytest.raises(ConfigError, match=rf"`{K_PROJ}\.weight`.*stores pieces \['qdata',"
                       r" 'scale'\], Int8Tensor has \['qdata', 'scale', 'zero_point'\]"):
        codes(built.write(tmp_path))


def test_shard_with_another_group_size_is_refused(tmp_path):
    # up_proj re-grouped by 64 (its scales halved in number): gate_up_proj is built by 32
    built = from_files(FIXTURES / "torchao" / "llama-intx4wo")
    up = "model.layers.1.mlp.up_proj"
    for piece in ("scale", "zero_point"):
        built.tensors[f"{up}._weight_{piece}"] = built.tensors[f"{up}._weight_{piece}"][:, :1]
    entry = json.loads(meta(built)[f"{up}.weight"])
    entry["_data"]["block_size"] = [1, 64]
    meta(built)[f"{up}.weight"] = json.dumps(entry)
    with pytest.raises(ConfigError, match=rf"`{up}\.weight`.*`model\.layers\.1\.mlp\.gate_up_proj`"
                       r".*block_size is \[1, 64\], the config's is \[1, 32\]"):
        codes(built.write(tmp_path))


def test_group_split_by_tp_is_an_error_naming_the_layer():
    # real vLLM 0.33 at TP=4: o_proj's 16 input columns per rank, groups of 32: torchao's
    # quantize_ in create_weights asserts
    folder = FIXTURES / "torchao" / "llama-intx4wo"
    report = check(read_checkpoint(folder),
                   CheckOptions(engine="vllm==0.33.0", deployment=Deployment(tp=4)))
    assert [f.code for f in report.findings] == ["QS505"]
    assert "self_attn.o_proj" in report.findings[0].message
    assert "Expecting input size at 1 dimension: 16" in report.findings[0].message
    assert codes(FIXTURES / "torchao" / "llama-int8wo", tp=4) == []  # one block per row


@pytest.mark.parametrize("engine", ["vllm==0.32.0", "vllm==0.24.0"])
def test_other_releases_stay_not_modelled(engine, run_cli):
    result = run_cli("check", str(FIXTURES / "torchao" / "llama-int8wo"), "--engine", engine)
    assert result.returncode == 2
    assert "QS102" in result.stderr


def test_other_configs_stay_not_modelled(tmp_path):
    built = from_files(FIXTURES / "torchao" / "llama-int8wo")
    default = built.config["quantization_config"]["quant_type"]["default"]
    default["_data"]["granularity"] = {"_type": "PerTensor", "_data": {}}
    with pytest.raises(UnknownFormat, match=r"Int8WeightOnlyConfig \(PerTensor granularity\)"
                       r".* not modelled"):
        codes(built.write(tmp_path))
