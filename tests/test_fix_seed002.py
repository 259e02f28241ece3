"""Seed 002: per-tensor FP8 scales of Qwen3.5 `in_proj_qkv`/`in_proj_z` rewritten per channel."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import torch
from builders import qwen3_5_moe
from safetensors.torch import load_file

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization
from qscale.fix import Status, fix

REAL = Path(__file__).parent / "fixtures" / "real"
EXAMPLE = Path(__file__).parent.parent / "examples" / "qwen3_5_moe-fp8-llmcompressor"
LA = "model.language_model.layers.0.linear_attn"
QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def tensors(root: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(root.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def dequantized_partitions(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """fp8 × scale of in_proj_qkv then in_proj_z, as float32 (scales broadcast per row)."""
    parts = []
    for m in ("in_proj_qkv", "in_proj_z"):
        w, s = t[f"{LA}.{m}.weight"], t[f"{LA}.{m}.weight_scale"]
        parts.append(
            w.float() * s.float().reshape(-1, 1) if s.numel() > 1 else w.float() * s.float()
        )
    return torch.cat(parts)


@pytest.mark.parametrize("source", ["builder", "builder-sharded", "llmc", "example"])
def test_fixed_checkpoint_loads_every_partition_with_its_own_scale(tmp_path, source):
    if source.startswith("builder"):
        src = qwen3_5_moe("ct-fp8").write(tmp_path, shards=3 if "sharded" in source else 1)
    else:
        src = REAL / "llmc-qwen3_5_moe-FP8" if source == "llmc" else EXAMPLE
    before = digest(src)
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    assert result.status == Status.FIXED and result.exit_code == 0
    assert digest(src) == before  # the source is never modified
    out = tmp_path / "out"
    [change] = result.plan.applied
    assert change.codes == ("QS401",) and change.applicability.value == "safe"
    # the re-check on every vLLM version with tuple shard ids: no unfilled weight-scale slot
    for engine in ("vllm==0.18.0", "vllm==0.19.1", "vllm==0.20.0", "vllm==0.32.0"):
        report = check(read_checkpoint(out), CheckOptions(engine=engine))
        assert not [f for f in report.findings if f.severity.label == "error"], engine
    old, new = tensors(src), tensors(out)
    for m, rows in (("in_proj_qkv", 512), ("in_proj_z", 256)):
        scale = new[f"{LA}.{m}.weight_scale"]
        assert scale.shape == (rows, 1) and scale.dtype == old[f"{LA}.{m}.weight_scale"].dtype
        assert torch.equal(
            scale.view(-1).view(torch.int16),
            old[f"{LA}.{m}.weight_scale"].view(-1).view(torch.int16).expand(rows),
        )
    assert torch.equal(dequantized_partitions(new), dequantized_partitions(old))
    # everything else is byte-identical
    changed = {f"{LA}.in_proj_qkv.weight_scale", f"{LA}.in_proj_z.weight_scale"}
    for name, t in old.items():
        if name not in changed:
            assert torch.equal(new[name].view(torch.uint8), t.view(torch.uint8)), name


def test_config_group_targets_the_fused_layer_before_the_class_name(tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    fix(src, tmp_path / "out", engine="vllm==0.19.1")
    qc = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    old = json.loads((src / "config.json").read_text())["quantization_config"]
    group = qc["config_groups"]["group_0_qscale_channel"]
    assert group["weights"] == {
        **old["config_groups"]["group_0"]["weights"],
        "strategy": "channel",
        "group_size": None,
    }
    assert group["input_activations"] == old["config_groups"]["group_0"]["input_activations"]
    assert qc["config_groups"]["group_0"] == old["config_groups"]["group_0"]
    # vLLM matches layer names (exact or re:) before the class name "Linear"
    names = {f"{QKVZ}", f"{LA}.in_proj_qkv", f"{LA}.in_proj_z"}
    for n in names:
        assert any(re.match(t[3:], n) for t in group["targets"] if t.startswith("re:")), n
    assert not any(re.match(t[3:], f"{LA}.out_proj") for t in group["targets"])
    quant = resolve_quantization(read_checkpoint(tmp_path / "out"))
    resolved = {n: mq.resolution.reason for n, mq in quant.modules.items()}
    assert "group_0_qscale_channel" in resolved[f"{LA}.in_proj_qkv"]
    assert "group_0_qscale_channel" in resolved[f"{LA}.in_proj_z"]
    assert "group_0_qscale_channel" not in resolved[f"{LA}.out_proj"]


def test_unchanged_files_are_hard_links_and_the_index_is_rebuilt(tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path, shards=3)
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    out = tmp_path / "out"
    rewritten = {a.file for a in result.plan.files if a.action == "rewrite"}
    assert rewritten  # the file(s) holding the two scales
    for f in src.glob("*.safetensors"):
        same_inode = os.stat(f).st_ino == os.stat(out / f.name).st_ino
        assert same_inode == (f.name not in rewritten), f.name
    index = json.loads((out / "model.safetensors.index.json").read_text())
    ckpt = read_checkpoint(out)  # would raise on a stale index
    assert index["weight_map"] == {n: t.file for n, t in ckpt.tensors.items()}
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in ckpt.tensors.values())


def test_modelopt_per_tensor_fp8_is_rejected_with_a_reason(tmp_path):
    src = REAL / "modelopt-qwen3_5_moe_text-FP8"
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    assert result.status == Status.REJECTED and result.exit_code == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.iterdir())
    [rej] = [r for r in result.plan.rejected if r.finding.code == "QS401"]
    assert rej.blocking and "ModelOpt" in rej.reason and "0.20.0" in rej.reason


def test_fixed_engines_need_nothing(tmp_path):
    src = qwen3_5_moe("ct-fp8").write(tmp_path)
    result = fix(src, tmp_path / "out", engine="vllm==0.20.0")
    assert result.status == Status.CLEAN and not result.plan.applied
    assert digest(tmp_path / "out").keys() >= digest(src).keys()


def test_quant_method_fp8_per_tensor_is_rejected_with_a_reason(tmp_path):
    built = qwen3_5_moe("ct-fp8")
    ignore = built.config["quantization_config"]["ignore"]
    skipped = [f"{LA}.in_proj_b", f"{LA}.in_proj_a", "lm_head"] + [
        n.removesuffix(".weight")
        for n in built.tensors
        if n.endswith(("mlp.gate.weight", "_gate.weight"))
    ]
    built.set_config(
        "/quantization_config",
        {
            "quant_method": "fp8",
            "activation_scheme": "static",
            "modules_to_not_convert": skipped,
        },
    )
    assert ignore  # the compressed-tensors list is replaced by fp8's own
    src = built.write(tmp_path)
    assert "QS401" in {
        f.code for f in check(read_checkpoint(src), CheckOptions(engine="vllm==0.19.1")).findings
    }
    result = fix(src, tmp_path / "out", engine="vllm==0.19.1")
    assert result.status == Status.REJECTED and not (tmp_path / "out").exists()
    reasons = {r.finding.code: r.reason for r in result.plan.rejected if r.blocking}
    assert "Fp8Config" in reasons["QS401"] and "0.20.0" in reasons["QS401"]
