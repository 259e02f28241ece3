"""The compiled ModelOpt matchers give what matching pattern by pattern gives: `Wildcards.first`
(resolution) and QS204's `_wildcard_hit` against `wildcard` tried on every pattern / name."""

from __future__ import annotations

import itertools
import random

from qscale.formats._api import Wildcards, wildcard
from qscale.rules.qs204_ignore_entry_mismatch import _Parts, _wildcard_hit

NAMES = sorted(
    [
        "lm_head",
        "model.embed_tokens",
        "mtp.fc",
        "mtp.layers.0.mlp.experts.0.up_proj",
        "model.visual.blocks.0.attn.qkv",
        *(
            f"model.language_model.layers.{i}.{m}"
            for i, m in itertools.product(
                (0, 1, 3, 10),
                ("linear_attn.in_proj_qkv", "self_attn.q_proj", "mlp.gate",
                 "mlp.shared_expert.up_proj", "mlp.shared_expert_gate", "mlp.experts.7.down_proj"),
            )
        ),
        "model.layers.2.mlp.gate",
    ]
)
PATTERNS = [
    "lm_head",
    "*.mlp.shared_expert.*",
    "model.language_model.layers.1.linear_attn*",
    "model.layers.3.self_attn*",  # matches only with `language_model.` dropped
    "model.language_model.layers.10.mlp.shared_expert*",
    "model.visual*",
    "mtp*",
    "layers.0.mlp.gate",  # substring
    "model.layers.1*",  # glob on the dropped-prefix name
    "*experts.[0-7].down_proj",
    "nothing*",
    "nothing",
    "model.language_model.layers.?.mlp.gate",
]


def test_first_matches_pattern_by_pattern():
    for k in range(len(PATTERNS) + 1):
        for patterns in (PATTERNS[:k], PATTERNS[k:], PATTERNS[::-1][:k]):
            w = Wildcards(patterns)
            for n in NAMES:
                assert w.first(n) == next((p for p in patterns if wildcard(n, p)), None), (n, k)


def test_hit_matches_every_name():
    stripped = sorted(
        (n.replace("language_model.", "", 1), n) for n in NAMES if "language_model." in n
    )
    for p in PATTERNS:
        brute = [n for n in NAMES if wildcard(n, p)]
        hit = _wildcard_hit(p, NAMES, stripped)
        assert bool(hit) == bool(brute), p
        assert set(hit) <= set(brute), p


def _variants() -> list[str]:
    """PATTERNS, each with copies that name nothing or other layers, in a fixed shuffle: a
    list long enough to be searched through its tree of ranges at several levels."""
    out = [f"{p}_v{k}" for p in PATTERNS for k in range(12)]
    out += [p.replace("layers.1", f"layers.{k}") for p in PATTERNS for k in range(20, 40)]
    out += PATTERNS
    random.Random(7).shuffle(out)
    return out


def test_first_in_a_long_list_is_the_first_pattern_by_pattern():
    patterns = _variants()
    assert len(patterns) > 16 * 16  # deeper than one level of ranges
    w = Wildcards(patterns)
    for n in NAMES:
        assert w.first(n) == next((p for p in patterns if wildcard(n, p)), None), n


def test_hit_with_a_long_run_under_the_head_matches_every_name():
    names = sorted([*NAMES, *(f"mtp.layers.0.mlp.experts.{e}.{p}_proj" for e in range(120)
                              for p in ("gate", "up", "down"))])
    stripped = sorted(
        (n.replace("language_model.", "", 1), n) for n in names if "language_model." in n
    )
    parts = _Parts(names)
    entries = ["mtp.layers.0*_v5", "mtp.layers.0*", "mtp.layers.0.mlp.experts.1?.up_proj",
               "mtp.layers.0*.11?.down*", "mtp.layers.0*up_proj_v1",
               "model.language_model.layers.1.mlp.shared_expert_gate_v9",
               "model.language_model.layers.1.mlp.shared_expert_gate", *PATTERNS]
    for p in entries:
        brute = [n for n in names if wildcard(n, p)]
        hit = _wildcard_hit(p, names, stripped, parts)
        assert bool(hit) == bool(brute), p
        assert set(hit) <= set(brute), p
