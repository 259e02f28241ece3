"""Deployment options, the engines' layouts, and `qscale layouts` — including the TP × EP answer
for the real Qwen3.5-397B-A17B-FP8 config, derived here from its numbers and the engine facts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from budget import FULL
from replicas import truncate

from qscale import read_checkpoint
from qscale.constraints import problems
from qscale.engines import parse_engine
from qscale.engines.loader import plan_load
from qscale.errors import UsageError
from qscale.formats import resolve_quantization
from qscale.layout import Deployment, find_backend, resolve
from qscale.sharding import read_shapes
from qscale.supported import supported_layouts

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "fixtures" / "real"
QWEN397_CONFIG = Path("/work/shared/realworld/qwen3.5-397b-a17b-fp8/config.json")


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"disable_shared_experts_fusion": True, "enforce_shared_experts_fusion": True},
         "contradict each other"),
        ({"tp": 2, "sequence_parallel_moe": True}, "needs expert parallel, --tp > 1 and --dp > 1"),
        ({"tp": 0}, "parallel sizes start at 1"),
    ],
)
def test_contradictory_options(kwargs, text):
    with pytest.raises(UsageError, match=text):
        Deployment(**kwargs)


def test_vllm_expert_parallel_spans_tp_times_dp():
    vllm = parse_engine("vllm==0.20.0")
    lay = resolve(Deployment(tp=2, dp=4, enable_expert_parallel=True), vllm)
    assert (lay.tp, lay.ep, lay.moe_tp, lay.sequence_parallel) == (2, 8, 1, True)
    lay = resolve(Deployment(tp=2, dp=4), vllm)  # no EP: every expert split over TP x DP
    assert (lay.ep, lay.moe_tp, lay.sequence_parallel) == (1, 8, False)
    with pytest.raises(UsageError, match="TP × DP = 8"):
        resolve(Deployment(tp=2, dp=4, ep=4), vllm)
    pplx = Deployment(tp=2, dp=2, enable_expert_parallel=True, a2a_backend="pplx")
    assert not resolve(pplx, vllm).sequence_parallel  # pplx takes no sequence-parallel input


def test_sglang_splits_experts_inside_the_tp_group():
    sglang = parse_engine("sglang==0.5.12")
    lay = resolve(Deployment(tp=8, ep=4), sglang)
    assert (lay.ep, lay.moe_tp) == (4, 2)
    assert resolve(Deployment(tp=8, ep=2, a2a_backend="deepep"), sglang).ep == 8
    with pytest.raises(UsageError, match="does not divide --tp 2"):
        resolve(Deployment(tp=2, ep=4), sglang)
    with pytest.raises(UsageError, match="vLLM option"):
        resolve(Deployment(tp=2, dp=2, ep=2, sequence_parallel_moe=True), sglang)


def test_backends_in_each_engines_vocabulary():
    assert find_backend("sglang", "allreduce").name == "none"
    assert find_backend("vllm", "allreduce").name == "allgather_reducescatter"
    assert find_backend("sglang", "ascend-fuseep").replicates_shared_expert
    assert find_backend("vllm", "deepep").deepep_class
    with pytest.raises(UsageError, match="not a sglang all-to-all backend") as exc:
        find_backend("sglang", "pplx")
    assert exc.value.hint.startswith("sglang backends: none, deepep")


def test_check_cli_rejects_contradictory_flags(run_cli):
    ckpt = str(REAL / "llmc-qwen3_5_moe-FP8")
    for flags in (
        ["--disable-shared-experts-fusion", "--enforce-shared-experts-fusion"],
        ["--tp", "2", "--ep", "4"],
        ["--sequence-parallel-moe", "--tp", "2"],
        ["--a2a-backend", "nope"],
    ):
        r = run_cli("check", ckpt, *flags)
        assert r.returncode == 2, (flags, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and lines[1].startswith("hint: ")
        assert "Traceback" not in r.stderr


def test_check_cli_layout_flags_reach_the_rules(run_cli):
    r = run_cli("check", str(REAL / "llmc-qwen3_5_moe-FP8_DYNAMIC"), "--engine", "vllm==0.19.1",
                "--tp", "2", "--dp", "2", "--enable-expert-parallel", "--select", "QS801",
                "--format", "json")
    assert r.returncode == 1, r.stderr
    [f] = json.loads(r.stdout)["findings"]
    assert f["code"] == "QS801" and "vLLM PR #39181" in f["message"]


# --------------------------------------------------------------------------- qscale layouts


def test_layouts_cli_json_matches_the_library(run_cli):
    ckpt = REAL / "llmc-qwen3_5_moe-W4A16"
    r = run_cli("layouts", str(ckpt), "--max-tp", "4", "--max-ep", "4", "--format", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    table = supported_layouts(read_checkpoint(ckpt), max_tp=4, max_ep=4)
    assert data["tp"] == [1, 2, 4] and data["ep"] == [1, 2, 4]
    assert {(c["tp"], c["ep"]): c["loads"] for c in data["cells"]} == {
        (c.tp, c.ep): c.loads for c in table.cells
    }
    # W4A16 group 128: every row-parallel input (128) must stay whole per rank -> TP=1 only
    assert {(c["tp"], c["ep"]) for c in data["cells"] if c["loads"]} == {(1, 1), (1, 2), (1, 4)}
    tp2 = next(c for c in data["cells"] if (c["tp"], c["ep"]) == (2, 1))
    assert {e["code"] for e in tp2["errors"]} == {"QS505"}
    not_vllm = next(c for c in data["cells"] if (c["tp"], c["ep"]) == (4, 2))
    assert not not_vllm["runs"] and "TP × DP" in not_vllm["why_not"]


def test_layouts_cli_console(run_cli):
    r = run_cli("layouts", str(REAL / "llmc-qwen3_5_moe-FP8_BLOCK"), "--engine",
                "sglang==0.5.12", "--max-tp", "2", "--max-ep", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("-: not a sglang layout)")
    assert lines[2].split() == ["1", "ok", "-"]  # TP=1: EP=2 does not divide TP
    assert "error QS503" in r.stdout


def test_layouts_say_when_no_layout_can_load(run_cli):
    """A checkpoint the engine refuses whatever the layout (gpt-oss per-expert export on vLLM
    0.20.0, QS402) has no loading cell; the near miss on 0.32.0 loads but skips weights (QS404)."""
    ckpt = str(REAL / "llmc-gpt_oss-W4A16")
    for engine, text in (("vllm==0.20.0", "w2_bias"), ("vllm==0.32.0", "QS404")):
        r = run_cli("layouts", ckpt, "--engine", engine, "--max-tp", "2", "--max-ep", "2",
                    "--format", "json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert data["refused"] and any(text in why for why in data["refused"])
        assert not any(c["loads"] for c in data["cells"])
    clean = supported_layouts(read_checkpoint(REAL / "base-gpt_oss"), "vllm==0.32.0",
                              max_tp=1, max_ep=1)
    assert clean.refused == () and clean.cell(1, 1).loads
    r = run_cli("layouts", ckpt, "--engine", "vllm==0.20.0", "--max-tp", "1", "--max-ep", "1")
    assert "refused in every layout" in r.stdout and r.stdout.splitlines()[2].split() == ["1", "x"]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_read", ROOT / "bench" / "bench_read.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: decoder layers the Qwen3.5-397B copy keeps: 4 holds both layer kinds (3 Gated DeltaNet, 1
#: full attention) and the MTP layer, and every layer of a kind has the same shapes, so each
#: (TP, EP) answer is the 60-layer one; QSCALE_FUZZ=full builds all 60 (185k tensors)
QWEN397_LAYERS = None if FULL else 4


@pytest.fixture(scope="module")
def qwen397(tmp_path_factory):
    """Headers-only copy of Qwen3.5-397B-A17B-FP8: every tensor with its real name, dtype and
    shape (built by bench/bench_read.py from the real config.json, cut to ``QWEN397_LAYERS``
    decoder layers by replicas.truncate), files sparse (no data)."""
    b = _bench()
    out = tmp_path_factory.mktemp("qwen397")
    config = json.loads(QWEN397_CONFIG.read_text())
    if QWEN397_LAYERS is None:
        (out / "config.json").write_text(QWEN397_CONFIG.read_text())
        n_files = 94
    else:
        config, _ = truncate(config, {}, QWEN397_LAYERS)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        n_files = 8
    weight_map = {}
    shards = b.shard(b.build_tensors(config), n_files)
    for i, tensors in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        head, spans = b._header(tensors)
        with open(out / name, "wb") as fh:
            fh.write(head)
            fh.truncate(len(head) + spans[-1][2])
        weight_map.update(dict.fromkeys((s[0] for s in spans), name))
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return read_checkpoint(out), config


def _expected_vllm(tc, block, tp, ep, *, sp_replicates_shared_expert=True):
    """Whether vLLM loads Qwen3.5-MoE block-FP8 at (TP, EP), from the config numbers and
    docs/engine-loader-facts: None when (TP, EP) is not a vLLM layout (EP = TP × DP)."""
    if ep != 1 and ep % tp:
        return None
    dp = 1 if ep == 1 else ep // tp
    expert_parallel = ep > 1
    sequence_parallel = expert_parallel and tp > 1 and dp > 1
    moe_tp = 1 if expert_parallel else tp * dp
    heads, kv = tc["num_attention_heads"], tc["num_key_value_heads"]
    ok = heads % tp == 0 and (kv % tp == 0 if kv >= tp else tp % kv == 0)
    ok &= tc["linear_num_key_heads"] % tp == 0 and tc["linear_num_value_heads"] % tp == 0
    # row-parallel inputs (o_proj, GDN out_proj) must keep whole block_k per rank
    # (validate_fp8_block_shape); merged column layers of quant_method fp8 are exempt
    row_inputs = [heads * tc["head_dim"],
                  tc["linear_num_value_heads"] * tc["linear_value_head_dim"]]
    # the shared expert's down_proj is TP-sharded too, unless vLLM replicates it under
    # sequence-parallel MoE (PR #39181, 0.20.0)
    if not (sequence_parallel and sp_replicates_shared_expert):
        row_inputs.append(tc["shared_expert_intermediate_size"])
    ok &= all(k % tp == 0 and (tp == 1 or (k // tp) % block == 0) for k in row_inputs)
    # experts: validate_fp8_block_shape_moe on moe_intermediate_size per MoE-TP rank
    inter = tc["moe_intermediate_size"]
    ok &= inter % moe_tp == 0 and (inter // moe_tp) % block == 0
    return ok


def test_qwen3_5_397b_fp8_tp_x_ep_matches_the_engine_facts(qwen397):
    ckpt, config = qwen397
    tc, block = config["text_config"], config["quantization_config"]["weight_block_size"][0]
    assert block == 128
    table = supported_layouts(ckpt, "vllm==0.20.0", max_tp=32, max_ep=64)
    assert table.tps == (1, 2, 4, 8, 16, 32) and table.eps == (1, 2, 4, 8, 16, 32, 64)
    for cell in table.cells:
        want = _expected_vllm(tc, block, cell.tp, cell.ep)
        if want is None:
            assert cell.deployment is None, (cell.tp, cell.ep)
        else:
            assert cell.loads == want, (cell.tp, cell.ep, [p.message for p in cell.errors])
    # the answer in words: TP 1-8 with or without EP; TP=16 only with EP over DP > 1
    # (sequence-parallel MoE replicates the 1024-wide shared expert); never TP=32
    assert {c.tp for c in table.cells if c.loads} == {1, 2, 4, 8, 16}
    assert table.cell(16, 32).loads and not table.cell(16, 16).loads
    why = " ".join(p.message for p in table.cell(16, 1).errors)
    assert "Weight input_size_per_partition = 64 is not divisible by weight quantization" \
           " block_k = 128." in why  # shared_expert.down_proj: 1024 / 16
    assert "The output_size of gate's and up's weight = 64" in why  # experts: 1024 / 16
    assert "16 Gated DeltaNet key heads do not split over TP=32" in " ".join(
        p.message for p in table.cell(32, 64).errors)


def test_qwen3_5_397b_fp8_tp16_needs_vllm_0_20_for_sequence_parallel(qwen397):
    ckpt, config = qwen397
    tc = config["text_config"]
    spec = parse_engine("vllm==0.19.1")
    quant = resolve_quantization(ckpt)
    shapes = read_shapes(ckpt, quant, plan_load(ckpt, spec, quant))
    lay = resolve(Deployment(tp=16, dp=2, enable_expert_parallel=True), spec)
    errors = [p for p in problems(shapes, lay, spec.version) if p.severity.label == "error"]
    # before PR #39181 the shared expert stays TP-sharded under sequence-parallel MoE
    assert not _expected_vllm(tc, 128, 16, 32, sp_replicates_shared_expert=False)
    assert [p.param for p in errors] == [
        "language_model.model.layers.0.mlp.shared_expert.down_proj"
    ]
