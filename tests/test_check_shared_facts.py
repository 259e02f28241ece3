"""check() computes per-check facts once and shares them across rules; the sharing must not
change what any rule reports, nor leak from one check into the next."""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest
import torch
from builders import SCHEMES, Built, gpt_oss, gpt_oss_mxfp4, qwen3_5_moe
from test_real_tools import REFUSED

from qscale import CheckOptions, Finding, check, read_checkpoint
from qscale.errors import QscaleError
from qscale.formats import resolve_quantization
from qscale.modules import ModuleKind, group_modules
from qscale.rules._api import Context
from qscale.rules._structure import AcceptedShapes, accepted_shapes, present

P = "model.language_model.layers"
STRUCTURAL = ("QS201", "QS202", "QS203", "QS209", "QS301", "QS302")
REAL = sorted(p for p in (Path(__file__).parent / "fixtures" / "real").iterdir() if p.is_dir())


def _broken() -> Built:
    """One defect for each structural rule, in different modules."""
    b = qwen3_5_moe("ct-fp8")
    b.drop(rf"^{P}\.0\.mlp\.experts\.1\.up_proj\.input_scale$")  # QS201
    shared = f"{P}.1.mlp.shared_expert.up_proj"
    b.drop(rf"^{shared}\.(weight_scale|input_scale)$")  # QS202: a float weight, no scales
    b.retype(rf"^{shared}\.weight$", torch.bfloat16)
    b.add(f"{P}.0.linear_attn.conv1d.weight_scale", torch.ones(1))  # QS203
    o = f"{P}.1.self_attn.o_proj"
    b.tensors[f"{o}.weight_scale_inv"] = b.tensors.pop(f"{o}.weight_scale")  # QS209
    b.retype(rf"^{P}\.1\.self_attn\.k_proj\.weight$", torch.int8)  # QS301
    b.reshape(f"{P}.1.self_attn.v_proj.weight_scale", (2,))  # QS302
    return b


def _findings(path: Path, codes: list[str]) -> list[Finding]:
    report = check(read_checkpoint(path), CheckOptions(select=codes))
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_structural_rules_together_report_what_each_reports_alone(tmp_path):
    clean = qwen3_5_moe("ct-fp8").write(tmp_path, name="clean")
    broken = _broken().write(tmp_path, name="broken")
    assert _findings(clean, list(STRUCTURAL)) == []  # a check before: nothing carries over
    together = _findings(broken, list(STRUCTURAL))
    alone = {code: _findings(broken, [code]) for code in STRUCTURAL}
    assert all(alone.values()), {c: len(f) for c, f in alone.items()}  # each rule fires
    assert sorted(together, key=Finding.sort_key) == sorted(
        (f for fs in alone.values() for f in fs), key=Finding.sort_key
    )
    assert _findings(clean, list(STRUCTURAL)) == []  # and nothing carries over after


def test_shared_fact_is_computed_once_per_context(tmp_path):
    ckpt = read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path))
    quant = resolve_quantization(ckpt)
    seen: list[Context] = []

    def count(ctx: Context) -> int:
        seen.append(ctx)
        return len(ctx.checkpoint.tensors)

    first = Context(ckpt, quant)
    assert first.shared(count) == first.shared(count) == len(ckpt.tensors)
    assert seen == [first]
    second = Context(ckpt, quant)
    second.shared(count)
    assert len(seen) == 2 and seen[1] is second


def _built(tmp_path: Path) -> list[Path]:
    out = [qwen3_5_moe(s).write(tmp_path, name=s) for s in SCHEMES]
    out.append(gpt_oss("ct-w4a16").write(tmp_path, name="gpt_oss"))
    fused = gpt_oss_mxfp4()  # experts fused: the scales are sized by their blocks, per expert
    fused.reshape("model.layers.1.mlp.experts.down_proj_scales", (2, 128, 2))  # QS302
    out.append(fused.write(tmp_path, name="gpt_oss_mxfp4"))
    return out


def test_shared_accepted_shapes_equal_accepted_shapes(tmp_path):
    branches = {"shared": 0, "sized by a stored tensor": 0}
    for path in REAL + _built(tmp_path):
        ckpt = read_checkpoint(path)
        # a config the newest vLLM refuses (GPTQ act order): the last release that builds it
        engine = "vllm==0.29.0" if path.name in REFUSED else None
        ctx = Context(ckpt, resolve_quantization(ckpt, engine))
        shared = AcceptedShapes()
        for p in present(ctx):
            assert shared(p.mq, p.spec) == accepted_shapes(p.mq, p.spec), p.tensor.name
            sized_by_tensor = p.spec.ref or p.mq.module.kind == ModuleKind.FUSED_EXPERTS
            branches["sized by a stored tensor" if sized_by_tensor else "shared"] += 1
    assert all(branches.values()), branches


def test_fused_experts_findings_together_and_alone(tmp_path):
    path = _built(tmp_path)[-1]
    together = _findings(path, list(STRUCTURAL))
    assert [f.code for f in together] == ["QS302"]
    assert together == _findings(path, ["QS302"])
    assert "down_proj_scales` has shape (2, 128, 2), expected (2, 128, 4)" in together[0].message


def test_check_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    ckpt = read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path))
    assert gc.isenabled()
    check(ckpt)
    assert gc.isenabled()
    with pytest.raises(QscaleError):
        check(ckpt, CheckOptions(engine="vllm==banana"))
    assert gc.isenabled()
    gc.disable()
    try:
        check(ckpt)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_modules_do_not_depend_on_the_order_of_tensors(tmp_path):
    tensors = list(read_checkpoint(qwen3_5_moe("ct-w4a16").write(tmp_path)).tensors.values())
    expected = group_modules(tensors)
    shuffled = tensors[:]
    random.Random(0).shuffle(shuffled)
    got = group_modules(shuffled)
    assert list(got) == list(expected)
    for name, module in expected.items():
        assert got[name].kind == module.kind
        assert dict(got[name].tensors) == dict(module.tensors)
