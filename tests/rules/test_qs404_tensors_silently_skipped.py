"""QS404: per-expert tensors a model class's own loader skips without a word (gpt-oss)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from builders import ct_fp8, dense, gpt_oss
from safetensors.torch import load_file

from qscale import CheckOptions, check, read_checkpoint

REAL = Path(__file__).parent.parent / "fixtures" / "real"
GOLDEN = Path(__file__).parent.parent / "fixtures" / "vllm_golden" / "llmc-gpt_oss-W4A16.json"
EXPERTS = "model.layers.0.mlp.experts."


def _codes(path: Path, engine: str) -> dict[str, list[str]]:
    report = check(read_checkpoint(path), CheckOptions(engine=engine))
    out: dict[str, list[str]] = {}
    for f in report.findings:
        out.setdefault(f.code, []).append(f.message)
    return out


def test_real_w4a16_export_loses_its_expert_weights_on_vllm_0_32() -> None:
    found = _codes(REAL / "llmc-gpt_oss-W4A16", "vllm==0.32.0")
    [msg] = found["QS404"]
    assert "down_proj.weight_packed" in msg and "gate_proj" in msg and "up_proj" in msg
    assert "QS402" not in found


def test_what_real_vllm_0_32_loaded_agrees() -> None:
    """The golden dump of real vLLM 0.32.0: the streamed `w2_bias` holds the checkpoint's
    values, the skipped `down_proj.weight_packed` never reached `w2_weight_packed`."""
    golden = json.loads(GOLDEN.read_text())["params"]
    src = load_file(REAL / "llmc-gpt_oss-W4A16" / "model.safetensors")

    def sha(t: torch.Tensor) -> str:
        return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()

    bias = torch.stack([src[f"{EXPERTS}{e}.down_proj.bias"] for e in range(4)])
    packed = torch.stack([src[f"{EXPERTS}{e}.down_proj.weight_packed"] for e in range(4)])
    assert sha(bias) == golden[f"{EXPERTS}routed_experts.w2_bias"]["sha256"]
    assert sha(packed) != golden[f"{EXPERTS}routed_experts.w2_weight_packed"]["sha256"]


def test_older_vllm_refuses_instead(tmp_path: Path) -> None:
    found = _codes(REAL / "llmc-gpt_oss-W4A16", "vllm==0.20.0")
    assert "QS402" in found and "QS404" not in found


def test_near_miss_experts_fused_per_layer() -> None:
    assert "QS404" not in _codes(REAL / "base-gpt_oss", "vllm==0.32.0")


def test_builder_w4a16_is_reported(tmp_path: Path) -> None:
    found = _codes(gpt_oss("ct-w4a16").write(tmp_path), "vllm==0.32.0")
    assert len(found.get("QS404", [])) == 1


def _minimax(tmp: Path, names: tuple[str, str, str]) -> Path:
    """A MiniMax-M2-shaped checkpoint with two per-expert FP8 experts named ``names``."""
    built = dense("MiniMaxM2ForCausalLM", config={"num_local_experts": 2,
                                                 "num_experts_per_tok": 1})
    g = torch.Generator().manual_seed(3)
    for layer in range(2):
        for e in range(2):
            for proj in names:
                built.tensors.update(ct_fp8(
                    f"model.layers.{layer}.block_sparse_moe.experts.{e}.{proj}", 128, 128, g))
    return built.write(tmp)


def test_expert_names_the_engine_does_not_map_are_skipped(tmp_path: Path) -> None:
    """Real vLLM 0.32/0.33 make no loader call for MiniMax-M2 experts stored as
    gate/up/down_proj (tests/test_arch_oracle.py has the goldens)."""
    ckpt = read_checkpoint(_minimax(tmp_path, ("gate_proj", "up_proj", "down_proj")))
    report = check(ckpt, CheckOptions(engine="vllm==0.33.0"))
    found = [f for f in report.findings if f.code == "QS404"]
    assert len(found) == 1 and found[0].severity.label == "error"
    assert found[0].fix is not None and "`w1`" in found[0].fix.title


def test_near_miss_expert_names_the_engine_maps(tmp_path: Path) -> None:
    assert "QS404" not in _codes(_minimax(tmp_path, ("w1", "w3", "w2")), "vllm==0.33.0")
