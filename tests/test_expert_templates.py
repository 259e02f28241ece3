"""Routes computed once per expert template (qscale.engines.templates) give exactly the
per-name routes of the engine simulation's public steps, and the guards keep out what could
tell one expert index from another."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import gpt_oss, qwen3_5_moe, qwen3_moe
from test_real_tools import REFUSED

from qscale import read_checkpoint
from qscale.engines import parse_engine
from qscale.engines.catalogue import family_for
from qscale.engines.families import Family
from qscale.engines.loader import (
    _index_blind,
    engine_name,
    map_tensor,
    plan_load,
    renamed_twice,
    skipped_by,
)
from qscale.engines.templates import (
    ExpertMemo,
    index_blind_literals,
    index_blind_regexes,
    split_expert,
)
from qscale.formats import resolve_quantization

REAL = Path(__file__).parent / "fixtures" / "real"


def _per_name(ckpt, spec):
    """Every tensor's route from the public per-name steps, without any memo."""
    quant = resolve_quantization(ckpt, spec)
    fam = family_for(ckpt, spec).for_engine(spec.engine)
    text = ckpt.config.text
    routes, skipped = {}, []
    for name in ckpt.tensors:
        eng = engine_name(fam, name)
        if skipped_by(fam, name, eng, text):
            skipped.append(name)
            continue
        if renamed_twice(fam, spec, name, eng) is not None:
            continue
        pname, slot = map_tensor(fam, spec, name, eng)
        routes[name] = (pname, slot.shard_id, slot.expert)
    return quant, routes, skipped


def _assert_same_routes(path: Path, engine: str) -> None:
    ckpt, spec = read_checkpoint(path), parse_engine(engine)
    quant, routes, skipped = _per_name(ckpt, spec)
    plan = plan_load(ckpt, spec, quant)
    planned = {s.source: (p, s.shard_id, s.expert)
               for p, m in plan.params.items() for s in m.sources}
    assert planned, path
    assert {n: routes[n] for n in planned} == planned
    assert set(skipped) <= set(plan.skipped)


BUILT = {
    "qwen3_5_moe-ct-fp8": lambda: qwen3_5_moe("ct-fp8"),
    "qwen3_5_moe-ct-nvfp4": lambda: qwen3_5_moe("ct-nvfp4"),
    "qwen3_5_moe-modelopt-fp8": lambda: qwen3_5_moe("modelopt-fp8"),
    "gpt_oss-ct-fp8": lambda: gpt_oss("ct-fp8"),
    "qwen3_moe-gptq-12-experts": lambda: qwen3_moe("gptq", experts=12),
}


@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.19.1", "sglang==0.5.12"])
@pytest.mark.parametrize("which", sorted(BUILT))
def test_built_moe_routes_match_per_name_routes(tmp_path, which, engine):
    _assert_same_routes(BUILT[which]().write(tmp_path), engine)


@pytest.mark.parametrize("fixture", sorted(p.name for p in REAL.iterdir() if p.is_dir()))
def test_real_tool_checkpoint_routes_match_per_name_routes(fixture):
    # a checkpoint the newest vLLM refuses is planned as the last release that builds it
    _assert_same_routes(REAL / fixture, "vllm==0.29.0" if fixture in REFUSED else "vllm==0.33.0")


def test_split_keeps_the_number_of_digits():
    a = split_expert("model.layers.3.mlp.experts.7.down_proj.weight")
    b = split_expert("model.layers.3.mlp.experts.70.down_proj.weight")
    assert a is not None and b is not None and a[0] != b[0]
    key, j, k = a
    assert key == "model.layers.3.mlp.experts.#.down_proj.weight"
    assert "model.layers.3.mlp.experts.7.down_proj.weight"[j:k] == "7"
    assert split_expert("model.layers.3.mlp.experts.gate_up_proj") is None
    assert split_expert("model.layers.3.mlp.shared_expert.down_proj.weight") is None


@pytest.mark.parametrize(("pattern", "blind"), [
    (r"\.experts\.\d+\.w1$", True),
    (r"^(model\.layers\.\d+)\.mlp\.", True),
    (r"\.experts\.\d{2}\.", True),  # the key keeps the digit count
    (r"(\.experts\.\d+\.w[123])\.scale$", True),  # a letter before the digits
    (r"\.experts\.7\.", False),
    (r"\.experts\.\w1\.", False),
    (r"\.experts\.[0-7]+\.", False),
    (r"(\d)\1", False),
    (r"conv_blocks\.0\.", False),
])
def test_regex_guard(pattern, blind):
    assert index_blind_regexes([pattern]) is blind


@pytest.mark.parametrize(("literal", "blind"), [
    ("mtp.", True), (".w1", True), ("gate_up_proj", True),
    ("experts.7.", False), ("s.12.w2", False), ("3.down_proj", False), ("layers.0.", False),
])
def test_literal_guard(literal, blind):
    assert index_blind_literals([literal]) is blind


def test_a_family_that_names_one_expert_is_routed_name_by_name():
    plain = Family("f", ("X",), ())
    assert _index_blind(plain)
    assert not _index_blind(Family("f", ("X",), (), regex_map=((r"\.experts\.7\.", ".x."),)))
    assert not _index_blind(Family("f", ("X",), (), skip_substrings=("experts.3.",)))
    assert not _index_blind(Family("f", ("X",), (), skip_substrings=(r"re:experts\.[12]\.",)))


def test_memo_computes_name_by_name_where_results_do_not_follow_the_index():
    names = [f"m.layers.0.mlp.experts.{i}.w1.weight" for i in range(1, 30)]
    calls = []

    def compute(name: str) -> int:  # not a function of the template: '1's in the name
        calls.append(name)
        return name.count("1")

    memo = ExpertMemo(compute, lambda r, d: (lambda d2: r))
    assert [memo(n) for n in names] == [n.count("1") for n in names]
    assert len(calls) == len(names)


def test_memo_reinstantiates_a_verified_template():
    names = [f"m.layers.0.mlp.experts.{i}.w1.weight" for i in range(10, 60)]
    calls = []

    def compute(name: str) -> str:
        calls.append(name)
        return name.replace(".w1.", ".w13_")

    def bind(r: str, d: str):
        pre, post = r.split(f".experts.{d}.")
        return lambda d2: f"{pre}.experts.{d2}.{post}"

    memo = ExpertMemo(compute, bind)
    assert [memo(n) for n in names] == [compute(n) for n in names]
    assert len(calls) == len(names) + 2  # the first index, and the second to verify
