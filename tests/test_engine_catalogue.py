"""The engine catalogue: the extractor on a real (small) source tree, the committed data, the
families it yields, and the load plan that uses them."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from builders import bf16, dense

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization
from qscale.engines import catalogue, parse_engine
from qscale.engines.extract import SourceTree, extract_vllm
from qscale.engines.families import FAMILIES
from qscale.engines.generate import build
from qscale.engines.loader import family_for, plan_load
from qscale.errors import UnknownFormat

V33 = parse_engine("vllm==0.33.0")

REGISTRY = '''
_TEXT_GENERATION_MODELS = {
    "ToyForCausalLM": ("toy", "ToyForCausalLM"),
    "ToyMoeForCausalLM": ("toy_moe", "ToyMoeForCausalLM"),
    "ToyDerivedForCausalLM": ("toy", "ToyDerivedForCausalLM"),
    "BrokenForCausalLM": ("broken", "BrokenForCausalLM"),
    "ToyPlatformForCausalLM": ("toy_platform", "ToyPlatformForCausalLM"),
}
_MULTIMODAL_MODELS = {
    "ToyVLForConditionalGeneration": ("toy_vl", "ToyVLForConditionalGeneration"),
    "ToyAnyVLForConditionalGeneration": ("toy_vl", "ToyAnyVL"),
}
'''
TOY = '''
from .utils import AutoWeightsLoader, WeightsMapper

class ToyModel(nn.Module):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_stacked={
        ".q_proj": (".qkv_proj", "q"), ".k_proj": (".qkv_proj", "k"),
        ".v_proj": (".qkv_proj", "v")})

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)

class ToyForCausalLM(nn.Module):
    def __init__(self, *, vllm_config, prefix=""):
        self.model = ToyModel(vllm_config=vllm_config, prefix=prefix)

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights)

class ToyDerivedForCausalLM(ToyForCausalLM):
    pass
'''
TOY_MOE = '''
from vllm.model_executor.models.utils import get_spec_layer_idx_from_weight_name
from .utils import AutoWeightsLoader

class ToyMoeBlock(nn.Module):
    def __init__(self, config, prefix=""):
        self.gate = ReplicatedLinear(8, 4, bias=False, quant_config=None,
                                     prefix=f"{prefix}.gate")
        self.experts = FusedMoE(num_experts=4, ckpt_names=("w1", "w2", "w3"))

class ToyMoeModel(nn.Module):
    def load_weights(self, weights):
        stacked_params_mapping = [
            ("gate_up_proj", "gate_proj", 0),
            ("gate_up_proj", "up_proj", 1),
        ]
        if self.config.q_lora_rank is not None:
            stacked_params_mapping.extend([("fused_qkv_a_proj", "q_a_proj", 0)])
        for name, w in weights:
            if "rotary_emb.inv_freq" in name:
                continue
            if get_spec_layer_idx_from_weight_name(self.config, name) is not None:
                continue
            for param_name, weight_name, shard_id in stacked_params_mapping:
                if weight_name not in name:
                    continue

class ToyMoeForCausalLM(nn.Module):
    model_cls = ToyMoeModel

    def __init__(self, *, vllm_config, prefix=""):
        self.model = self.model_cls(vllm_config=vllm_config)

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights)
'''
TOY_VL = '''
from .utils import AutoWeightsLoader, WeightsMapper, init_vllm_registered_model

class ToyVLForConditionalGeneration(nn.Module):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix={
        "model.language_model.": "language_model.model.",
        "lm_head.": "language_model.lm_head.",
        "model.visual.": None})

    def __init__(self, *, vllm_config, prefix=""):
        self.language_model = init_vllm_registered_model(
            vllm_config=vllm_config, hf_config=config.text_config,
            prefix=maybe_prefix(prefix, "language_model"), architectures=["ToyForCausalLM"])

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)

class ToyAnyVL(ToyVLForConditionalGeneration):
    def __init__(self, *, vllm_config, prefix=""):
        self.language_model = init_vllm_registered_model(
            vllm_config=vllm_config, hf_config=config.text_config, prefix="language_model")
'''
BROKEN = '''
class BrokenForCausalLM(nn.Module):
    hf_to_vllm_mapper = make_mapper()

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
'''

#: a per-platform model package (vLLM 0.33 ``vllm/models/deepseek_v4/__init__.py``): the CUDA
#: class is the final ``else``; its mapper is built by a function with a branch on its argument
TOY_PLATFORM = '''
from vllm.platforms import current_platform

if current_platform.is_rocm():
    from .toy_rocm import ToyPlatformForCausalLM
elif current_platform.is_cpu():
    from .toy_rocm import ToyPlatformForCausalLM
else:
    from .toy_cuda import ToyPlatformForCausalLM
'''
TOY_CUDA = '''
import re
from .utils import AutoWeightsLoader, WeightsMapper

def _make_mapper(dtype):
    if dtype == "fp4":
        regex = {re.compile(r"\\.scale$"): ".weight_scale_inv"}
    else:
        regex = {re.compile(r"\\.scale$"): ".weight_scale"}
    return WeightsMapper(orig_to_new_prefix={"layers.": "model.layers."},
                         orig_to_new_regex=regex)

class ToyPlatformForCausalLM(nn.Module):
    hf_to_vllm_mapper = _make_mapper("fp4")

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
'''
TOY_ROCM = '''
from .utils import AutoWeightsLoader, WeightsMapper

class ToyPlatformForCausalLM(nn.Module):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix={"rocm.": "model."})

    def load_weights(self, weights):
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
'''


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    pkg = root / "vllm" / "model_executor" / "models"
    pkg.mkdir(parents=True)
    for name, text in {"registry": REGISTRY, "toy": TOY, "toy_moe": TOY_MOE,
                       "toy_vl": TOY_VL, "broken": BROKEN, "toy_platform": TOY_PLATFORM,
                       "toy_cuda": TOY_CUDA, "toy_rocm": TOY_ROCM, "utils": "",
                       "__init__": ""}.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    (root / "vllm" / "__init__.py").write_text("")
    (root / "vllm" / "model_executor" / "__init__.py").write_text("")
    return root


@pytest.fixture(scope="module")
def toy(toy_tree) -> dict:
    return extract_vllm(SourceTree(toy_tree))


def test_registry_and_kinds(toy):
    assert set(toy) == {"ToyForCausalLM", "ToyMoeForCausalLM", "ToyDerivedForCausalLM",
                        "BrokenForCausalLM", "ToyVLForConditionalGeneration",
                        "ToyAnyVLForConditionalGeneration", "ToyPlatformForCausalLM"}
    assert toy["ToyVLForConditionalGeneration"]["kind"] == "multimodal"
    assert toy["ToyForCausalLM"]["kind"] == "text"


def test_mapper_stacked_is_scoped_to_the_child_that_applies_it(toy):
    rows = toy["ToyForCausalLM"]["mapper"]["stacked"]
    assert [".q_proj", [".qkv_proj", "q"], "model."] in rows
    assert any("ToyModel.load_weights" in s for s in toy["ToyForCausalLM"]["sources"])
    # a subclass inherits its base's loader and children
    assert toy["ToyDerivedForCausalLM"]["mapper"] == toy["ToyForCausalLM"]["mapper"]


def test_stacked_list_extends_guards_experts_skips_and_routers(toy):
    f = toy["ToyMoeForCausalLM"]
    got = {(e["param"], e["weight"], e["shard"], e.get("if")) for e in f["stacked"]}
    assert ("gate_up_proj", "gate_proj", 0, None) in got
    assert ("fused_qkv_a_proj", "q_a_proj", 0, "self.config.q_lora_rank is not None") in got
    assert f["experts"] == {"gate": "w1", "down": "w2", "up": "w3"}
    assert "rotary_emb.inv_freq" in f["skip_substrings"]
    assert f["skip_spec_layers"] is True
    assert "gate" in f["unquantized"]


def test_multimodal_wrapper_records_its_language_model(toy):
    f = toy["ToyVLForConditionalGeneration"]
    assert f["language_model"]["architectures"] == ["ToyForCausalLM"]
    assert ["model.visual.", None] in f["mapper"]["prefix"]
    assert "architectures" not in toy["ToyAnyVLForConditionalGeneration"]["language_model"]


def test_platform_dispatch_reads_the_cuda_class_and_a_branching_mapper(toy):
    f = toy["ToyPlatformForCausalLM"]
    assert f["sources"] == ["vllm/model_executor/models/toy_cuda.py:"
                            "ToyPlatformForCausalLM.load_weights"]
    assert f["mapper"]["regex"] == [["\\.scale$", ".weight_scale_inv"]]
    assert f["mapper"]["prefix"] == [["layers.", "model.layers."]]
    assert "unresolved" not in f


def test_unreadable_mapper_is_a_reason_not_a_guess(toy):
    assert any("hf_to_vllm_mapper not readable" in u
               for u in toy["BrokenForCausalLM"]["unresolved"])


def test_build_merges_equal_facts_over_releases(toy):
    changed = {**toy, "ToyForCausalLM": {**toy["ToyForCausalLM"], "experts": {"gate": "x"}}}
    data = build("vllm", {"1.0.0": toy, "1.1.0": toy, "1.2.0": changed})
    rows = data["architectures"]["ToyForCausalLM"]
    assert [r[:2] for r in rows] == [["1.0.0", "1.1.0"], ["1.2.0", "1.2.0"]]
    assert [r[:2] for r in data["architectures"]["ToyMoeForCausalLM"]] == [["1.0.0", "1.2.0"]]


# -- the committed catalogue -------------------------------------------------------------


def test_committed_catalogue_plans_the_registry():
    archs = catalogue.architectures(V33)
    assert len(archs) >= 251
    planned = [a for a in archs if a.planned]
    assert len(planned) >= 226
    for a in archs:
        assert a.source.endswith("@vllm==0.33.0") and a.source.startswith("vllm/")
        assert a.planned == (a.why == "")


def test_every_release_from_0_18_is_read():
    cat = catalogue.load("vllm")
    assert cat is not None and cat.releases[0] == "0.18.0" and cat.releases[-1] == "0.33.0"
    assert catalogue.lookup(parse_engine("vllm==0.18.0"), "LlamaForCausalLM") is not None
    # DeepSeek-V4 arrived after 0.18: the older release does not serve it
    assert catalogue.lookup(parse_engine("vllm==0.18.0"), "DeepseekV4ForCausalLM") is None


@pytest.mark.parametrize("arch", sorted(FAMILIES))
def test_hand_written_families_agree_with_the_generated_facts(arch):
    """Each override's stacked entries are found in the engine's own code (as written or in
    a more specific spelling, e.g. ``.mlp.gate_proj``)."""
    entry = catalogue.lookup(V33, arch)
    assert entry is not None and entry.planned
    gen = catalogue.family(V33, entry, {"text_config": {"model_type": "qwen3_5_moe_text"}})
    for st in FAMILIES[arch].stacked:
        w, p = st.weight.strip("."), st.param.strip(".")
        assert any(g.shard == st.shard and g.weight.strip(".").endswith(w)
                   and g.param.strip(".").endswith(p) for g in gen.stacked), (arch, st)


# -- plans from generated families -------------------------------------------------------


def test_generated_family_fuses_qkv_and_gate_up(tmp_path):
    ckpt = read_checkpoint(dense("GraniteForCausalLM").write(tmp_path))
    fam = family_for(ckpt, V33)
    assert fam.generated and "GraniteForCausalLM" not in FAMILIES
    plan = plan_load(ckpt, V33)
    qkv = plan.param("model.layers.0.self_attn.qkv_proj.weight_scale")
    assert sorted(s.shard_id for s in qkv.sources) == ["k", "q", "v"]
    assert len(qkv.slots or ()) == 3 and None not in (qkv.slots or ())
    assert "model.layers.0.mlp.gate_up_proj.weight" in plan.params
    report = check(ckpt, CheckOptions(engine="vllm==0.33.0"))
    assert not [f for f in report.findings if f.severity.label == "error"], report.findings
    assert not report.skipped


def test_multimodal_inner_model_from_the_text_config(tmp_path):
    """Llava names no language model: vLLM takes transformers' causal-LM class of
    ``text_config.model_type`` (``VllmConfig.with_hf_config``)."""
    built = dense("LlavaForConditionalGeneration", prefix="model.language_model.",
                  config={"text_config": {"model_type": "llama", "num_hidden_layers": 2}})
    ckpt = read_checkpoint(built.write(tmp_path))
    plan = plan_load(ckpt, V33)
    assert "language_model.model.layers.1.self_attn.qkv_proj.weight" in plan.params
    assert "language_model.model.layers.1.mlp.gate_up_proj.weight_scale" in plan.params


def test_multimodal_without_a_known_text_model_is_not_plannable(tmp_path):
    built = dense("LlavaForConditionalGeneration", prefix="model.language_model.",
                  config={"text_config": {"model_type": "no-such-model"}})
    with pytest.raises(UnknownFormat) as exc:
        plan_load(read_checkpoint(built.write(tmp_path)), V33)
    assert exc.value.code == "QS103" and "language model" in exc.value.message


def test_architecture_the_release_does_not_serve(tmp_path):
    ckpt = read_checkpoint(dense("NoSuchModelForCausalLM").write(tmp_path))
    with pytest.raises(UnknownFormat) as exc:
        family_for(ckpt, V33)
    assert exc.value.code == "QS105" and "are not supported for now" in exc.value.message


def test_served_but_not_plannable_says_why(tmp_path):
    arch = next(a for a in catalogue.architectures(V33) if not a.planned)
    ckpt = read_checkpoint(dense(arch.name).write(tmp_path))
    with pytest.raises(UnknownFormat) as exc:
        family_for(ckpt, V33)
    assert exc.value.code == "QS103" and arch.why in exc.value.message


def test_deepseek_mtp_layers_are_skipped_by_the_main_model(tmp_path):
    built = dense("DeepseekV3ForCausalLM", layers=3, config={"num_hidden_layers": 2,
                                                             "num_nextn_predict_layers": 1})
    ckpt = read_checkpoint(built.write(tmp_path))
    plan = plan_load(ckpt, V33)
    assert any(n.startswith("model.layers.2.") for n in plan.skipped)
    assert not any(p.startswith("model.layers.2.") for p in plan.params)
    assert "model.layers.1.mlp.gate_up_proj.weight" in plan.params


def test_data_file_is_valid_json_with_sources():
    path = Path(catalogue.__file__).parent / "data" / "vllm.json"
    raw = json.loads(path.read_text())
    assert raw["schema"] == 1 and raw["generator"].startswith("python -m qscale.engines")
    for fid, facts in raw["facts"].items():
        assert facts["module"].startswith("vllm/"), fid


def test_kimi_vision_tower_is_built_unquantized_under_compressed_tensors(tmp_path):
    """Kimi-K2.5 builds its vision tower and projector with
    ``_maybe_ignore_quant_config(quant_config)``: None under compressed-tensors, so BF16
    tensors there are right even when ``targets: ["Linear"]`` covers them."""
    built = dense("KimiK25ForConditionalGeneration", scheme="ct-w4a16",
                  prefix="language_model.model.", lm_head="language_model.lm_head",
                  config={"text_config": {"model_type": "kimi_k2", "num_hidden_layers": 2}})
    g = torch.Generator().manual_seed(1)
    built.tensors.update(bf16("vision_tower.encoder.blocks.0.wqkv", 384, 128, g))
    built.tensors.update(bf16("mm_projector.proj.0", 128, 128, g))
    ckpt = read_checkpoint(built.write(tmp_path))
    quant = resolve_quantization(ckpt, V33)
    for name in ("vision_tower.encoder.blocks.0.wqkv", "mm_projector.proj.0"):
        assert quant.modules[name].scheme is None, quant.modules[name].resolution
        assert "without a quantization config" in quant.modules[name].resolution.reason
    assert quant.modules["language_model.model.layers.0.self_attn.q_proj"].scheme is not None
    report = check(ckpt, CheckOptions(engine="vllm==0.33.0"))
    assert not [f for f in report.findings if f.code == "QS202"], report.findings


def test_vision_tower_stays_quantized_under_other_methods(tmp_path):
    """The near miss: under ModelOpt (not compressed-tensors) Kimi quantizes the tower."""
    arch = catalogue.lookup(V33, "KimiK25ForConditionalGeneration")
    assert arch is not None
    fam = catalogue.family(V33, arch, {})
    assert fam.child_unquantized("vision_tower.encoder.blocks.0.wqkv", "compressed-tensors")
    assert fam.child_unquantized("vision_tower.encoder.blocks.0.wqkv", "modelopt") is None
    assert fam.child_unquantized("language_model.model.layers.0.mlp.down_proj",
                                 "compressed-tensors") is None


def test_changes_per_release_follow_from_the_ranges():
    cat = catalogue.load("vllm")
    assert cat is not None
    found = catalogue.changes("vllm")
    assert [c.release for c in found] == list(cat.releases[1:])
    for prev, c in zip(cat.releases, found, strict=False):
        for arch in c.added:
            assert catalogue.lookup(parse_engine(f"vllm=={prev}"), arch) is None
            assert catalogue.lookup(parse_engine(f"vllm=={c.release}"), arch) is not None
        for arch in c.changed:
            old = catalogue.lookup(parse_engine(f"vllm=={prev}"), arch)
            new = catalogue.lookup(parse_engine(f"vllm=={c.release}"), arch)
            assert old is not None and new is not None and old.facts != new.facts


@pytest.mark.parametrize(("arch", "code", "words"), [
    # in transformers, not in vLLM's registry: vLLM's Transformers backend takes it
    ("AXK2ForCausalLM", "QS103", "Transformers backend"),
    # listed in vLLM's own _TRANSFORMERS_SUPPORTED_MODELS
    ("HunYuanMoEV1ForCausalLM", "QS103", "Transformers backend"),
    # vLLM's _PREVIOUSLY_SUPPORTED_MODELS: its own sentence
    ("ArcticForCausalLM", "QS105", "was supported in vLLM until v0.28.0"),
    ("BartForConditionalGeneration", "QS105", "install the plugin"),
])
def test_architectures_outside_the_native_registry(tmp_path, arch, code, words):
    ckpt = read_checkpoint(dense(arch).write(tmp_path))
    with pytest.raises(UnknownFormat) as exc:
        family_for(ckpt, V33)
    assert exc.value.code == code and words in exc.value.message


def test_remote_code_config_goes_to_the_transformers_backend(tmp_path):
    auto_map = {"AutoConfig": "configuration_x.XConfig",
                "AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    built = dense("MyOwnForCausalLM", config={"auto_map": auto_map})
    with pytest.raises(UnknownFormat) as exc:
        family_for(read_checkpoint(built.write(tmp_path)), V33)
    assert exc.value.code == "QS103" and "auto_map" in exc.value.message


@pytest.mark.parametrize(("short", "full"), [("0.20", "0.20.0"), ("0.33", "0.33.0"),
                                             ("0", "0.0.0")])
def test_short_version_is_the_zero_padded_release(short, full):
    # PEP 440: 0.20 == 0.20.0. Compared as (0, 20) it sorted before (0, 20, 0), so
    # `--engine vllm==0.20` read 0.19.1's catalogue facts
    cat = catalogue.load("vllm")
    assert cat is not None
    a, b = parse_engine(f"vllm=={short}"), parse_engine(f"vllm=={full}")
    assert a.version == b.version
    assert cat.release_for(a.version) == cat.release_for(b.version)


def test_short_version_range_includes_its_release():
    # `<=0.20` holds 0.20.0 (it used to pick 0.19.1)
    spec = parse_engine("vllm>=0.19,<=0.20")
    assert spec.version == (0, 20, 0)
