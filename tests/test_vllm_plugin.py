"""The vLLM general plugin (qscale.integrations.vllm): off by default, guards load_weights."""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from qscale.engines.profiles import FP8_SENTINEL
from qscale.guard import LoadGuardError
from qscale.integrations import vllm as plugin

REPO = Path(__file__).resolve().parent.parent
QKVZ = "language_model.model.layers.0.linear_attn.in_proj_qkvz"
S_QKV, S_Z = 1.9073486328125e-4, 1.7547607421875e-4


def _entry_point() -> tuple[str, str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    ((name, target),) = data["project"]["entry-points"]["vllm.general_plugins"].items()
    return name, target


def test_entry_point_names_register():
    name, target = _entry_point()
    module, _, attr = target.partition(":")
    assert name == "qscale_guard"
    assert getattr(importlib.import_module(module), attr) is plugin.register


def test_importing_and_registering_without_the_env_var_does_nothing():
    env = {k: v for k, v in os.environ.items() if not k.startswith("QSCALE_GUARD")}
    code = (
        "import sys, qscale, qscale.integrations.vllm as p; p.register();"
        " print(sorted(m for m in ('torch', 'vllm', 'qscale.guard') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed")
def test_missing_hook_is_logged_not_raised(monkeypatch, caplog):
    monkeypatch.setenv("QSCALE_GUARD", "1")
    with caplog.at_level(logging.WARNING, logger="vllm.qscale_guard"):
        plugin.register()
    assert "qscale guard is NOT active" in caplog.text
    assert "DefaultModelLoader" in caplog.text


# --------------------------------------------------------------------------- the wrapper


def _model() -> torch.nn.Module:
    """A module holding one merged per-tensor scale as vLLM creates it (float32-min slots)."""
    root = torch.nn.Module()
    layer = torch.nn.Module()
    layer.register_parameter(
        "weight_scale", torch.nn.Parameter(torch.full((4,), FP8_SENTINEL), requires_grad=False)
    )
    root.add_module("language_model", torch.nn.Module())
    mod = root.language_model
    for part in ("model", "layers", "0", "linear_attn"):
        mod.add_module(part, torch.nn.Module())
        mod = mod._modules[part]
    mod.add_module("in_proj_qkvz", layer)
    return root


def _loader_class(slots: dict[int, float]) -> type:
    class Loader:
        """Writes the given slots of in_proj_qkvz.weight_scale, like a weight loader."""

        load_config = SimpleNamespace(download_dir=None)

        def load_weights(self, model, model_config):
            param = dict(model.named_parameters())[f"{QKVZ}.weight_scale"]
            for i, v in slots.items():
                param.data[i] = v

    return Loader


OLD = {0: S_QKV, 3: S_Z}  # vLLM 0.19.1: the tuple shard id (0, 1, 2) writes slot 0 only
NEW = {0: S_QKV, 1: S_QKV, 2: S_QKV, 3: S_Z}
CONFIG = SimpleNamespace(model="/models/qwen3_5_moe-FP8", revision=None)


def test_wrapped_loader_raises_after_a_broken_load():
    loader = _loader_class(OLD)
    assert plugin.guard_loader_class(loader)
    with pytest.raises(LoadGuardError) as exc:
        loader().load_weights(_model(), CONFIG)
    msg = str(exc.value)
    assert msg.startswith("qscale guard, vLLM ") and "`/models/qwen3_5_moe-FP8`" in msg
    assert f"`{QKVZ}.weight_scale` slots 1, 2" in msg
    assert msg.endswith(f"Hint: {exc.value.hint}")  # vLLM shows str(exc) only
    assert "qscale check /models/qwen3_5_moe-FP8" in exc.value.hint
    assert "unset QSCALE_GUARD" in exc.value.hint
    assert exc.value.report is not None and not exc.value.report.ok


def test_wrapped_loader_passes_a_correct_load_and_says_so(caplog):
    loader = _loader_class(NEW)
    plugin.guard_loader_class(loader)
    model = _model()
    with caplog.at_level(logging.INFO, logger="vllm.qscale_guard"):
        loader().load_weights(model, model_config=CONFIG)
    assert dict(model.named_parameters())[f"{QKVZ}.weight_scale"].tolist() == [S_QKV] * 3 + [S_Z]
    assert "qscale guard: /models/qwen3_5_moe-FP8 ok (1 scale parameters checked" in caplog.text


def test_wrapping_twice_wraps_once():
    loader = _loader_class(NEW)
    plugin.guard_loader_class(loader)
    first = loader.load_weights
    assert plugin.guard_loader_class(loader)
    assert loader.load_weights is first
    assert getattr(first, "__wrapped__", None) is not None


def test_class_without_load_weights_is_not_wrapped(caplog):
    class NotALoader:
        pass

    with caplog.at_level(logging.WARNING, logger="vllm.qscale_guard"):
        assert not plugin.guard_loader_class(NotALoader)
    assert "NotALoader has no load_weights" in caplog.text


def test_plan_that_cannot_be_built_still_checks_values(monkeypatch, caplog):
    monkeypatch.setenv("QSCALE_GUARD_PLAN", "1")
    loader = _loader_class(OLD)
    plugin.guard_loader_class(loader)
    with (
        caplog.at_level(logging.WARNING, logger="vllm.qscale_guard"),
        pytest.raises(LoadGuardError),
    ):
        loader().load_weights(_model(), CONFIG)
    assert "no load plan for /models/qwen3_5_moe-FP8" in caplog.text


# --------------------------------------------------------------------------- real vLLM

ORACLE_CKPTS = os.environ.get("QSCALE_ORACLE_CKPTS")
#: the folder holding oracle/'s vLLM venvs (default: the parent of QSCALE_ORACLE_CKPTS)
ORACLE_WORK = Path(
    os.environ.get("QSCALE_ORACLE_WORK") or (Path(ORACLE_CKPTS).parent if ORACLE_CKPTS else ".")
)
VENVS = {"0.19.1": "venv-vllm0191", "0.32.0": "venv-vllm"}
SEED_CKPT = REPO / "tests" / "fixtures" / "real" / "llmc-qwen3_5_moe-FP8"


def _entry_point_site(root: Path) -> Path:
    """A folder whose dist-info declares pyproject's entry point, so that vLLM's own
    ``load_general_plugins`` finds the plugin without installing qscale into vLLM's venv."""
    name, target = _entry_point()
    dist = root / "qscale_guard_probe-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qscale-guard-probe\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[vllm.general_plugins]\n{name} = {target}\n")
    return root


