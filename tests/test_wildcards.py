"""The compiled ModelOpt matchers give what matching pattern by pattern gives: `Wildcards.first`
(resolution) and QS204's `_wildcard_hit` against `wildcard` tried on every pattern / name."""

from __future__ import annotations

import itertools

from qscale.formats._api import Wildcards, wildcard
from qscale.rules.qs204_ignore_entry_mismatch import _wildcard_hit

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
