"""GPTQ checkpoints written by the real GPTQModel, with and without act order, against what
real vLLM 0.32.0 and 0.33.0 did with them on a CPU (issue #12).

Fixtures: tests/fixtures/real/gptqmodel-llama-{desc_act,no_desc_act}/ (oracle/gptqmodel_ckpts.py,
GPTQModel 7.6.0: a tiny Llama, 4 bits, group 32, real GPTQ on random calibration tokens).
``desc_act`` stores a permuted ``g_idx`` per Linear and ``desc_act: true``; ``no_desc_act`` is
GPTQModel's default (``act_group_aware``, static order: trivial ``g_idx``). Goldens:
tests/fixtures/vllm_golden/gptqmodel-*.json. Both releases refuse the act-order checkpoint
while building their config and load the other one; ``…-NEG-config-false`` is the act-order
checkpoint with its config flipped to ``desc_act: false`` (the test rebuilds it), which real
vLLM loads without a word. test_arch_oracle.py and test_loader.py compare every loaded golden
with qscale's plan call by call and value by value; this file adds the verdicts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_runner import cli_in_process
from safetensors import safe_open

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines.loader import plan_load
from qscale.findings import Severity

FIXTURES = Path(__file__).parent / "fixtures"
REAL = FIXTURES / "real"
GOLDEN = FIXTURES / "vllm_golden"
ACT, STATIC = "gptqmodel-llama-desc_act", "gptqmodel-llama-no_desc_act"
NEG = f"{ACT}-NEG-config-false"
VERSIONS = ("0.32.0", "0.33.0")


def _golden(name: str, version: str) -> dict[str, Any]:
    suffix = "" if version == "0.32.0" else f"@vllm-{version}"
    g: dict[str, Any] = json.loads((GOLDEN / f"{name}{suffix}.json").read_text())
    assert g["vllm_version"] == version
    return g


def _cli(path: Path, version: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli_in_process("check", str(path), "--engine", f"vllm=={version}", *extra)


def _g_idx(name: str) -> dict[str, np.ndarray]:
    with safe_open(REAL / name / "model.safetensors", framework="np") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.endswith(".g_idx")}  # noqa: SIM118


def _config(name: str) -> dict[str, Any]:
    qc: dict[str, Any] = json.loads((REAL / name / "config.json").read_text())[
        "quantization_config"]
    return qc


@pytest.mark.parametrize(("name", "desc_act"), [(ACT, True), (STATIC, False)])
def test_fixture_is_what_the_tool_wrote(name: str, desc_act: bool) -> None:
    """The fixtures differ in the one way under test: act order permutes every ``g_idx``
    (each group still holds 32 inputs); GPTQModel's default keeps ``g_idx[i] == i // 32``."""
    qc = _config(name)
    assert (qc["quant_method"], qc["bits"], qc["group_size"]) == ("gptq", 4, 32)
    assert qc["desc_act"] is desc_act and qc["meta"]["act_group_aware"] is not desc_act
    assert qc["meta"]["quantizer"] == ["gptqmodel:7.6.0"]
    g_idx = _g_idx(name)
    assert len(g_idx) == 14  # 7 Linears x 2 layers
    for g in g_idx.values():
        plain = np.arange(g.size) // 32
        assert np.array_equal(np.bincount(g), np.bincount(plain))
        assert np.array_equal(g, plain) is not desc_act


def _quoted(text: str) -> list[str]:
    return re.findall(r'\("([^"]+)"', text)


@pytest.mark.parametrize("version", VERSIONS)
def test_act_order_is_refused_with_the_release_reason(version: str) -> None:
    g = _golden(ACT, version)
    assert g["load"] == "error" and g["stage"] == "config" and not g["params"]
    assert "desc_act=True" in g["error"]
    r = _cli(REAL / ACT, version)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: QS101 config.json: quantization_config: desc_act=true"
                            " with group_size 32:"), first
    assert f"vllm=={version}" in first
    # the phrase qscale quotes is vLLM's own message
    quoted = _quoted(first)
    assert quoted and all(q in g["error"] for q in quoted), (quoted, g["error"])


