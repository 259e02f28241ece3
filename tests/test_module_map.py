"""Alike routed experts resolved once per (layer, projection) (qscale/module_map.py): the map
must equal resolving every module on its own, record for record, and every report must equal
the one the module-by-module map gives."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest
import torch
from builders import Built, qwen3_5_moe, qwen3_moe

from qscale import CheckOptions, read_checkpoint
from qscale.checkpoint import Checkpoint
from qscale.engines import parse_engine
from qscale.formats import ModuleQuant, QuantMap, resolve_quantization
from qscale.module_map import ModuleMap
from qscale.rules._experts import group_experts
from qscale.runner import run_rules

P = "model.language_model.layers"
UP = rf"^{P}\.0\.mlp\.experts\.\d+\.up_proj"  # layer 0's up_proj of every expert


def _ignore(b: Built, name: str) -> None:
    b.config["text_config"]["quantization_config"]["modules_to_not_convert"].append(name) \
        if "quantization_config" in b.config["text_config"] \
        else b.config["quantization_config"]["modules_to_not_convert"].append(name)


def _extra_expert(b: Built) -> None:
    for k, t in list(b.tensors.items()):
        if k.startswith(f"{P}.0.mlp.experts.0."):
            b.tensors[k.replace(".experts.0.", ".experts.2.")] = t.clone()


#: mutation -> (edit, whether the map still holds blocks)
MUTATIONS: dict[str, tuple[Callable[[Built], object], bool]] = {
    "none": (lambda b: None, True),
    "every-expert-scale-dropped": (lambda b: b.drop(rf"{UP}\.weight_scale_inv$"), True),
    "every-expert-retyped": (lambda b: b.retype(rf"{UP}\.weight$", torch.bfloat16), True),
    "every-expert-extra-tensor": (lambda b: [b.add(
        f"{P}.1.mlp.experts.{e}.down_proj.input_scale", torch.ones(1)) for e in range(2)], True),
    "extra-expert": (_extra_expert, True),
    "one-projection-of-one-expert-dropped": (
        lambda b: b.drop(rf"^{P}\.1\.mlp\.experts\.1\.down_proj\."), True),
    "one-scale-dropped": (
        lambda b: b.drop(rf"^{P}\.0\.mlp\.experts\.1\.up_proj\.weight_scale_inv$"), False),
    "one-expert-retyped": (
        lambda b: b.retype(rf"^{P}\.0\.mlp\.experts\.1\.up_proj\.weight$", torch.bfloat16),
        False),
    "one-expert-ignored": (
        lambda b: _ignore(b, f"{P}.0.mlp.experts.1.up_proj"), False),
    "a-layer-ignored": (lambda b: _ignore(b, f"{P}.0.mlp.experts"), True),
}


def _maps(ckpt: Checkpoint, engine: str) -> tuple[QuantMap, QuantMap]:
    spec = parse_engine(engine)
    return (resolve_quantization(ckpt, spec),
            resolve_quantization(ckpt, spec, share_experts=False))


def _record(mq: ModuleQuant) -> tuple[object, ...]:
    """A record as a value (two parses of one config give schemes that hold distinct but
    identical shape functions, so schemes compare by what they are)."""
    s = mq.scheme
    scheme = None if s is None else (s.format, s.label, s.weights, s.inputs,
                                     tuple(t.param for t in s.tensors))
    return mq.module, mq.resolution.reason, scheme, mq.logical_shape


def _records(mqs: Iterable[ModuleQuant]) -> list[tuple[object, ...]]:
    return [_record(mq) for mq in mqs]


def _built() -> Built:
    return qwen3_5_moe("fp8-block")


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_map_equals_every_module_resolved_on_its_own(tmp_path, mutation):
    b = _built()
    edit, blocks = MUTATIONS[mutation]
    edit(b)
    shared, alone = _maps(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert isinstance(shared.modules, ModuleMap) is blocks
    assert not isinstance(alone.modules, ModuleMap)
    assert list(shared.modules) == list(alone.modules)
    assert len(shared.modules) == len(alone.modules)
    assert shared.count_quantized() == len(alone.quantized())
    assert [s.label for s in shared.schemes()] == [s.label for s in alone.schemes()]
    assert _records(shared.modules.values()) == _records(alone.modules.values())


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.19.1", "sglang==0.5.13"])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_report_equals_the_module_by_module_report(tmp_path, mutation, engine):
    b = _built()
    MUTATIONS[mutation][0](b)
    ckpt = read_checkpoint(b.write(tmp_path))
    shared, alone = _maps(ckpt, engine)
    options = CheckOptions(engine=engine)
    got, want = run_rules(ckpt, shared, options), run_rules(ckpt, alone, options)
    assert got == want
    if mutation not in ("none", "a-layer-ignored") and engine.startswith("vllm"):
        assert got.findings  # each mutation is a defect some rule reports


def test_rules_grouping_from_blocks_equals_grouping_every_module(tmp_path):
    b = _built()
    b.drop(rf"^{P}\.1\.mlp\.experts\.1\.down_proj\.")  # layer 1 not alike, layer 0 alike
    shared, alone = _maps(read_checkpoint(b.write(tmp_path)), "vllm==0.33.0")
    assert isinstance(shared.modules, ModuleMap)
    got, want = group_experts(shared.modules), group_experts(alone.modules)
    assert got.alike == want.alike == {f"{P}.0.mlp.experts": True, f"{P}.1.mlp.experts": False}
    assert got.indices == want.indices
    assert got.first == want.first
    assert list(got.reduced) == list(want.reduced)
    assert _records(got.reduced.values()) == _records(want.reduced.values())


def test_a_member_is_built_once_and_only_when_asked_for(tmp_path):
    shared, alone = _maps(read_checkpoint(qwen3_moe("fp8-block", experts=4).write(tmp_path)),
                          "vllm==0.33.0")
    mods = shared.modules
    assert isinstance(mods, ModuleMap)
    member = "model.layers.1.mlp.experts.3.gate_proj"
    assert member not in mods.known and member in mods
    assert "model.layers.1.mlp.experts.4.gate_proj" not in mods
    assert mods.get("model.layers.1.mlp.experts.4.gate_proj") is None
    assert mods[member] is mods[member]
    assert _record(mods[member]) == _record(alone.modules[member])
    # a block's size counts every member; the walk gives each block once
    units = list(shared.walk())
    assert sum(n for *_, n in units) == len(mods)
    assert len(units) < len(mods)
    assert [n for n, *_ in shared.walk(blind=False)] == list(alone.modules)


def test_where_builds_a_block_only_when_its_first_member_is_kept(tmp_path):
    shared, alone = _maps(read_checkpoint(qwen3_moe("fp8-block", experts=4).write(tmp_path)),
                          "vllm==0.33.0")
    mods = shared.modules
    assert isinstance(mods, ModuleMap)

    def fp8(mq):
        return mq.scheme is not None

    def untouched(mq):
        return mq.scheme is None

    assert _records(shared.where(untouched)) == _records(alone.where(untouched))
    assert len(mods._built) == 0
    assert _records(shared.where(fp8)) == _records(alone.where(fp8))
    assert len(mods._built) > 0


def test_a_format_that_cannot_say_resolves_module_by_module(tmp_path):
    """compressed-tensors has no ``resolves_experts_alike``: its targets are resolved on
    every module's own name."""
    ckpt = read_checkpoint(qwen3_5_moe("ct-fp8").write(tmp_path))
    assert not isinstance(resolve_quantization(ckpt, "vllm==0.33.0").modules, ModuleMap)


