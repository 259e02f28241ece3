"""The runner judges alike routed experts by one of them for the expert-symmetric rules
(qscale/rules/_experts.py): every report must equal running every rule on every module."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from builders import Built, qwen3_5_moe, qwen3_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines import parse_engine
from qscale.engines.loader import plan_load
from qscale.errors import UnknownFormat
from qscale.findings import Finding
from qscale.formats import resolve_quantization
from qscale.rules import ALL_RULES
from qscale.rules._api import Context
from qscale.rules._experts import group_experts, reduce, split_expert

P = "model.language_model.layers"
UP = rf"^{P}\.0\.mlp\.experts\.\d+\.up_proj"  # layer 0's up_proj of every expert


def _every_expert_retyped(b: Built) -> None:
    b.retype(rf"{UP}\.weight$", torch.bfloat16)


def _every_expert_reshaped(b: Built) -> None:
    for e in range(2):
        b.reshape(f"{P}.0.mlp.experts.{e}.up_proj.weight_scale", (2,))


def _every_expert_extra(b: Built) -> None:
    for e in range(2):
        b.add(f"{P}.1.mlp.experts.{e}.down_proj.weight_zero_point", torch.zeros(1))


def _every_expert_misnamed(b: Built) -> None:
    for e in range(2):
        n = f"{P}.0.mlp.experts.{e}.gate_proj"
        b.tensors[f"{n}.weight_scale_inv"] = b.tensors.pop(f"{n}.weight_scale")


def _one_expert_dropped(b: Built) -> None:
    b.drop(rf"^{P}\.1\.mlp\.experts\.1\.")  # every projection: the layer stays alike


def _one_scale_dropped(b: Built) -> None:
    b.drop(rf"^{P}\.0\.mlp\.experts\.1\.up_proj\.input_scale$")


def _extra_expert(b: Built) -> None:
    for proj in ("gate_proj", "up_proj", "down_proj"):
        for k, t in list(b.tensors.items()):
            if k.startswith(f"{P}.0.mlp.experts.0.{proj}."):
                b.tensors[k.replace(".experts.0.", ".experts.2.")] = t.clone()


MUTATIONS: dict[str, Callable[[Built], object]] = {
    "none": lambda b: None,
    "every-expert-input-scale-dropped": lambda b: b.drop(rf"{UP}\.input_scale$"),  # QS201
    "every-expert-retyped": _every_expert_retyped,  # QS202
    "every-expert-reshaped": _every_expert_reshaped,  # QS302
    "every-expert-extra-tensor": _every_expert_extra,  # QS203
    "every-expert-misnamed": _every_expert_misnamed,  # QS209
    "one-expert-dropped": _one_expert_dropped,  # QS208
    "one-scale-dropped": _one_scale_dropped,  # QS201, the layer not alike
    "extra-expert": _extra_expert,  # QS208: 3 experts stored in layer 0
}


def _every_rule_on_every_module(path, engine: str) -> list[Finding]:
    """What check() reported before the reduction: each rule run on the full map."""
    ckpt, spec = read_checkpoint(path), parse_engine(engine)
    quant = resolve_quantization(ckpt, spec)
    try:
        plan = plan_load(ckpt, spec, quant)
    except UnknownFormat:
        plan = None
    ctx = Context(ckpt, quant, plan, engine=spec)
    found: list[Finding] = []
    for rule in ALL_RULES:
        if rule.check is None or (plan is None and (rule.needs_plan or rule.needs_family)):
            continue
        found.extend(rule.check(ctx))
    return sorted(found, key=Finding.sort_key)


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "sglang==0.5.13"])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_report_equals_every_rule_on_every_module(tmp_path, mutation, engine):
    b = qwen3_5_moe("ct-fp8")
    MUTATIONS[mutation](b)
    path = b.write(tmp_path)
    report = check(read_checkpoint(path), CheckOptions(engine=engine))
    assert not report.crashed
    assert list(report.findings) == _every_rule_on_every_module(path, engine)
    if mutation != "none" and engine.startswith("vllm"):
        assert report.findings  # each mutation is a defect some rule reports


def test_alike_experts_do_not_hide_a_defect_they_share(tmp_path):
    """Both experts lack the scale: the reduced map reports it once, the report twice."""
    b = qwen3_5_moe("ct-fp8")
    b.drop(rf"{UP}\.input_scale$")
    report = check(read_checkpoint(b.write(tmp_path)), CheckOptions(engine="vllm==0.33.0"))
    missing = sorted(f.location.tensor for f in report.findings if f.code == "QS201")
    assert missing == [f"{P}.0.mlp.experts.{e}.up_proj.input_scale" for e in range(2)]


def test_alike_layers_are_reduced_to_their_first_expert(tmp_path):
    b = qwen3_moe("gptq", experts=4)
    quant = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    reduced, layers = reduce(quant)
    assert layers.alike and all(layers.alike.values())
    experts = [n for n in quant.modules if ".experts." in n]
    kept = [n for n in reduced.modules if ".experts." in n]
    assert len(experts) == 4 * len(kept)
    assert all(".experts.0." in n for n in kept)
    assert {n for n in quant.modules if ".experts." not in n} \
        == {n for n in reduced.modules if ".experts." not in n}
    assert all(sorted(map(int, idx)) == [e for e in range(4) for _ in range(3)]
               for idx in (sorted(i) for i in layers.indices.values()))


def test_a_layer_with_one_different_expert_is_kept_whole(tmp_path):
    b = qwen3_5_moe("ct-fp8")
    b.reshape(f"{P}.0.mlp.experts.1.up_proj.weight_scale", (2,))
    quant = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    layers = group_experts(quant.modules)
    assert layers.alike == {f"{P}.0.mlp.experts": False, f"{P}.1.mlp.experts": True}
    kept = [n for n in layers.reduced if ".experts." in n]
    assert sum(n.startswith(f"{P}.0.") for n in kept) == 6  # 2 experts × 3 projections
    assert sum(n.startswith(f"{P}.1.") for n in kept) == 3


def test_a_layer_whose_experts_lack_a_scheme_tensor_is_kept_whole(tmp_path):
    """An absent tensor may be stored under another spelling outside the module (QS209):
    such a layer is never judged by one expert."""
    b = qwen3_5_moe("ct-fp8")
    b.drop(rf"{UP}\.input_scale$")
    quant = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert group_experts(quant.modules).alike[f"{P}.0.mlp.experts"] is False


def test_experts_with_different_index_sets_per_projection_are_not_alike(tmp_path):
    b = qwen3_5_moe("ct-fp8")
    b.drop(rf"^{P}\.1\.mlp\.experts\.1\.down_proj\.")
    quant = resolve_quantization(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert group_experts(quant.modules).alike[f"{P}.1.mlp.experts"] is False


@pytest.mark.parametrize("name, want", [
    ("model.layers.3.mlp.experts.17.gate_proj", ("model.layers.3.mlp.experts", "17",
                                                  "gate_proj")),
    ("model.layers.3.mlp.shared_experts.gate_proj", None),
    ("model.layers.3.mlp.experts.gate_up_proj", None),
    ("model.layers.3.mlp.experts.x.gate_proj", None),
    ("experts.1.w1", None),  # no `.experts` head
    ("a.experts.2.w-1", None),  # the projection is not all word characters
])
def test_split_expert(name, want):
    assert split_expert(name, {}) == want


def test_experts_stored_in_another_order_are_alike(tmp_path):
    """Two shards, the names dealt out in turn: an expert's scale may come before or after
    its weight (each file in its own header order), and its layer is still alike."""
    path = qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)
    quant = resolve_quantization(read_checkpoint(path), "vllm==0.33.0")
    orders = {tuple(quant.modules[f"{P}.0.mlp.experts.{e}.up_proj"].module.tensors)
              for e in range(2)}
    assert len(orders) == 2  # the case this test is about
    assert all(group_experts(quant.modules).alike.values())


def test_a_failing_grouping_costs_speed_not_the_report(tmp_path, monkeypatch):
    import qscale.runner

    def boom(ctx):
        raise RuntimeError("grouping bug")

    monkeypatch.setattr(qscale.runner, "reduced_context", boom)
    b = qwen3_5_moe("ct-fp8")
    b.drop(rf"{UP}\.input_scale$")
    path = b.write(tmp_path)
    report = check(read_checkpoint(path), CheckOptions(engine="vllm==0.33.0"))
    assert not report.crashed
    assert list(report.findings) == _every_rule_on_every_module(path, "vllm==0.33.0")
    assert any(f.code == "QS201" for f in report.findings)
