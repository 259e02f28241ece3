"""DeepSeek-V4 (``DeepseekV4ForCausalLM``): the family (vLLM's CUDA loader) and the
``deepseek_v4_fp8`` format, on real safetensors checkpoints in DeepSeek's release naming."""

from __future__ import annotations

import re

import pytest
import torch
from builders import deepseek_v4, dsv4_mxfp4

from qscale import CheckOptions, check, plan_load, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat

ENGINE = "vllm==0.33.0"


def release(seed: int = 0):
    """deepseek-ai's format: block-FP8 Linear layers (E8M0 ``scale``), MXFP4 routed experts."""
    return deepseek_v4("dsv4-fp8", experts="dsv4-mxfp4", seed=seed)


def flash_base():
    """``expert_dtype: fp8`` (DeepSeek-V4-Flash-Base): FP8 experts, every scale F32."""
    b = deepseek_v4("dsv4-fp8")
    for name in [n for n in b.tensors if n.endswith(".scale")]:
        b.tensors[name] = b.tensors[name].float()
    b.config["expert_dtype"] = "fp8"
    return b


def errors(built, tmp_path, engine=ENGINE):
    report = check(read_checkpoint(built.write(tmp_path)), CheckOptions(engine=engine))
    return [f for f in report.findings if f.severity.name == "ERROR"]


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.26.0", "vllm==0.20.0"])
def test_release_format_is_clean(tmp_path, engine):
    report = check(read_checkpoint(release().write(tmp_path)), CheckOptions(engine=engine))
    # info only: the FP8 shared expert stays a separate MLP next to the MXFP4 experts
    assert {f.code for f in report.findings} == {"QS601"} and report.skipped == ()