def test_check_reads_no_member_record_on_a_clean_moe(tmp_path):
    """The rules that walk every module read blocks: a clean check builds no member."""
    from qscale.engines.loader import plan_load
    from qscale.rules import select
    from qscale.rules._api import Context
    from qscale.runner import _judge, _reduced

    ckpt = read_checkpoint(_built().write(tmp_path))
    spec = parse_engine("vllm==0.33.0")
    quant = resolve_quantization(ckpt, spec)
    mods = quant.modules
    assert isinstance(mods, ModuleMap)
    ctx = Context(ckpt, quant, plan_load(ckpt, spec, quant), engine=spec)
    reduced = _reduced(ctx)
    found = [f for rule in select((), ()) for f in _judge(rule, ctx, reduced)]
    assert not found
    assert len(mods._built) == 0


@pytest.mark.parametrize("shards", [1, 3])
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_plan_equals_the_tensor_by_tensor_plan(tmp_path, mutation, shards):
    """Three shards deal the names out in turn: an expert's tensors come in another order in
    each file, so a parameter's first source is not its first expert's."""
    from qscale.engines.loader import ExpertSources, plan_load

    b = _built()
    MUTATIONS[mutation][0](b)
    ckpt = read_checkpoint(b.write(tmp_path, shards=shards))
    spec = parse_engine("vllm==0.33.0")
    shared, alone = _maps(ckpt, "vllm==0.33.0")
    got, want = plan_load(ckpt, spec, shared), plan_load(ckpt, spec, alone)
    by_block = [p for p in got.params.values() if isinstance(p.sources, ExpertSources)]
    assert bool(by_block) is MUTATIONS[mutation][1]
    # the first source and the length, as read before the sources are built
    assert [(p.sources[0], len(p.sources)) for p in by_block] \
        == [(want.params[p.name].sources[0], len(want.params[p.name].sources)) for p in by_block]
    assert got == want
    assert all(tuple(p.sources) == want.params[p.name].sources for p in by_block)


