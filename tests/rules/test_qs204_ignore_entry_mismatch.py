import pytest
from builders import CT_IGNORE, qwen3_5_moe

from qscale import Severity
from rules.helpers import run

HF_ANCHORED = r"re:^model\.language_model\.layers\.\d+\.mlp\.shared_expert\..*"


def test_regex_anchored_on_the_hugging_face_prefix(tmp_path):
    # the quantizer matched HF names and left the shared experts BF16; vLLM matches `re:`
    # entries against language_model.model.layers.* and builds them quantized
    built = qwen3_5_moe("ct-mxfp4", shared_expert="bf16", ignore=[*CT_IGNORE, HF_ANCHORED])
    [f] = run(built, tmp_path, "QS204")
    assert f.severity == Severity.ERROR and f.location.key == "/quantization_config/ignore"
    assert "skips 6 module(s) under the checkpoint's names but 0 of them under vLLM's" in f.message
    assert "`language_model.model.layers.0.mlp.shared_expert." in f.message


def test_same_regex_on_the_text_only_class(tmp_path):
    built = (qwen3_5_moe("ct-mxfp4", shared_expert="bf16", ignore=[*CT_IGNORE, HF_ANCHORED])
             .set_config("/architectures", ["Qwen3_5MoeForCausalLM"]))
    [f] = run(built, tmp_path, "QS204")
    assert "`model.layers.0.mlp.shared_expert." in f.message


def test_fused_name_where_the_checkpoint_stores_shards(tmp_path):
    entry = "model.language_model.layers.1.self_attn.qkv_proj"
    [f] = run(qwen3_5_moe("ct-fp8", ignore=[*CT_IGNORE, entry]), tmp_path, "QS204")
    assert f.severity == Severity.WARNING and f"`{entry}` matches no module" in f.message
    assert "the engine fuses it from `model.language_model.layers.1.self_attn.q_proj`, `" \
        in f.message and "v_proj`" in f.message


def test_prefix_drift_in_a_quark_exclude(tmp_path):
    built = qwen3_5_moe("quark-mxfp4")
    qc = built.config["quantization_config"]
    qc["exclude"] = [*qc["exclude"], "model.layers.0.mlp.gate"]
    [f] = run(built, tmp_path, "QS204")
    assert "closest: `model.language_model.layers.0.mlp.gate`" in f.message


@pytest.mark.parametrize("entry", [r"re:.*mlp\.shared_expert\..*", None])
def test_near_miss_regex_that_matches_both_namings(tmp_path, entry):
    ignore = None if entry is None else [*CT_IGNORE, entry]
    assert run(qwen3_5_moe("ct-mxfp4", shared_expert="bf16", ignore=ignore), tmp_path,
               "QS204") == []


@pytest.mark.parametrize(("entry", "hint"), [
    # a part of the model the checkpoint does not hold: no guess at a "closest" name
    ("model.visual.blocks.0.attn.qkv", "the checkpoint has no module under `model.visual`"),
    ("model.language_model.layers.7.mlp.gate",
     "the checkpoint has no module under `model.language_model.layers.7`"),
    # a misspelt component is corrected level by level
    ("model.language_model.layer.0.mlp.gate", "closest: `model.language_model.layers.0.mlp.gate`"),
    ("model.language_model.layers.0.mlp.gat", "closest: `model.language_model.layers.0.mlp.gate`"),
])
def test_hint_for_an_entry_that_matches_nothing(tmp_path, entry, hint):
    built = qwen3_5_moe("quark-mxfp4")
    qc = built.config["quantization_config"]
    qc["exclude"] = [*qc["exclude"], entry]
    [f] = run(built, tmp_path, "QS204")
    assert f.severity == Severity.WARNING
    assert f.message == f"`{entry}` matches no module of the checkpoint; {hint}"


def test_hints_cost_no_whole_checkpoint_search():
    # 20,000 expert modules and 400 absent entries: each hint compares a bounded set of names
    import time

    from qscale.rules.qs204_ignore_entry_mismatch import _Near

    names = sorted(f"model.layers.{i}.mlp.experts.{e}.{p}" for i in range(40) for e in range(128)
                   for p in ("gate_proj", "up_proj", "down_proj", "x")[: 4 if e % 2 else 3])
    near = _Near(names, set(names))
    t = time.process_time()
    for k in range(400):
        assert near.walk(f"model.visual.blocks.{k}.attn.qkv") == ([], "model.visual")
        assert near.drifted(f"mtp.layers.{k}.mlp.gate") == []
    assert near.walk("model.layers.3.mlp.experts.5.gate_prj") == (
        ["model.layers.3.mlp.experts.5.gate_proj"], None)
    assert time.process_time() - t < 2.0  # a difflib search over all names took ~0.3 s each


def test_substring_and_glob_entries_match_as_a_scan_of_every_name():
    # `_Parts` narrows the names a substring / leading-`*` entry is tried on; it must find a
    # match exactly when trying every name does
    import random

    from qscale.formats._api import wildcard
    from qscale.rules.qs204_ignore_entry_mismatch import _Parts, _wildcard_hit

    rng = random.Random(7)
    comps = ["model", "language_model", "layers", "0", "1", "12", "mlp", "experts", "gate",
             "gate_proj", "up_proj", "shared_expert", "mtp", "fc", "lm_head", "xlanguage_model"]
    names = sorted({".".join(rng.choice(comps) for _ in range(rng.randint(1, 6)))
                    for _ in range(300)})
    stripped = sorted((n.replace("language_model.", "", 1), n) for n in names
                      if "language_model." in n)
    parts = _Parts(names)
    for _ in range(3000):
        n = rng.choice(names)
        a = rng.randrange(len(n))
        entry = n[a:a + rng.randint(1, 30)]
        if rng.random() < 0.3:
            entry = entry[: rng.randrange(len(entry) + 1)] + rng.choice(["x", "_v1", ".9"])
        if rng.random() < 0.3:
            entry = rng.choice(["*", "?", "*."]) + entry + rng.choice(["", "*"])
        brute = any(wildcard(m, entry) for m in names)
        assert bool(_wildcard_hit(entry, names, stripped, parts)) == brute, entry
