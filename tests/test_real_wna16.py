"""GPTQ / AWQ / AutoRound (integer) checkpoints written by the real AutoRound tool, against
what real vLLM 0.32.0 and 0.33.0 loaded from them on a CPU (issue #12 item 3).

Fixtures: tests/fixtures/real/autoround-<model>-<format>/ (oracle/wna16_ckpts.py, auto-round
0.15.1 RTN: ``auto_gptq``, ``auto_awq``, ``auto_round`` and ``auto_round:auto_awq`` exports of a
tiny Llama; ``auto_gptq``, ``auto_awq`` and ``auto_round`` of a tiny Qwen3-MoE). Goldens:
tests/fixtures/vllm_golden/autoround-*.json, with the quantization vLLM picked
(``quantization``) and the quant method class of every module (``quant_methods``).
test_arch_oracle.py compares every loader call with qscale's plan; this file adds the
WNA16-specific facts: which modules vLLM builds quantized, ``g_idx`` dropped before any loader,
fused partitions, the CLI verdict, and broken copies (one ``qzeros`` removed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli_in_process
from safetensors.torch import load_file, save_file

from qscale import read_checkpoint, resolve_quantization
from qscale.engines.loader import plan_load

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
GOLDEN = FIXTURES / "vllm_golden"
NAMES = sorted(d.name for d in REAL.glob("autoround-*") if d.is_dir())
VERSIONS = ("0.32.0", "0.33.0")


def _golden(name: str, version: str, variant: str = "") -> dict[str, Any]:
    suffix = ("" if version == "0.32.0" else f"@vllm-{version}") + variant
    return json.loads((GOLDEN / f"{name}{suffix}.json").read_text())


def _loaded_golden(name: str, version: str) -> dict[str, Any]:
    """The golden of a load vLLM completed: the CPU one, else the GPU-path variant (on a CPU
    vLLM builds auto-round integer experts unquantized; see test_arch_oracle.DISAGREE)."""
    g = _golden(name, version)
    return g if g["load"] == "ok" else _golden(name, version, "@moe-as-gpu")


def _cli(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), "--engine", f"vllm=={version}")


def test_every_fixture_has_goldens() -> None:
    assert len(NAMES) == 7, NAMES
    for name in NAMES:
        for v in VERSIONS:
            assert _loaded_golden(name, v)["vllm_version"] == v


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_check_is_clean(name: str, version: str) -> None:
    r = _cli(REAL / name, version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no findings" in r.stdout


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_quantized_modules_are_the_ones_vllm_builds_quantized(name: str, version: str) -> None:
    """Every engine module qscale plans packed weights for (``…qweight``) has a quantized
    method in real vLLM, and every module vLLM built with one gets packed weights."""
    g = _loaded_golden(name, version)
    plan = plan_load(read_checkpoint(REAL / name), f"vllm=={version}")
    planned = {p.rsplit(".", 1)[0] for p in plan.params if p.endswith("qweight")}
    real = {m for cls, mods in g["quant_methods"].items() if not cls.startswith("Unquantized")
            for m in mods}
    assert planned and planned == real


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", [n for n in NAMES if n.endswith("auto_gptq")])
def test_g_idx_is_dropped_as_vllm_drops_it(name: str, version: str) -> None:
    """AutoRound's auto_gptq export writes a (trivial) ``g_idx`` per Linear; vLLM maps it away
    before any loader (no call, no parameter), and qscale's plan skips exactly those."""
    g = _loaded_golden(name, version)
    ckpt = read_checkpoint(REAL / name)
    stored = {t for t in ckpt.tensors if t.endswith(".g_idx")}
    assert stored and stored <= set(g["uncalled"])
    assert not [p for p in g["params"] if "g_idx" in p]
    plan = plan_load(ckpt, f"vllm=={version}")
    assert stored <= set(plan.skipped)
    assert not [p for p in plan.params if "g_idx" in p]
    assert not [s for p in plan.params.values() for s in p.sources if s.source in stored]


def _without(src: Path, dst: Path, tensor: str) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            t = load_file(f)
            assert tensor in t
            del t[tensor]
            save_file(t, dst / f.name)
        else:
            shutil.copy2(f, dst / f.name)
    return dst


