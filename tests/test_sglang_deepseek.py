"""SGLang's DeepSeek MLA A-projections: ``q_a_proj`` and ``kv_a_proj_with_mqa`` concatenated
into the ``ReplicatedLinear`` ``fused_qkv_a_proj_with_mqa`` (facts §2.5).

Starts from the real llm-compressor FP8 DeepSeek-V2 fixture (q_lora_rank set) and changes one
thing: the shape of the A-projections' per-tensor scales.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from qscale import CheckOptions, check, plan_load, read_checkpoint
from qscale.engines.processing import Effect, process

FIXTURE = Path(__file__).parent / "fixtures" / "real" / "llmc-deepseek_v2-FP8"
SGLANG = "sglang==0.5.23"
ATTN = "model.layers.0.self_attn"
FUSED = f"{ATTN}.fused_qkv_a_proj_with_mqa"


def _copy(tmp_path: Path, shapes: dict[str, tuple[int, ...]] | None = None,
          values: dict[str, float] | None = None) -> Path:
    out = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, out)
    f = out / "model.safetensors"
    tensors = load_file(f)
    for name, shape in (shapes or {}).items():
        tensors[name] = tensors[name].reshape(shape)
    for name, value in (values or {}).items():
        t = tensors[name]
        tensors[name] = torch.full_like(t.float(), value).to(t.dtype)
    save_file(tensors, f)
    return out


def _a_scales(layer: int = 0) -> list[str]:
    a = f"model.layers.{layer}.self_attn"
    return [f"{a}.{m}.{leaf}" for m in ("q_a_proj", "kv_a_proj_with_mqa")
            for leaf in ("weight_scale", "input_scale")]


def _scalar_scales() -> dict[str, tuple[int, ...]]:
    return {n: () for layer in (0, 1) for n in _a_scales(layer)}


def _errors(path: Path, engine: str, code: str) -> list[str]:
    report = check(read_checkpoint(path), CheckOptions(engine=engine))
    return [f.message for f in report.findings if f.code == code and f.severity.label == "error"]


def test_sglang_names_the_concatenated_parameter() -> None:
    plan = plan_load(read_checkpoint(FIXTURE), SGLANG)
    p = plan.param(f"{FUSED}.weight")
    assert [s.source.rsplit(".", 2)[-2] for s in p.sources] == ["q_a_proj", "kv_a_proj_with_mqa"]
    cfg = read_checkpoint(FIXTURE).config.text
    assert p.partitions == (cfg["q_lora_rank"], cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"])
    assert not any(".fused_qkv_a_proj." in n for n in plan.params)
    # vLLM keeps its own name for the same layer
    vplan = plan_load(read_checkpoint(FIXTURE), "vllm==0.20.0")
    assert f"{ATTN}.fused_qkv_a_proj.weight" in vplan.params
    assert f"{FUSED}.weight" not in vplan.params


def test_one_element_scales_are_refused_by_sglang_only() -> None:
    """llm-compressor stores per-tensor scales as [1]: SGLang concatenates them into [2] for a
    one-slot parameter, and ReplicatedLinear.weight_loader asserts equal shapes."""
    errors = _errors(FIXTURE, SGLANG, "QS402")
    assert any(f"{FUSED}.weight_scale" in e and "into [2]" in e for e in errors), errors
    assert any(f"{FUSED}.input_scale" in e for e in errors), errors
    assert _errors(FIXTURE, "vllm==0.20.0", "QS402") == []


def test_scalar_scales_keep_the_first_shard_only(tmp_path: Path) -> None:
    path = _copy(tmp_path, _scalar_scales())
    ckpt = read_checkpoint(path)
    q = float(ckpt.value(f"{ATTN}.q_a_proj.weight_scale").reshape(-1)[0])  # type: ignore[union-attr]
    kv = float(ckpt.value(f"{ATTN}.kv_a_proj_with_mqa.weight_scale").reshape(-1)[0])  # type: ignore[union-attr]
    assert q != kv  # the real tool calibrated them separately
    plan = plan_load(ckpt, SGLANG)
    p = plan.param(f"{FUSED}.weight_scale")
    assert p.slots == (q,) and p.shard_values == (q, kv) and not p.errors
    done = next(d for d in process(plan) if d.param.name == p.name)
    assert [o.effect for o in done.partitions] == [Effect.EXACT, Effect.WRONG_SCALE]
    assert done.partitions[1].ratio == pytest.approx(q / kv)
    errors = _errors(path, SGLANG, "QS403")
    assert any(f"{FUSED}.weight_scale" in e and f"×{q / kv:.4g}" in e for e in errors), errors
    assert _errors(path, SGLANG, "QS402") == []
    # vLLM loads each shard into its own slot and requantizes: nothing to report
    assert _errors(path, "vllm==0.20.0", "QS403") == []


def test_equal_scalar_scales_are_exact(tmp_path: Path) -> None:
    """Near miss: the two shards share one scale, so keeping the first loses nothing."""
    same = {n: 0.002 for layer in (0, 1) for n in _a_scales(layer) if "weight_scale" in n}
    path = _copy(tmp_path, _scalar_scales(), same)
    plan = plan_load(read_checkpoint(path), SGLANG)
    done = next(d for d in process(plan) if d.param.name == f"{FUSED}.weight_scale")
    assert {o.effect for o in done.partitions} == {Effect.EXACT}
    report = check(read_checkpoint(path), CheckOptions(engine=SGLANG))
    assert [f.code for f in report.findings if f.severity.label == "error"] == []


def test_mixed_scalar_and_vector_scale_cannot_be_concatenated(tmp_path: Path) -> None:
    path = _copy(tmp_path, {f"{ATTN}.q_a_proj.weight_scale": ()})
    errors = _errors(path, SGLANG, "QS402")
    assert any(f"{FUSED}.weight_scale" in e and "0-d" in e for e in errors), errors


ORACLE = os.environ.get("QSCALE_ORACLE_CKPTS")


@pytest.mark.skipif(not ORACLE, reason="QSCALE_ORACLE_CKPTS not set (see oracle/README.md)")
@pytest.mark.parametrize(
    ("name", "refused_leaf"),
    [
        ("FP8", "weight_scale"),
        ("FP8_DYNAMIC", None),  # per-channel [N, 1]: concatenated row by row
        ("FP8_BLOCK", None),  # block scales: rows of tiles
        ("MXFP4", None),
        ("NVFP4", "weight_global_scale"),  # [1] global scales
        ("W4A16", "weight_shape"),  # compressed-tensors [2] original shape
    ],
)
def test_llm_compressor_deepseek_on_sglang(name: str, refused_leaf: str | None) -> None:
    path = Path(str(ORACLE)) / "llmc" / f"deepseek_v2-{name}"
    errors = _errors(path, SGLANG, "QS402")
    if refused_leaf is None:
        assert errors == []
    else:
        assert any(f"fused_qkv_a_proj_with_mqa.{refused_leaf}" in e for e in errors), errors


# --------------------------------------------------------------------------- qscale fix


def test_fix_makes_the_llm_compressor_export_load_on_sglang(tmp_path: Path) -> None:
    from qscale.fix import Status, fix

    out = tmp_path / "fixed"
    assert fix(FIXTURE, out, engine=SGLANG).status == Status.FIXED
    before, after = load_file(FIXTURE / "model.safetensors"), load_file(out / "model.safetensors")
    for m in ("q_a_proj", "kv_a_proj_with_mqa"):
        ws = after[f"{ATTN}.{m}.weight_scale"]
        assert ws.shape == (after[f"{ATTN}.{m}.weight"].shape[0], 1)
        assert torch.equal(ws, before[f"{ATTN}.{m}.weight_scale"].expand_as(ws))
        assert after[f"{ATTN}.{m}.input_scale"].shape == ()
        assert torch.equal(after[f"{ATTN}.{m}.input_scale"].reshape(1),
                           before[f"{ATTN}.{m}.input_scale"])
    for engine in (SGLANG, "vllm==0.19.1", "vllm==0.20.0"):
        report = check(read_checkpoint(out), CheckOptions(engine=engine))
        assert [f.code for f in report.findings if f.severity.label == "error"] == [], engine


def test_fix_of_different_input_scales_is_unsafe(tmp_path: Path) -> None:
    from qscale.fix import Status, fix

    path = _copy(tmp_path, values={f"{ATTN}.kv_a_proj_with_mqa.input_scale": 0.02})
    assert fix(path, tmp_path / "safe", engine=SGLANG).status != Status.FIXED
    assert not (tmp_path / "safe").exists()
    assert fix(path, tmp_path / "unsafe", engine=SGLANG, unsafe=True).status == Status.FIXED
    after = load_file(tmp_path / "unsafe" / "model.safetensors")
    big = torch.tensor(0.02, dtype=torch.bfloat16)
    assert torch.equal(after[f"{ATTN}.q_a_proj.input_scale"], big)
    assert torch.equal(after[f"{ATTN}.kv_a_proj_with_mqa.input_scale"], big)


def test_fix_rewrites_scalar_scales_per_channel(tmp_path: Path) -> None:
    """0-d weight scales (QS403 on SGLang) get the same per-channel rewrite: exact."""
    from qscale.fix import Status, fix

    path = _copy(tmp_path, _scalar_scales())
    out = tmp_path / "fixed"
    assert fix(path, out, engine=SGLANG).status == Status.FIXED
    report = check(read_checkpoint(out), CheckOptions(engine=SGLANG))
    assert [f.code for f in report.findings if f.severity.label == "error"] == []
    after = load_file(out / "model.safetensors")
    assert after[f"{ATTN}.kv_a_proj_with_mqa.weight_scale"].shape[1:] == (1,)