@pytest.mark.oracle
@pytest.mark.skipif(not ORACLE_CKPTS, reason="opt-in: set QSCALE_ORACLE_CKPTS (oracle/README.md)")
@pytest.mark.parametrize("with_plan", [False, True], ids=["values", "plan"])
@pytest.mark.parametrize("version", sorted(VENVS))
def test_guard_inside_real_vllm(version, with_plan, tmp_path):
    """Real vLLM on CPU loads the llm-compressor FP8 Qwen3.5-MoE seed checkpoint through the
    oracle driver, with the plugin found through its entry point: 0.19.1 must be stopped,
    0.32.0 must load."""
    python = ORACLE_WORK / VENVS[version] / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"no {python}")
    out = tmp_path / "run.loaded.safetensors"
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_PLUGINS", "QSCALE_GUARD_PLAN")}
    env.update(
        PYTHONPATH=f"{_entry_point_site(tmp_path / 'site')}{os.pathsep}{REPO}",
        QSCALE_GUARD="1",
        QS_ORACLE_OUT=str(out),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    if with_plan:
        env["QSCALE_GUARD_PLAN"] = "1"
    if version != "0.32.0":  # the CUDA wheel, load stage only (oracle/README.md)
        env["VLLM_TARGET_DEVICE"] = "cpu"
    proc = subprocess.run(
        [str(python), str(REPO / "oracle" / "small_ckpts.py"), "oracle", str(SEED_CKPT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    log = proc.stdout + proc.stderr
    status = json.loads(out.with_name("run.status.json").read_text())
    assert status["vllm_version"] == version, log[-3000:]
    # (0.32.0 configures its logging only after loading plugins: the "checking scale slots"
    # line of register() shows in 0.19.1's log only; the guard's verdict shows in both)
    assert "no load plan" not in log and "load plan skipped" not in log
    if version == "0.19.1":
        assert status["load"] == "error" and status["stage"] == "load", log[-3000:]
        assert status["error"].startswith("LoadGuardError: qscale guard, vLLM 0.19.1")
        for leaf in ("weight_scale", "input_scale"):
            assert (
                f"`{QKVZ}.{leaf}` slots 1, 2 = [-3.40282347e+38, -3.40282347e+38]"
                in (status["error"])
            )
    else:
        assert status["load"] == "ok", log[-3000:]
        m = re.search(r"qscale guard: \S+ ok \((\d+) scale parameters checked, (\d+) compared", log)
        assert m is not None, log[-3000:]
        assert int(m.group(1)) > 0
        assert (int(m.group(2)) > 0) is with_plan