def test_act_order_refusal_without_a_version_names_the_refusing_releases() -> None:
    """No ``--engine`` version: the newest vLLM. The message names the releases that refuse
    act order (0.30 on), not the whole profile range, which 0.22-0.29 (building it) share."""
    r = subprocess.run([sys.executable, "-m", "qscale", "check", str(REAL / ACT)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "group_size 32: vllm>=0.30 refuses GPTQ group activation ordering" in r.stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_static_order_loads_with_the_params_vllm_holds(version: str) -> None:
    g = _golden(STATIC, version)
    assert g["load"] == "ok" and g["quantization"] == "auto_gptq"
    r = _cli(REAL / STATIC, version)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no findings" in r.stdout and "14/21 modules quantized" in r.stdout
    ckpt = read_checkpoint(REAL / STATIC)
    plan = plan_load(ckpt, f"vllm=={version}")
    assert set(plan.params) == set(g["params"])
    packed = {p.rsplit(".", 1)[0] for p in plan.params if p.endswith(".qweight")}
    real = {m for cls, mods in g["quant_methods"].items() if not cls.startswith("Unquantized")
            for m in mods}
    assert packed and packed == real
    for p in plan.params.values():  # fused partitions add up to vLLM's qweight columns
        if p.leaf == "qweight" and len(p.sources) > 1:
            assert sum(p.partitions) == g["params"][p.name]["shape"][1], p.name
    g_idx = set(_g_idx(STATIC))
    assert g_idx <= set(g["uncalled"]) and g_idx <= set(plan.skipped)


def _flipped(tmp_path: Path) -> Path:
    """The act-order fixture with ``desc_act: false`` in both configs (oracle ``neg``)."""
    dst = tmp_path / "flipped"
    shutil.copytree(REAL / ACT, dst)
    for f in ("config.json", "quantize_config.json"):
        cfg = json.loads((dst / f).read_text())
        (cfg["quantization_config"] if f == "config.json" else cfg)["desc_act"] = False
        (dst / f).write_text(json.dumps(cfg, indent=2))
    return dst


@pytest.mark.parametrize("version", VERSIONS)
def test_act_order_weights_under_a_static_config(tmp_path: Path, version: str) -> None:
    """Real vLLM loads act-order weights "ok" once the config says ``desc_act: false``: it
    drops every ``g_idx`` and dequantizes input i with group i // 32, silently wrong. qscale
    plans the same load (every loader call agrees) and reports each permuted ``g_idx``."""
    from test_arch_oracle import disagreements

    g = _golden(NEG, version)
    assert g["load"] == "ok"
    ckpt_dir = _flipped(tmp_path)
    plan = plan_load(read_checkpoint(ckpt_dir), f"vllm=={version}")
    assert disagreements(g, plan) == []
    g_idx = set(_g_idx(ACT))
    assert g_idx <= set(g["uncalled"])
    r = _cli(ckpt_dir, version)
    assert r.returncode == 1 and "14 error, 0 warning" in r.stdout, r.stdout + r.stderr
    findings = check(read_checkpoint(ckpt_dir), CheckOptions(engine=f"vllm=={version}")).findings
    assert {(f.code, f.severity) for f in findings} == {("QS304", Severity.ERROR)}
    assert {f.location.tensor for f in findings} == g_idx


def test_act_order_builds_before_vllm_0_30() -> None:
    """vLLM 0.29 still builds group act order and reads ``g_idx`` (no golden: that release
    is not installed as an oracle): the real permuted ``g_idx`` is valid act order (QS304
    clean), and the plan feeds it into the fused ``g_idx`` parameters."""
    r = _cli(REAL / ACT, "0.29.0")
    assert r.returncode == 0 and "no findings" in r.stdout, r.stdout + r.stderr
    plan = plan_load(read_checkpoint(REAL / ACT), "vllm==0.29.0")
    fed = {s.source for p in plan.params.values() if p.leaf == "g_idx" for s in p.sources}
    assert fed == set(_g_idx(ACT))