BROKEN = [
    ("autoround-llama-auto_gptq", "model.layers.1.self_attn.k_proj.qzeros"),
    ("autoround-llama-auto_awq", "model.layers.0.mlp.down_proj.qzeros"),
    ("autoround-llama-auto_round", "model.layers.1.mlp.up_proj.qzeros"),
    ("autoround-llama-auto_round-auto_awq", "model.layers.0.self_attn.o_proj.qzeros"),
    ("autoround-qwen3_moe-auto_gptq", "model.layers.1.mlp.experts.2.down_proj.qzeros"),
    ("autoround-qwen3_moe-auto_awq", "model.layers.0.mlp.experts.3.gate_proj.qzeros"),
]


@pytest.mark.parametrize(("name", "tensor"), BROKEN)
def test_missing_qzeros_is_an_error_naming_the_module(tmp_path: Path, name: str,
                                                      tensor: str) -> None:
    r = _cli(_without(REAL / name, tmp_path / "broken", tensor), "0.33.0")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"QS201 error [missing-quantization-tensor] `{tensor}` is missing" in r.stdout
    assert r.stdout.count(" error [") == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_qzeros_loads_silently_in_real_vllm(tmp_path: Path, version: str) -> None:
    """Real vLLM loads the copy without k_proj's qzeros "ok": the k rows of the fused
    ``qkv_proj.qzeros`` keep their construction value (INT_MAX under the oracle's torch.empty),
    so the error is qscale's to give. The plan agrees with every loader call vLLM made."""
    from test_arch_oracle import disagreements

    name, tensor = BROKEN[0]
    g = _golden(f"{name}-NEG-no-qzeros", version)
    assert g["load"] == "ok" and g["vllm_version"] == version
    ckpt = read_checkpoint(_without(REAL / name, tmp_path / "broken", tensor))
    plan = plan_load(ckpt, f"vllm=={version}")
    assert disagreements(g, plan) == []
    param = "model.layers.1.self_attn.qkv_proj.qzeros"
    fed = {s.shard_id for s in plan.param(param).sources}
    assert fed == {"q", "v"}
    real = g["params"][param]
    src = read_checkpoint(REAL / name).tensors  # the columns of q_proj's and k_proj's qzeros
    q, k = (src[f"model.layers.1.self_attn.{x}_proj.qzeros"].shape[1] for x in "qk")
    assert len(real["values"]) == 2 * q  # one group: q 16 + k 8 + v 8 columns
    assert real["values"][q:q + k] == real["init_values"][q:q + k]  # never written
    assert real["values"][:q] != real["init_values"][:q]


def test_g_idx_is_a_parameter_before_vllm_0_30() -> None:
    """The g_idx mapper came with the removal of GPTQ group act order (vLLM 0.30.0, the
    release that also refuses desc_act with a group size); 0.29.x still builds ``g_idx``
    parameters, so the plan keeps feeding them there (read from the sources, no golden)."""
    ckpt = read_checkpoint(REAL / "autoround-llama-auto_gptq")
    old, new = (plan_load(ckpt, f"vllm=={v}") for v in ("0.29.0", "0.30.0"))
    g_idx = {t for t in ckpt.tensors if t.endswith(".g_idx")}
    assert g_idx <= set(new.skipped) and not g_idx & set(old.skipped)
    assert {s.source for p in old.params.values() for s in p.sources} >= g_idx


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_fused_partitions_add_up_to_vllm_qweight(name: str, version: str) -> None:
    """The output sizes qscale gives each fused ``qweight`` (qkv_proj, gate_up_proj) add up to
    the columns of vLLM's parameter: GPTQ packs the input dim ([in/8, out]), AWQ the output
    dim ([in, out/8])."""
    g = _loaded_golden(name, version)
    ckpt = read_checkpoint(REAL / name)
    plan = plan_load(ckpt, f"vllm=={version}")
    quant = resolve_quantization(ckpt, f"vllm=={version}")
    fused = [p for p in plan.params.values() if p.leaf == "qweight" and len(p.sources) > 1
             and p.sources[0].expert is None]
    assert fused
    for p in fused:
        scheme = quant.modules[p.sources[0].source.rpartition(".")[0]].scheme
        assert scheme is not None and p.partitions and all(p.partitions)
        cols = g["params"][p.name]["shape"][1]
        assert sum(p.partitions) == (cols if scheme.format == "gptq" else cols * 8), p.name