def test_release_format_exits_0(tmp_path, run_cli):
    path = release().write(tmp_path)
    r = run_cli("check", str(path), "--engine", ENGINE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_scales_load_where_the_mapper_renames_them(tmp_path):
    plan = plan_load(read_checkpoint(release().write(tmp_path)), ENGINE)
    fused = plan.params["model.layers.1.attn.fused_wqa_wkv.weight_scale_inv"]
    assert {(s.source, s.shard_id) for s in fused.sources} == {
        ("layers.1.attn.wq_a.scale", 0), ("layers.1.attn.wkv.scale", 1)}
    experts = next(p for n, p in plan.params.items()
                   if n.startswith("model.layers.1.ffn.experts.") and n.endswith("w2_weight_scale"))
    assert {(s.source, s.expert) for s in experts.sources} == {
        ("layers.1.ffn.experts.0.w2.scale", 0), ("layers.1.ffn.experts.1.w2.scale", 1)}
    shared = plan.params["model.layers.0.ffn.shared_experts.down_proj.weight_scale_inv"]
    assert [s.source for s in shared.sources] == ["layers.0.ffn.shared_experts.w2.scale"]
    assert not any(n.startswith(("mtp.", "model.mtp.")) for n in plan.params)


@pytest.mark.parametrize("module", ["layers.1.attn.wo_a", "layers.0.attn.wkv",
                                    "layers.1.ffn.experts.1.w2", "layers.0.ffn.shared_experts.w3",
                                    "layers.1.attn.indexer.wq_b"])
def test_a_missing_scale_names_its_module(tmp_path, module):
    found = errors(release().drop(rf"^{module}\.scale$"), tmp_path)
    assert [f.code for f in found] == ["QS201"]
    assert f"`{module}`" in found[0].message


def test_the_mtp_layer_is_checked_but_not_planned(tmp_path):
    """vLLM's mapper drops ``mtp.*`` from the main model; the draft model (``nvidia/mtp.py``)
    loads it under the same config, so its tensors are checked all the same."""
    found = errors(release().drop(r"^mtp\.0\.attn\.wo_b\.scale$"), tmp_path)
    assert [f.code for f in found] == ["QS201"] and "`mtp.0.attn.wo_b`" in found[0].message


@pytest.mark.parametrize(("tensor", "dtype", "code", "expected"), [
    ("layers.0.attn.wq_b.scale", torch.bfloat16, "QS301", "is BF16, expected F8_E8M0"),
    ("layers.0.ffn.experts.0.w1.scale", torch.float32, "QS301", "is F32, expected F8_E8M0 or U8"),
    ("layers.1.attn.wq_a.weight", torch.bfloat16, "QS202", "`layers.1.attn.wq_a` is stored as"
                                                           " BF16 but resolves to FP8 block"),
])
def test_a_wrong_dtype_is_an_error(tmp_path, tensor, dtype, code, expected):
    found = errors(release().retype(rf"^{tensor.replace('.', '[.]')}$", dtype), tmp_path)
    assert [f.code for f in found] == [code]
    assert expected in found[0].message


@pytest.mark.parametrize("engine", [ENGINE, "vllm==0.21.0", "vllm==0.20.1"])
def test_flash_base_fp8_experts_are_clean(tmp_path, engine):
    """vLLM reads ``expert_dtype`` from 0.20.1 (``model_executor/models/deepseek_v4.py``)."""
    assert errors(flash_base(), tmp_path, engine) == []
    assert errors(flash_base().drop(r"^layers\.1\.ffn\.experts\.1\.w3\.scale$"),
                  tmp_path / "bad", engine)


def test_flash_base_with_e8m0_scales_is_an_error(tmp_path):
    """``expert_dtype: fp8`` turns ``is_scale_e8m0`` off: the Linear scales are F32."""
    b = flash_base()
    b.tensors["layers.0.attn.wo_b.scale"] = release().tensors["layers.0.attn.wo_b.scale"]
    found = errors(b, tmp_path)
    assert [f.code for f in found] == ["QS301"] and "F32" in found[0].message


def test_fp8_experts_before_expert_dtype_are_not_checked(tmp_path):
    with pytest.raises(UnknownFormat, match=r"0\.20\.0 ignores it"):
        errors(flash_base(), tmp_path, "vllm==0.20.0")


def test_an_unknown_expert_dtype_is_refused(tmp_path):
    b = release()
    b.config["expert_dtype"] = "int4"
    with pytest.raises(ConfigError, match="Unsupported DeepSeek V4 expert_dtype"):
        errors(b, tmp_path)


def test_moe_quant_algo_is_read_upper_cased(tmp_path):
    """vLLM upper-cases ``moe_quant_algo``: ``nvfp4`` builds NVFP4 experts, which the
    release's MXFP4 experts are not."""
    b = release().set_config("/quantization_config/moe_quant_algo", "nvfp4")
    found = errors(b, tmp_path)
    assert {f.code for f in found} == {"QS201", "QS301"}
    assert any("`layers.1.ffn.experts.0.w1.weight_scale_2` is missing" in f.message
               for f in found)


def test_sglang_is_not_modelled(tmp_path):
    with pytest.raises(UnknownFormat, match="sglang"):
        errors(release(), tmp_path, "sglang==0.5.12")


@pytest.mark.parametrize("engine", ["vllm==0.19.1", "vllm==0.18.0"])
@pytest.mark.parametrize("method", ["fp8", "deepseek_v4_fp8"])
def test_releases_before_deepseek_v4_fp8_config_are_not_modelled(tmp_path, engine, method):
    """vLLM 0.19.1 has no DeepseekV4FP8Config: QS102 (exit 2), not findings on the release's
    names as if it had one."""
    b = release().set_config("/quantization_config/quant_method", method)
    with pytest.raises(UnknownFormat, match=rf"{engine} has no DeepseekV4FP8Config"):
        errors(b, tmp_path, engine)


def test_release_format_before_0_20_exits_2(tmp_path, run_cli):
    r = run_cli("check", str(release().write(tmp_path)), "--engine", "vllm==0.19.1")
    assert r.returncode == 2 and "QS102" in r.stderr, r.stdout + r.stderr
    assert "QS202" not in r.stdout


def test_quant_method_deepseek_v4_fp8_reads_the_same(tmp_path):
    b = release().set_config("/quantization_config/quant_method", "deepseek_v4_fp8")
    assert errors(b, tmp_path) == []
    assert errors(b.drop(r"^layers\.0\.attn\.wq_a\.scale$"), tmp_path)


def test_compressed_tensors_block_fp8_is_clean_and_checked(tmp_path):
    """An llm-compressor block-FP8 checkpoint in the release naming (``weight_scale``)."""
    b = deepseek_v4("ct-fp8-block")
    assert errors(b, tmp_path) == []
    found = errors(b.drop(r"^layers\.1\.ffn\.experts\.0\.w3\.weight_scale$"), tmp_path)
    assert [f.code for f in found] == ["QS201"]
    assert "`layers.1.ffn.experts.0.w3`" in found[0].message


def test_router_and_compressors_are_built_unquantized(tmp_path):
    """``ffn.gate``, the compressors and the indexer's ``weights_proj`` get no quantization
    config in vLLM: a config that would quantize them does not."""
    b = deepseek_v4("ct-fp8-block").set_config("/quantization_config/ignore", ["head", "embed"])
    assert errors(b, tmp_path) == []


def test_tp_2_as_vllm_splits_it(tmp_path):
    """At TP=2 the tiny model's 128-row projections would cut a 128 block: ``fused_wqa_wkv``
    is replicated (``disable_tp=True``), and the shared expert's intermediate is padded to
    whole blocks per rank from 0.26.0 (``_pad_shared_expert_weight``), not in 0.20.0."""
    from qscale.layout import Deployment

    ckpt = read_checkpoint(release().write(tmp_path))

    def bad(engine):
        report = check(ckpt, CheckOptions(engine=engine, deployment=Deployment(tp=2)))
        return [f for f in report.findings if f.severity.name == "ERROR"]

    assert bad(ENGINE) == []
    [old] = bad("vllm==0.20.0")
    assert old.code == "QS503" and "shared_experts.down_proj" in old.message


@pytest.mark.parametrize("engine", ["vllm==0.20.0", "vllm==0.21.0", "vllm==0.22.1"])
@pytest.mark.parametrize(("scheme", "observed"), [
    ("ct-fp8-block", "a `quantization_config` without `scale_fmt`"),
    ("bf16", "no `quantization_config`"),
])
def test_a_config_without_scale_fmt_fails_to_build_before_0_23(tmp_path, engine, scheme,
                                                                observed):
    """vLLM 0.20.0-0.22.1 build DeepSeek-V4's attention with
    ``config.quantization_config["scale_fmt"]``: a compressed-tensors or BF16 checkpoint
    does not load there (QS101, exit 2); 0.23.0 on set ue8m0 themselves."""
    path = deepseek_v4(scheme).write(tmp_path)
    with pytest.raises(ConfigError, match="scale_fmt") as exc:
        check(read_checkpoint(path), CheckOptions(engine=engine))
    assert observed in exc.value.message and engine in exc.value.message
    for later in ("vllm==0.23.0", ENGINE):
        report = check(read_checkpoint(path), CheckOptions(engine=later))
        assert [f for f in report.findings if f.severity.name == "ERROR"] == []


def test_the_release_format_names_scale_fmt_and_loads_on_0_20(tmp_path, run_cli):
    path = release().write(tmp_path)
    assert errors(release(), tmp_path / "b", "vllm==0.20.0") == []
    r = run_cli("check", str(path), "--engine", "vllm==0.22.1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_vl_wrapper_is_not_planned(tmp_path):
    """``DeepseekV4ForConditionalGeneration`` builds its mapper at run time from the text
    model's: not composed from the text family (QS103, the load-plan rules do not run)."""
    b = deepseek_v4("ct-fp8-block")  # under deepseek_v4_fp8 the format says so first (QS102)
    b.config["architectures"] = ["DeepseekV4ForConditionalGeneration"]
    report = check(read_checkpoint(b.write(tmp_path)), CheckOptions(engine=ENGINE))
    assert report.skipped and all("QS103" in why and "built at run time" in why
                                  for _, why in report.skipped)


def test_sglang_loading_is_not_planned(tmp_path):
    """The family is vLLM's loader: SGLang's load of DeepSeek-V4 is QS103 (partial)."""
    report = check(read_checkpoint(deepseek_v4("ct-fp8-block").write(tmp_path)),
                   CheckOptions(engine="sglang==0.5.12"))
    assert report.skipped and all("QS103" in why and "sglang" in why
                                  for _, why in report.skipped)


# --------------------------------------------------------------------------- NVFP4 experts


def nvfp4_experts():
    """NVIDIA's re-quantization: the release's block-FP8 Linear layers, ModelOpt NVFP4
    routed experts (``moe_quant_algo: NVFP4`` in the fp8 config)."""
    return deepseek_v4("dsv4-fp8", experts="modelopt-nvfp4").set_config(
        "/quantization_config/moe_quant_algo", "NVFP4")


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.22.0"])
def test_nvfp4_experts_are_clean(tmp_path, engine):
    report = check(read_checkpoint(nvfp4_experts().write(tmp_path)), CheckOptions(engine=engine))
    assert [f for f in report.findings if f.severity.name == "ERROR"] == []
    assert report.skipped == ()


def test_nvfp4_block_scales_under_deepseeks_name_are_clean(tmp_path):
    """The ``fp4`` mapper renames an expert's ``.scale`` to ``weight_scale``: vLLM loads the
    NVFP4 block scale under either name; a wrong one is still checked."""
    b = nvfp4_experts()
    for n in [n for n in b.tensors if re.search(r"\.experts\.\d+\.w[123]\.weight_scale$", n)]:
        b.tensors[n.removesuffix(".weight_scale") + ".scale"] = b.tensors.pop(n)
    assert "layers.1.ffn.experts.0.w1.scale" in b.tensors
    assert errors(b, tmp_path / "clean") == []
    name = "layers.1.ffn.experts.0.w1.scale"
    b.tensors[name] = release().tensors[name]  # MXFP4's E8M0 [out, in/32]
    found = errors(b, tmp_path / "bad")
    assert [f.code for f in found] == ["QS301"] and f"`{name}`" in found[0].message


def test_nvfp4_experts_load_into_the_modelopt_parameters(tmp_path):
    plan = plan_load(read_checkpoint(nvfp4_experts().write(tmp_path)), ENGINE)
    for param in ("w13_weight_scale", "w13_weight_scale_2", "w13_input_scale",
                  "w2_weight_scale_2", "w2_input_scale"):
        [p] = [p for n, p in plan.params.items()
               if n.startswith("model.layers.1.ffn.experts.") and n.endswith(f".{param}")]
        leaf = param.split("_", 1)[1]
        expected = {f"layers.1.ffn.experts.{e}.{w}.{leaf}" for e in (0, 1)
                    for w in (("w1", "w3") if param.startswith("w13") else ("w2",))}
        assert {s.source for s in p.sources} == expected


@pytest.mark.parametrize(("tensor", "codes"), [
    # w3's slot of w13_weight_scale_2 stays unwritten: the kernel uses w1's (QS403)
    ("layers.1.ffn.experts.0.w3.weight_scale_2", ["QS201", "QS403"]),
    ("layers.0.ffn.experts.1.w2.input_scale", ["QS201"]),
])
def test_nvfp4_expert_without_its_global_scales_is_an_error(tmp_path, tensor, codes):
    found = errors(nvfp4_experts().drop(rf"^{tensor.replace('.', '[.]')}$"), tmp_path)
    assert sorted(f.code for f in found) == codes
    missing = next(f for f in found if f.code == "QS201")
    assert f"`{tensor}` is missing" in missing.message


def test_nvfp4_expert_with_e8m0_block_scales_is_an_error(tmp_path):
    """ModelOpt's NVFP4 block scales are F8_E4M3; MXFP4's E8M0 scale in their place is not
    what ``w13_weight_scale`` (float8_e4m3fn) holds."""
    b = nvfp4_experts()
    b.tensors["layers.1.ffn.experts.0.w1.weight_scale"] = release().tensors[
        "layers.1.ffn.experts.0.w1.scale"]
    found = errors(b, tmp_path)
    assert [f.code for f in found] == ["QS301"]
    assert "`layers.1.ffn.experts.0.w1.weight_scale` is F8_E8M0, expected F8_E4M3" in (
        found[0].message)


def test_nvfp4_expert_with_group_32_scales_is_an_error(tmp_path):
    """One block scale per 16 inputs (``ModelOptNvFp4Config(group_size=16)``), not 32."""
    b = nvfp4_experts()
    name = "layers.1.ffn.experts.1.w2.weight_scale"
    b.tensors[name] = b.tensors[name][:, ::2].contiguous()
    found = errors(b, tmp_path)
    assert [f.code for f in found] == ["QS302"] and f"`{name}`" in found[0].message


@pytest.mark.parametrize("engine", ["vllm==0.21.0", "vllm==0.20.0"])
def test_nvfp4_experts_before_moe_quant_algo_are_built_mxfp4(tmp_path, engine):
    """vLLM 0.20.0 and 0.21.0 do not read ``moe_quant_algo``: they build MXFP4 experts, whose
    ``scale`` the NVFP4 experts do not have."""
    found = errors(nvfp4_experts(), tmp_path, engine)
    assert "QS201" in {f.code for f in found}
    missing = next(f for f in found if f.code == "QS201")
    assert "not read before vLLM 0.22.0" in missing.message


def test_nvfp4_config_ignore_keeps_experts_mxfp4_from_0_32(tmp_path):
    """From 0.32.0 a fused expert layer that the config's ``ignore`` matches (fnmatch) stays
    MXFP4 (``_is_nvfp4_expert_layer``); 0.31.0 builds it NVFP4 all the same."""
    b = nvfp4_experts().set_config("/quantization_config/ignore", ["layers.1.ffn.experts"])
    for e in range(2):
        for w, out, inp in (("w1", 128, 128), ("w3", 128, 128), ("w2", 128, 128)):
            name = f"layers.1.ffn.experts.{e}.{w}"
            for leaf in ("weight", "weight_scale", "weight_scale_2", "input_scale"):
                del b.tensors[f"{name}.{leaf}"]
            b.tensors.update(dsv4_mxfp4(name, out, inp, torch.Generator().manual_seed(e)))
    assert errors(b, tmp_path, "vllm==0.32.0") == []
    assert errors(b, tmp_path / "old", "vllm==0.31.0")


def test_mxfp8_linear_layout_is_not_modelled(tmp_path):
    b = release().set_config("/quantization_config/weight_block_size", [32, 32])
    with pytest.raises(UnknownFormat, match=r"MXFP8"):
        errors(b, tmp_path)


# --------------------------------------------------------------------------- DeepSeek-V4.1


def test_deepseek_v41_is_not_planned(tmp_path):
    """``DeepseekV41ForCausalLM``'s loader differs from V4's (a VL wrapper with a run-time
    mapper, Engram modules): QS103 with why, not DeepSeek-V4's family."""
    b = deepseek_v4("ct-fp8-block")
    b.config["architectures"] = ["DeepseekV41ForCausalLM"]
    b.config["model_type"] = "deepseek_v41"
    report = check(read_checkpoint(b.write(tmp_path)), CheckOptions(engine=ENGINE))
    assert report.skipped and all("QS103" in why and "Engram" in why
                                  for _, why in report.skipped)


def test_deepseek_v41_fp8_config_is_not_read_as_v4s(tmp_path):
    """vLLM hands a ``deepseek_v41`` model's fp8 config to the same DeepseekV4FP8Config:
    QS102, not a plain Fp8Config check of names it does not use."""
    b = release()
    b.config["architectures"] = ["DeepseekV41ForCausalLM"]
    b.config["model_type"] = "deepseek_v41"
    with pytest.raises(UnknownFormat, match="DeepseekV4ForCausalLM only"):
        errors(b, tmp_path)


# --------------------------------------------------------------------------- scale values


def _e8m0_bytes(b, name):
    return b.tensors[name].view(torch.uint8).clone()


@pytest.mark.parametrize("tensor", [
    "layers.1.ffn.experts.1.w2.scale",  # 512 values: the deep scan
    "layers.0.attn.wq_b.scale",  # 2 values: decoded with the header
])
def test_a_nan_e8m0_scale_is_an_error(tmp_path, tensor):
    b = release()
    assert errors(b, tmp_path / "clean") == []
    raw = _e8m0_bytes(b, tensor)
    raw.view(-1)[-1] = 0xFF
    b.tensors[tensor] = raw.view(torch.float8_e8m0fnu)
    found = errors(b, tmp_path / "bad")
    assert [f.code for f in found] == ["QS303"]
    assert f"`{tensor}`" in found[0].message and "NaN (E8M0 byte 0xFF)" in found[0].message


def test_a_zero_f32_block_scale_is_an_error(tmp_path):
    """Flash-Base's F32 ``.scale`` tensors are read too: a zero block scale zeroes its tile."""
    b = flash_base()
    b.tensors["layers.1.ffn.experts.0.w1.scale"][0, 0] = 0.0
    found = errors(b, tmp_path)
    assert [f.code for f in found] == ["QS303"]
    assert "`layers.1.ffn.experts.0.w1.scale`" in found[0].message and "= 0" in found[0].message


def test_scale_is_read_as_a_scale_only_where_the_mapper_renames_it(tmp_path):
    """``scale`` joins the names the deep scan reads for a ``deepseek_v4_fp8`` config only:
    elsewhere a ``.scale`` need not be a quantization scale (a norm's, say)."""
    from qscale.scale_scan import SCALES, scale_names

    assert "scale" in scale_names(release().config)
    assert scale_names(deepseek_v4("ct-fp8-block").config) == SCALES


def modelopt_file(scale_fmt: str | None):
    """A DeepSeek-V4 checkpoint whose only quantization config is a ModelOpt
    ``hf_quant_config.json`` (every module excluded: it loads as stored, BF16)."""
    b = deepseek_v4("bf16")
    q: dict = {"producer": {"name": "modelopt"},
               "quantization": {"quant_algo": "FP8", "exclude_modules": ["*"]}}
    if scale_fmt is not None:
        q["scale_fmt"] = scale_fmt
    b.extra_files["hf_quant_config.json"] = q
    return b


@pytest.mark.parametrize("engine", ["vllm==0.20.0", "vllm==0.22.1"])
def test_scale_fmt_is_read_where_vllm_reads_it(tmp_path, engine):
    """vLLM's ``get_config`` (0.20.0-0.33.0 ``transformers_utils/config.py``) sets
    ``hf_config.quantization_config`` to ``hf_quant_config.json`` where config.json has none,
    and DeepSeek-V4's attention reads ``scale_fmt`` from that: present there, the model
    builds; absent, the refusal names that file."""
    path = modelopt_file("ue8m0").write(tmp_path / "with")
    report = check(read_checkpoint(path), CheckOptions(engine=engine))
    assert not report.findings and not report.skipped
    path = modelopt_file(None).write(tmp_path / "without")
    with pytest.raises(ConfigError, match="scale_fmt") as exc:
        check(read_checkpoint(path), CheckOptions(engine=engine))
    assert exc.value.message.startswith("hf_quant_config.json: ")
    assert "a `quantization_config` without `scale_fmt`" in exc.value.message
    assert "hf_quant_config.json" in (exc.value.hint or "")
    report = check(read_checkpoint(path), CheckOptions(engine=ENGINE))  # sets ue8m0 itself
    assert not report.findings
