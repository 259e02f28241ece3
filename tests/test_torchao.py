"""``quant_method: torchao`` on transformers + torchao 0.18 exports of a tiny Llama
(tests/fixtures/torchao/, made and loaded in real vLLM 0.33 by oracle/torchao_oracle.py): the
config and the safetensors metadata are checked as vLLM 0.33 rebuilds them (the load into the
merged and TP-sharded parameters: tests/test_torchao_load.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from builders import Built, from_files
from cli_runner import cli_forked, cli_in_process
from hub_server import HubServer, files_of

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat

FIXTURES = Path(__file__).parent / "fixtures" / "torchao"
K_PROJ = "model.layers.0.self_attn.k_proj"


def run(built: Built, tmp_path: Path, engine: str = "vllm==0.33.0", **write: int) -> list[str]:
    """The codes of the findings ``check`` gives (it raises on a refusal)."""
    report = check(read_checkpoint(built.write(tmp_path, **write)), CheckOptions(engine=engine))
    return [f.code for f in report.findings]


def meta(built: Built) -> dict[str, str]:
    assert isinstance(built.metadata, dict)
    return built.metadata


def test_missing_piece_is_the_weight_vllm_never_loads(tmp_path):
    # real vLLM 0.33 loaded this without an error and left k_proj's rows of qkv_proj unwritten
    built = from_files(FIXTURES / "llama-int8wo").drop(rf"{K_PROJ}\._weight_scale$")
    with pytest.raises(ConfigError, match=rf"never loads `{K_PROJ}\.weight`") as err:
        run(built, tmp_path)
    assert "listed by no file" not in err.value.message  # its other pieces are not news


def test_file_without_torchao_metadata_fails_like_vllm(tmp_path):
    built = from_files(FIXTURES / "llama-int8wo")
    built.metadata = {"format": "pt"}
    with pytest.raises(ConfigError, match="No tensors found"):
        run(built, tmp_path)


def test_subclass_torchao_cannot_rebuild_is_refused(tmp_path):
    built = from_files(FIXTURES / "llama-int8wo")
    entry = json.loads(meta(built)[f"{K_PROJ}.weight"])
    meta(built)[f"{K_PROJ}.weight"] = json.dumps({**entry, "_type": "AffineQuantizedTensor"})
    with pytest.raises(ConfigError, match="Unsupported tensor type"):
        run(built, tmp_path)


def test_tensor_no_file_lists_is_never_handed_to_the_model(tmp_path):
    built = from_files(FIXTURES / "llama-int8wo")
    names = [n for n in json.loads(meta(built)["tensor_names"]) if n != "lm_head.weight"]
    meta(built)["tensor_names"] = json.dumps(names)
    with pytest.raises(ConfigError, match=r"`lm_head\.weight` is listed by no file"):
        run(built, tmp_path)


def test_pieces_split_over_shards_complete_in_a_later_file(tmp_path):
    built = from_files(FIXTURES / "llama-int8wo")  # every file lists every tensor
    assert run(built, tmp_path, shards=3) == []


def test_pieces_after_the_only_file_listing_them_are_lost(tmp_path):
    built = from_files(FIXTURES / "llama-int8wo")
    full = meta(built)
    built.metadata = lambda i, names: full if i == 0 else {"tensor_names": "[]"}
    with pytest.raises(ConfigError, match="never loads"):
        run(built, tmp_path, shards=3)


def plain(built: Built, module: str) -> Built:
    """``module``'s weight stored dequantized, as a plain BF16 tensor in the metadata."""
    qdata = built.tensors.pop(f"{module}._weight_qdata")
    scale = built.tensors.pop(f"{module}._weight_scale")
    built.tensors.pop(f"{module}._weight_zero_point")
    built.tensors[f"{module}.weight"] = (qdata.float() * scale).to(torch.bfloat16)
    meta(built)[f"{module}.weight"] = json.dumps({"_type": "Tensor"})
    return built


@pytest.mark.parametrize("module", ["model.layers.1.self_attn.o_proj",  # o_proj of layer 0
                                    "model.layers.0.self_attn.q_proj"])  # k/v: qkv_proj
