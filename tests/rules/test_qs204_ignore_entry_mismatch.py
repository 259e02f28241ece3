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
