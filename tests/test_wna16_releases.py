"""GPTQ / AutoRound facts by vLLM release, at the boundaries read in the wheels of 0.25.0-0.28.0
and 0.31.0-0.32.0 (``qscale/engines/wna16.py``), and refusals named with the release checked."""

from __future__ import annotations

import pytest
from builders import dense, qwen3_moe

from qscale import CheckOptions, check, read_checkpoint, resolve_quantization
from qscale.errors import ConfigError, UnknownFormat
from qscale.layout import Deployment


def _auto_round(tmp_path, name: str, **qc):
    b = dense("LlamaForCausalLM", "gptq")
    b.config["quantization_config"] = {
        "quant_method": "auto-round", "bits": 4, "group_size": 128, "sym": True,
        "data_type": "int", "packing_format": "auto_round:auto_gptq", **qc}
    return read_checkpoint(b.write(tmp_path, name=name))


def test_moe_marlin_act_order_tiles_from_0_25(tmp_path):
    # group 32 with act order, 256 intermediate at MoE TP=8: 32 per rank. 0.24's fused Marlin
    # MoE check is strict (a multiple of 64: the MoE WNA16 fallback); 0.25 keeps it strict only
    # under act order (the same layer without act order stays on Marlin)
    with_act = qwen3_moe("gptq", group=32).set_config("/quantization_config/desc_act", True)

    def experts(ckpt, engine: str) -> list[str]:
        opts = CheckOptions(engine=engine, select=("QS505",), deployment=Deployment(tp=8))
        return [f.message for f in check(ckpt, opts).findings if ".experts" in f.message]

    act = read_checkpoint(with_act.write(tmp_path, name="act"))
    plain = read_checkpoint(qwen3_moe("gptq", group=32).write(tmp_path, name="plain"))
    assert experts(plain, "vllm==0.24.0")
    assert experts(plain, "vllm==0.25.0") == []
    assert experts(act, "vllm==0.25.0")
    assert experts(act, "vllm==0.28.0")


@pytest.mark.parametrize(("engine", "error", "match"), [
    ("vllm==0.26.0", ConfigError,
     r"vllm==0\.26\.0 refuses auto-round packing_format 'auto_round:llm_compressor'"),
    ("vllm==0.27.0", UnknownFormat, r"vllm==0\.27\.0 accepts int auto-round with packing_format"),
    ("vllm==0.33.0", ConfigError, r"vllm==0\.33\.0 refuses int auto-round with packing_format"),
])
def test_auto_round_int_packing_by_release(tmp_path, engine, error, match):
    ckpt = _auto_round(tmp_path, "llmc", packing_format="auto_round:llm_compressor")
    with pytest.raises(error, match=match):
        resolve_quantization(ckpt, engine)


def test_auto_round_refusals_name_the_release_checked(tmp_path):
    ckpt = _auto_round(tmp_path, "exl", backend="exllama")
    for engine in ("vllm==0.21.0", "vllm==0.31.0"):
        with pytest.raises(ConfigError, match=rf"{engine} refuses auto-round backend 'exllama'"):
            resolve_quantization(ckpt, engine)
    fp8 = _auto_round(tmp_path, "fp8", packing_format="auto_round:fp8")
    with pytest.raises(ConfigError, match=r"vllm==0\.28\.0 refuses auto-round packing_format"):
        resolve_quantization(fp8, "vllm==0.28.0")
    # near miss: the default packing loads on every release
    resolve_quantization(_auto_round(tmp_path, "ok"), "vllm==0.26.0")


def test_auto_round_mx_fp_from_0_27(tmp_path):
    ckpt = _auto_round(tmp_path, "mx", data_type="mx_fp", bits=8, group_size=32,
                       packing_format="auto_round:llm_compressor")
    with pytest.raises(ConfigError, match="refuses auto-round data_type 'mx_fp'"):
        resolve_quantization(ckpt, "vllm==0.26.0")
    with pytest.raises(UnknownFormat, match=r"accepted by vllm==0\.27\.0"):
        resolve_quantization(ckpt, "vllm==0.27.0")
