"""The deep scan over the Hub: range reads of the scale bytes only; --header-only reads none."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from builders import qwen3_5_moe
from cli_runner import cli_forked
from hub_server import HubServer, files_of

QKV = "model.language_model.layers.0.linear_attn.in_proj_qkv.weight_scale"
VOCAB = 131072  # 32 MiB embeddings: the weights dwarf the scales


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = qwen3_5_moe("ct-mxfp4")
    built.tensors[QKV][3, 1] = 0xFF
    g = torch.Generator().manual_seed(7)
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        built.add(name, (torch.randn(VOCAB, 128, generator=g) * 0.02).to(torch.bfloat16))
    built.set_config("/text_config/vocab_size", VOCAB)
    return built.write(tmp_path_factory.mktemp("bad"), shards=2)


def _env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QSCALE_"))}
    base = {k: v for k, v in base.items() if "proxy" not in k.lower()}
    return {**base, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost"}


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # a process of its own with env, forked (huggingface_hub imported anew there)
    return cli_forked("check", *args, "--select", "QS303", "-f", "json", env=env)


def test_remote_deep_scan_finds_what_local_finds_reading_scales_only(
    hub: HubServer, bad: Path, tmp_path: Path
) -> None:
    hub.add("org/bad-scale", files_of(bad))
    env = _env(hub, tmp_path)
    hub.clear_log()
    remote = _check(env, "org/bad-scale")
    sent = hub.bytes_sent()
    local = _check(env, str(bad))
    assert remote.returncode == local.returncode == 1, remote.stderr
    findings = json.loads(remote.stdout)["findings"]
    assert findings == json.loads(local.stdout)["findings"]
    assert [f["location"]["tensor"] for f in findings] == [QKV]
    assert "NaN (E8M0 byte 0xFF)" in findings[0]["message"]
    total = hub.total_bytes("org/bad-scale")
    assert sent < total / 50, f"{sent} of {total} bytes sent"


def test_header_only_fetches_no_scale_bytes_and_is_partial(
    hub: HubServer, bad: Path, tmp_path: Path
) -> None:
    hub.add("org/bad-scale-2", files_of(bad))
    env = _env(hub, tmp_path)
    hub.clear_log()
    deep_proc = _check(env, "org/bad-scale-2")
    deep = hub.bytes_sent()
    hub.clear_log()
    proc = _check(env, "org/bad-scale-2", "--header-only")
    shallow = hub.bytes_sent()
    assert deep_proc.returncode == 1
    assert proc.returncode == 2, proc.stderr  # partial: the value check did not run in full
    data = json.loads(proc.stdout)
    assert data["findings"] == []
    assert "--header-only" in json.dumps(data)
    assert shallow < deep
    allowed = _check(env, "org/bad-scale-2", "--header-only", "--allow-partial")
    assert allowed.returncode == 0, allowed.stderr