def test_expert_sources_by_shard_reads_the_experts_without_building_them(tmp_path):
    from qscale.engines.loader import ExpertSources, plan_load

    b = _built()
    b.drop(rf"^{P}\.1\.mlp\.experts\.1\.down_proj\.")
    ckpt = read_checkpoint(b.write(tmp_path))
    plan = plan_load(ckpt, parse_engine("vllm==0.33.0"), resolve_quantization(ckpt))
    layer = "language_model.model.layers.1.mlp.experts.routed_experts"  # vLLM 0.33's names
    w13 = plan.params[f"{layer}.w13_weight"].sources
    w2 = plan.params[f"{layer}.w2_weight"].sources
    assert isinstance(w13, ExpertSources) and isinstance(w2, ExpertSources)
    assert w13.by_shard() == {"w1": {0, 1}, "w3": {0, 1}}
    assert w2.by_shard() == {"w2": {0}}
    assert w13._items is None
    assert {s.expert for s in w13} == {0, 1}


def test_a_parameter_fed_by_blocks_and_other_tensors_lists_every_source_in_order():
    from qscale.engines.loader import Places, ShardSlot, _every_source
    from qscale.module_map import ExpertBlock
    from qscale.modules import ModuleInfo, ModuleKind
    from qscale.safetensors_io import TensorInfo

    def tensor(name: str) -> TensorInfo:
        return TensorInfo(name, "BF16", (4, 4), "f.safetensors", 0, 32)

    members = {i: {"weight": tensor(f"x.experts.{i}.w1.weight")} for i in ("0", "1")}
    first = ModuleInfo("x.experts.0.w1", ModuleKind.LINEAR, members["0"])
    block = ExpertBlock("x.experts", "w1", ModuleKind.LINEAR, ["0", "1"], members, first)
    places = Places(["a", "x.experts.0.w1.weight", "b", "x.experts.1.w1.weight"])
    groups = {"p": [ShardSlot("a", "w3", 0), ShardSlot("b", "w3", 1)]}
    got = _every_source(groups, {"p": [("w1", block, "weight")]}, places)["p"]
    assert [s.source for s in got] == ["a", "x.experts.0.w1.weight", "b",
                                       "x.experts.1.w1.weight"]
    assert got[1] == ShardSlot("x.experts.0.w1.weight", "w1", 0)
    # fed by the block alone: the sources in checkpoint order, the first without sorting
    alone = _every_source({}, {"p": [("w1", block, "weight")]},
                          Places(["x.experts.1.w1.weight", "x.experts.0.w1.weight"]))["p"]
    assert alone[0] == ShardSlot("x.experts.1.w1.weight", "w1", 1)
    assert list(alone) == [ShardSlot("x.experts.1.w1.weight", "w1", 1),
                           ShardSlot("x.experts.0.w1.weight", "w1", 0)]


