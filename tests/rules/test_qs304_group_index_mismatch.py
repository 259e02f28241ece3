"""QS304: GPTQ ``g_idx`` values, on real safetensors Qwen3-MoE checkpoints (group 64 over 256
inputs: 4 groups). vLLM reads ``g_idx`` only for act order (``desc_act`` with a group size,
built up to 0.29, refused from 0.30); otherwise it ignores it and groups input ``i`` as
``i // group_size``."""

from __future__ import annotations

import pytest
import torch
from builders import qwen3_moe
from cli_runner import cli_in_process

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError

Q = "model.layers.0.self_attn.q_proj.g_idx"
EXPERT = "model.layers.1.mlp.experts.2.down_proj.g_idx"


def _act_order_g_idx(n: int, group: int, seed: int = 1) -> torch.Tensor:
    """What GPTQ with act order writes: input perm[i] belongs to group i // group."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    g = torch.empty(n, dtype=torch.int32)
    g[perm] = torch.arange(n, dtype=torch.int32) // group
    return g


def _qs304(ckpt, engine: str) -> list[str]:
    report = check(ckpt, CheckOptions(engine=engine, select=("QS304",)))
    return [f.message for f in report.findings]


def test_identity_g_idx_is_clean(tmp_path):
    ckpt = read_checkpoint(qwen3_moe("gptq", group=64).write(tmp_path))
    assert check(ckpt, CheckOptions(engine="vllm==0.33.0")).findings == ()


@pytest.mark.parametrize("engine", ["vllm==0.18.0", "vllm==0.29.0", "vllm==0.33.0"])
def test_act_order_g_idx_under_desc_act_false_is_silently_wrong(tmp_path, engine):
    b = qwen3_moe("gptq", group=64)
    b.tensors[Q] = _act_order_g_idx(256, 64)
    b.tensors[EXPERT] = _act_order_g_idx(256, 64, seed=2)
    msgs = _qs304(read_checkpoint(b.write(tmp_path)), engine)
    assert len(msgs) == 2
    q = next(m for m in msgs if Q in m)
    assert "inputs are not in group `i // 64`" in q and "`desc_act: false`" in q
    assert "silently wrong" in q
    # observed vs expected, first differing input
    first = int(torch.nonzero(b.tensors[Q] != torch.arange(256) // 64)[0])
    assert f"g_idx[{first}] = {int(b.tensors[Q][first])}, expected {first // 64}" in q


def test_act_order_g_idx_with_desc_act_builds_until_0_29(tmp_path):
    b = qwen3_moe("gptq", group=64).set_config("/quantization_config/desc_act", True)
    b.tensors[Q] = _act_order_g_idx(256, 64)
    ckpt = read_checkpoint(b.write(tmp_path))
    assert _qs304(ckpt, "vllm==0.29.0") == []  # near miss: act order reads g_idx
    with pytest.raises(ConfigError, match="desc_act=true"):
        check(ckpt, CheckOptions(engine="vllm==0.30.0"))


def test_act_order_group_counts_must_match(tmp_path):
    b = qwen3_moe("gptq", group=64).set_config("/quantization_config/desc_act", True)
    g = _act_order_g_idx(256, 64)
    g[g == 3] = 2  # group 3 empty, group 2 doubled: still in range
    b.tensors[Q] = g
    (msg,) = _qs304(read_checkpoint(b.write(tmp_path)), "vllm==0.29.0")
    assert "group 2 holds 128 inputs, expected 64" in msg


@pytest.mark.parametrize("desc_act", [False, True])
def test_out_of_range_g_idx(tmp_path, desc_act):
    b = qwen3_moe("gptq", group=64).set_config("/quantization_config/desc_act", desc_act)
    g = torch.arange(256, dtype=torch.int32) // 64
    g[200] = 4
    b.tensors[Q] = g
    (msg,) = _qs304(read_checkpoint(b.write(tmp_path)), "vllm==0.29.0")
    assert msg.startswith(f"`{Q}`: 1 of 256 group indices outside [0, 4)")
    assert "g_idx[200] = 4" in msg


def test_g_idx_of_wrong_length(tmp_path):
    b = qwen3_moe("gptq", group=64)
    b.tensors[Q] = torch.arange(128, dtype=torch.int32) // 64
    (msg,) = _qs304(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert "has shape (128,); expected (256,)" in msg


def test_header_only_still_reads_g_idx(tmp_path):
    # g_idx is 4 bytes per input: read also under --header-only, so the check stays complete
    b = qwen3_moe("gptq", group=64)
    b.tensors[Q] = _act_order_g_idx(256, 64)
    path = b.write(tmp_path)
    for flags, code in (((), 1), (("--header-only",), 2)):  # 2: QS303 did not run
        r = cli_in_process("check", str(path), "--engine", "vllm==0.33.0", *flags)
        assert r.returncode == code, r.stdout + r.stderr
        assert "QS304 error [group-index-mismatch]" in r.stdout
        assert "QS304 (" not in r.stdout  # not among the rules that did not run
