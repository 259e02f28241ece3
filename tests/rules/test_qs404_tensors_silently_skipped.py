"""QS404: per-expert tensors a model class's own loader skips without a word (gpt-oss)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from builders import gpt_oss
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