@pytest.mark.parametrize("field, value", [
    ("never_quantized", (".experts.1.up_proj",)),  # a suffix that names one expert
    ("unquantized_prefixes", (("model.language_model.layers.0.mlp.experts.1", ("*",)),)),
])
def test_a_family_name_test_that_can_tell_experts_apart_resolves_module_by_module(
        tmp_path, field, value):
    from dataclasses import replace

    from qscale.engines.catalogue import family_or_none
    from qscale.formats import _may_share, detect_format

    ckpt = read_checkpoint(_built().write(tmp_path))
    family = family_or_none(ckpt, "vllm==0.33.0")
    assert family is not None
    fmt = detect_format(ckpt)
    assert _may_share(fmt, family, ckpt)
    assert not _may_share(fmt, replace(family, **{field: value}), ckpt)


def test_a_member_whose_names_and_dtypes_swap_places_is_not_alike():
    """Header order alone would see the same (dtype, shape)s: the weight is judged by name."""
    from qscale.module_map import group_blocks
    from qscale.safetensors_io import TensorInfo

    def t(name, dtype, shape):
        return TensorInfo(name, dtype, shape, "m.safetensors", 0, 0)

    head = "model.layers.0.mlp.experts"
    big, small = ("F8_E4M3", (256, 256)), ("F32", (2, 2))
    first = {"weight": t(f"{head}.0.w1.weight", *big),
             "weight_scale_inv": t(f"{head}.0.w1.weight_scale_inv", *small)}
    swapped = {"weight_scale_inv": t(f"{head}.1.w1.weight_scale_inv", *big),
               "weight": t(f"{head}.1.w1.weight", *small)}
    reordered = {"weight_scale_inv": t(f"{head}.1.w1.weight_scale_inv", *small),
                 "weight": t(f"{head}.1.w1.weight", *big)}
    other = {"model.norm": {"weight": t("model.norm.weight", "BF16", (256,))}}
    assert group_blocks({**other, f"{head}.0.w1": first, f"{head}.1.w1": swapped}) is None
    grouped = group_blocks({**other, f"{head}.0.w1": first, f"{head}.1.w1": reordered})
    assert grouped is not None
    assert grouped.blocks[(head, "w1")].indices == ["0", "1"]


def test_the_rules_grouping_judges_a_swapped_member_by_name_too():
    from qscale.formats import _module_quant
    from qscale.formats._api import Resolution
    from qscale.modules import ModuleInfo, ModuleKind
    from qscale.safetensors_io import TensorInfo

    def t(name, dtype, shape):
        return TensorInfo(name, dtype, shape, "m.safetensors", 0, 0)

    head = "model.layers.0.mlp.experts"
    big, small = ("F8_E4M3", (256, 256)), ("F32", (2, 2))
    res = Resolution(None, "no quantization config")

    def mq(name, params):
        return _module_quant(ModuleInfo(name, ModuleKind.LINEAR, params), res, None)

    first = mq(f"{head}.0.w1", {"weight": t(f"{head}.0.w1.weight", *big),
                                "weight_scale_inv": t(f"{head}.0.w1.weight_scale_inv", *small)})
    swapped = mq(f"{head}.1.w1", {"weight_scale_inv": t(f"{head}.1.w1.weight_scale_inv", *big),
                                  "weight": t(f"{head}.1.w1.weight", *small)})
    reordered = mq(f"{head}.1.w1", {"weight_scale_inv": t(f"{head}.1.w1.weight_scale_inv", *small),
                                    "weight": t(f"{head}.1.w1.weight", *big)})
    assert group_experts({first.module.name: first, swapped.module.name: swapped}).alike \
        == {head: False}
    assert group_experts({first.module.name: first, reordered.module.name: reordered}).alike \
        == {head: True}


