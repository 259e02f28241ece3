"""Ignore/exclude entries the engine matches differently: the detector, and the rewrite."""

from __future__ import annotations

import json

import pytest
from builders import CT_IGNORE, qwen3_5_moe

from qscale import CheckOptions, Severity, check, read_checkpoint, resolve_quantization
from qscale.fix import Status, find_ignore_mismatches, fix
from qscale.fix.ignores import MismatchKind

P = "model.language_model.layers"
SHARED = [
    f"{P}.{i}.mlp.shared_expert.{p}" for i in (0, 1) for p in ("gate_proj", "up_proj", "down_proj")
]


def built(extra):
    """MoE checkpoint whose shared experts are stored BF16 and meant to be ignored."""
    return qwen3_5_moe("ct-fp8", shared_expert="bf16", ignore=CT_IGNORE + extra)


CASES = {
    # vLLM's own spelling, exact: the quantizer's names do not match it
    "engine-spelling": (
        [e.replace("model.language_model.", "language_model.model.") for e in SHARED],
        MismatchKind.NAME_SPACE,
    ),
    # the text-only class's prefix on a VL checkpoint: matches nothing anywhere
    "prefix-drift": (
        [e.replace("model.language_model.", "model.") for e in SHARED],
        MismatchKind.PREFIX_DRIFT,
    ),
    # a regex on the Hugging Face prefix: vLLM matches regexes against its own names
    "hf-regex": ([r"re:model\.language_model\..*shared_expert\..*"], MismatchKind.NAME_SPACE),
}


@pytest.mark.parametrize("case", CASES)
def test_detector_names_the_entry_and_its_replacement(tmp_path, case):
    extra, kind = CASES[case]
    ckpt = read_checkpoint(built(extra).write(tmp_path))
    found = find_ignore_mismatches(ckpt)
    assert {m.entry for m in found} == set(extra)
    assert {m.kind for m in found} == {kind}
    assert sorted(r for m in found for r in m.replacement) == sorted(SHARED)


def test_detector_is_quiet_on_real_exports(tmp_path):
    from pathlib import Path

    from test_real_tools import REFUSED

    for d in sorted((Path(__file__).parent / "fixtures" / "real").iterdir()):
        # a config the newest vLLM refuses (GPTQ act order): the last release that builds it
        engine = "vllm==0.29.0" if d.name in REFUSED else None
        assert find_ignore_mismatches(read_checkpoint(d), engine) == [], d.name


def test_entry_matching_nothing_is_reported(tmp_path):
    ckpt = read_checkpoint(built([*SHARED, f"{P}.7.mlp.gate"]).write(tmp_path))
    [m] = find_ignore_mismatches(ckpt)
    assert m.entry == f"{P}.7.mlp.gate" and m.kind == MismatchKind.UNMATCHED
    assert m.replacement == ()


@pytest.mark.parametrize("case", CASES)
def test_fix_rewrites_the_list_so_both_namings_agree(tmp_path, case):
    extra, _ = CASES[case]
    src = built(extra).write(tmp_path)
    before = check(read_checkpoint(src), CheckOptions())
    assert before.fails(Severity.ERROR)
    result = fix(src, tmp_path / "out")
    assert result.status == Status.FIXED, [(r.finding.code, r.reason) for r in result.plan.rejected]
    [change] = result.plan.applied
    assert change.fixer == "ignore-names" and "QS204" in change.codes
    out = read_checkpoint(tmp_path / "out")
    assert find_ignore_mismatches(out) == []
    ignore = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"][
        "ignore"
    ]
    assert set(SHARED) <= set(ignore) and not set(extra) & set(ignore)
    quant = resolve_quantization(out)
    assert all(quant.modules[m].scheme is None for m in SHARED)
    assert not check(out, CheckOptions()).fails(Severity.ERROR)


def test_module_stored_unquantized_is_added_with_its_fused_siblings(tmp_path):
    b = qwen3_5_moe("ct-fp8", shared_expert="bf16", ignore=CT_IGNORE)  # shared expert not listed
    src = b.write(tmp_path)
    assert {"QS202"} <= {f.code for f in check(read_checkpoint(src), CheckOptions()).findings}
    result = fix(src, tmp_path / "out")
    assert result.status == Status.FIXED
    ignore = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"][
        "ignore"
    ]
    assert set(SHARED) <= set(ignore)
    assert "QS202" not in {f.code for f in check(read_checkpoint(tmp_path / "out")).findings}


def test_entry_that_would_ignore_a_quantized_module_is_left_alone(tmp_path):
    # `o_proj` is stored FP8: an entry naming it in vLLM's spelling is not "fixed" into an
    # ignore of stored FP8 bytes
    src = qwen3_5_moe(
        "ct-fp8", ignore=[*CT_IGNORE, "language_model.model.layers.1.self_attn.o_proj"]
    )
    path = src.write(tmp_path)
    result = fix(path, tmp_path / "out")
    assert not any(c.fixer == "ignore-names" for c in result.plan.applied)
    reasons = [r.reason for r in result.plan.rejected if r.finding.code == "QS204"]
    assert reasons and all("stored quantized" in r for r in reasons)