def test_plain_weight_where_vllm_builds_a_subclass_fails_like_vllm(tmp_path, module):
    # real vLLM 0.33: AttributeError: 'Tensor' object has no attribute 'qdata'
    built = plain(from_files(FIXTURES / "llama-int8wo"), module)
    with pytest.raises(ConfigError, match=rf"`{module}\.weight` is stored as a plain tensor"):
        run(built, tmp_path)


def test_plain_weight_the_config_skips_is_fine(tmp_path):
    built = plain(from_files(FIXTURES / "llama-int8wo"), "model.layers.1.self_attn.o_proj")
    built.config["quantization_config"]["modules_to_not_convert"] = ["layers.1.self_attn.o_proj"]
    assert run(built, tmp_path) == []


@pytest.mark.parametrize(("quant_type", "words"), [
    (None, "quant_type must be specified"),
    ("int4_weight_only", "Expected only one key 'default'"),
    ({"default": {"_type": "Int8WeightOnlyConfig"}, "lm_head": {}}, "only one key 'default'"),
    ({"default": {"_type": "Int8WeightOnlyConfig"}}, "missing required '_type' or '_data'"),
])
def test_configs_vllm_refuses(tmp_path, quant_type, words):
    built = from_files(FIXTURES / "llama-int8wo")
    qc = built.config["quantization_config"]
    if quant_type is None:
        del qc["quant_type"]
    else:
        qc["quant_type"] = quant_type
    with pytest.raises(ConfigError, match=words):
        run(built, tmp_path)


@pytest.mark.parametrize("engine", ["sglang==0.5.12", "vllm==0.17.0"])
def test_other_engines_are_not_checked(tmp_path, engine):
    with pytest.raises(UnknownFormat, match="not checked"):
        run(from_files(FIXTURES / "llama-int8wo"), tmp_path, engine)


def test_cli_exit_code(run_cli):
    result = run_cli("check", str(FIXTURES / "llama-int8wo"), "--engine", "vllm==0.33.0")
    assert result.returncode == 0, result.stderr
    assert "no findings" in result.stdout


@pytest.mark.parametrize("broken", [False, True])
def test_hub_repo_reads_the_same_metadata(tmp_path, broken):
    # the metadata lives in the safetensors headers, which a Hub check reads by range requests
    built = from_files(FIXTURES / "llama-int8wo")
    if broken:
        built.drop(rf"{K_PROJ}\._weight_scale$")
    folder = built.write(tmp_path)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QSCALE_"))}
    with HubServer() as hub:
        hub.add("ao/llama-int8wo", files_of(folder))
        env = {**{k: v for k, v in base.items() if "proxy" not in k.lower()},
               "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
               "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1",
               "NO_PROXY": "127.0.0.1,localhost"}
        remote = cli_forked("check", "ao/llama-int8wo", "--engine", "vllm==0.33.0", env=env)
    local = cli_in_process("check", str(folder), "--engine", "vllm==0.33.0")
    assert remote.returncode == local.returncode == (2 if broken else 0)
    assert remote.stderr == local.stderr
    assert ("QS101" in remote.stderr) is broken


def test_routed_experts_are_not_modelled(tmp_path):
    # vLLM builds routed experts as FusedMoE, which TorchAOConfig gives no method: what the MoE
    # layer makes of torchao-quantized or plain experts is not modelled (QS102), and the plain
    # expert weight is no QS101
    built = from_files(FIXTURES / "llama-int8wo")
    for layer in (0, 1):  # the same expert in two layers: a subclass in 0, plain in 1
        src = f"model.layers.{layer}.mlp.down_proj"
        dst = f"model.layers.{layer}.mlp.experts.0.down_proj"
        for piece in ("qdata", "scale", "zero_point"):
            stored = built.tensors[f"{src}._weight_{piece}"]
            built.tensors[f"{dst}._weight_{piece}"] = stored.clone()
        meta(built)[f"{dst}.weight"] = meta(built)[f"{src}.weight"]
        names = json.loads(meta(built)["tensor_names"])
        meta(built)["tensor_names"] = json.dumps([*names, f"{dst}.weight"])
    plain(built, "model.layers.1.mlp.experts.0.down_proj")
    with pytest.raises(UnknownFormat, match=r"routed experts \(`model\.layers\.0\.mlp\.experts`"
                       r" and more; .*FusedMoE.* is not modelled"):
        run(built, tmp_path)