def test_alike_experts_read_their_scheme_off_the_first_source_when_their_blocks_differ():
    """Blocks of one scheme: any member's source reads it (no tensor is placed); blocks of
    two schemes: the source first in checkpoint order, as the tensor-by-tensor plan reads."""
    from types import SimpleNamespace

    from qscale.engines.loader import ExpertSources, Places
    from qscale.module_map import ExpertBlock
    from qscale.modules import ModuleInfo, ModuleKind
    from qscale.safetensors_io import TensorInfo

    def block(proj: str, scheme: object) -> ExpertBlock:
        members = {i: {"weight": TensorInfo(f"x.experts.{i}.{proj}.weight", "BF16", (4, 4),
                                            "f.safetensors", 0, 32)} for i in ("0", "1")}
        first = ModuleInfo(f"x.experts.0.{proj}", ModuleKind.LINEAR, members["0"])
        b = ExpertBlock("x.experts", proj, ModuleKind.LINEAR, ["0", "1"], members, first)
        b.quant = SimpleNamespace(scheme=scheme)  # type: ignore[assignment]
        return b

    order = ["x.experts.1.w3.weight", "x.experts.0.w1.weight", "x.experts.1.w1.weight",
             "x.experts.0.w3.weight"]

    class Counting(Places):
        calls = 0

        def __call__(self):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().__call__()

    one = object()
    same = ExpertSources([("w1", block("w1", one), "weight"), ("w3", block("w3", one), "weight")],
                         Counting(order))
    assert same.scheme_source() == "x.experts.0.w1.weight" and Counting.calls == 0
    two = ExpertSources([("w1", block("w1", one), "weight"),
                         ("w3", block("w3", object()), "weight")], Counting(order))
    assert two.scheme_source() == "x.experts.1.w3.weight" == two[0].source
    assert len(two) == 4 and [s.source for s in two] == order


def test_qs204_closest_names_by_block_equal_those_of_every_name(tmp_path):
    """QS204's prefix-drift hint (`closest:`) judges alike experts a block at a time: the
    same two names as a bisection of every module name."""
    from qscale.rules.qs204_ignore_entry_mismatch import _Near

    shared, alone = _maps(read_checkpoint(_built().write(tmp_path)), "vllm==0.33.0")
    assert isinstance(shared.modules, ModuleMap) and shared.modules.blocks
    names = list(alone.modules)
    experts = [n for n in names if ".experts." in n]
    layer = experts[0].rsplit(".", 2)[0]  # …layers.0.mlp.experts
    entries = [
        "drift." + experts[-1],  # one expert's name, one component cut
        "drift.more." + experts[0].split(".", 1)[1],  # two cut
        "x.y." + experts[0].split(".", 2)[-1],  # a tail that ends some layer's expert
        "x." + ".".join(experts[1].split(".")[-2:]),  # `{idx}.{proj}`: every layer's
        f"x.{layer}.999.gate_proj", "x.mlp.experts.0.no_such_proj",  # absent index, proj
        "x.y.xperts." + ".".join(experts[0].split(".")[-2:]),  # a layer tail cut mid-word
        "drift." + names[0], "x.y.mlp.gate", "x.y.self_attn.q_proj",  # outside the blocks
    ]
    by_block = _Near(list(shared.modules), shared.modules)
    every = _Near(names, set(names))
    got = [by_block.drifted(e) for e in entries]
    assert got == [every.drifted(e) for e in entries]
    assert got[0] == [experts[-1]] and got[1] == [experts[0]] and len(got[3]) == 2
    assert got[4] == got[5] == []
