"""`qscale check org/name[@revision]`: Hub repos read by HTTP range requests, against a real
local HTTP server that answers as the Hub does (tests/hub_server.py), reached through
HF_ENDPOINT by the real CLI in a process of its own (forked, or a fresh ``python``; the local
runs they are compared with go through the same entry point in process); and the progress bar
the CLI draws on a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import Built, qwen3_5_moe
from cli_runner import cli_forked, cli_in_process
from hub_server import HubServer, Logged, files_of

from qscale.hub import RangeFile, coalesce

REAL = Path(__file__).parent / "fixtures" / "real" / "llmc-qwen3_5_moe-FP8"
ENGINE = "vllm==0.19.1"  # the real fixture and the builder checkpoint both have findings there
VOCAB = 131072  # embed_tokens and lm_head of 32 MiB each: the weights dwarf the headers


@pytest.fixture(scope="module")
def hub() -> Iterator[HubServer]:
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A builder checkpoint in 3 files with an index, 67 MB in all (BF16 embeddings)."""
    return _padded(qwen3_5_moe("ct-fp8")).write(tmp_path_factory.mktemp("big"), shards=3)


def _padded(built: Built) -> Built:
    g = torch.Generator().manual_seed(7)
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        built.add(name, (torch.randn(VOCAB, 128, generator=g) * 0.02).to(torch.bfloat16))
    return built.set_config("/text_config/vocab_size", VOCAB)


@pytest.fixture
def env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: this hub, an empty HF cache, no token, no proxy."""
    hub.clear_log()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "QSCALE_"))}
    base = {k: v for k, v in base.items() if "proxy" not in k.lower()}
    return {
        **base,
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def qscale(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own with ``env``: forked, huggingface_hub imported anew
    there (tests/cli_runner.py). The terminal, import and library tests below start
    ``python`` itself."""
    return cli_forked(*args, env=env)


def local_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """A local folder's run, to compare with the remote one: the same entry point in this
    process (a local path does not reach huggingface_hub, so the Hub environment is moot)."""
    return cli_in_process(*args)


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report without its `source` (the one field that names the input)."""
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)
    del data["source"]
    return dict(data)


def assert_one_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, an `error:` line and a `hint:` line, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def safetensors_gets(log: list[Logged]) -> list[Logged]:
    """GETs of safetensors files (through the Hub's redirect, or from the CDN)."""
    return [
        r
        for r in log
        if r.method == "GET" and (r.server == "cdn" or r.path.endswith(".safetensors"))
    ]


# --------------------------------------------------------------------------- remote = local


def test_remote_check_equals_local_and_fetches_under_1_percent(
    hub: HubServer, big: Path, env: dict[str, str]
) -> None:
    hub.add("org/big", files_of(big))
    hub.clear_log()
    remote = qscale(env, "check", "org/big", "--engine", ENGINE, "-f", "json")
    sent = hub.bytes_sent()
    local = local_cli("check", str(big), "--engine", ENGINE, "-f", "json")
    assert remote.returncode == local.returncode == 1, remote.stderr
    assert report(remote) == report(local)
    assert report(remote)["findings"], "the comparison needs findings to compare"
    total = hub.total_bytes("org/big")
    assert total > 60_000_000
    assert sent < total / 100, f"{sent} of {total} bytes sent"
    gets = safetensors_gets(hub.requests())
    assert gets and all(r.range is not None for r in gets)  # no full download
    # a few requests per file: speculative header range, then coalesced small tensors
    assert len([r for r in gets if r.server == "cdn"]) <= 3 * 3


def test_real_tool_checkpoint_remote_equals_local(hub: HubServer, env: dict[str, str]) -> None:
    hub.add("llmc/qwen3_5_moe-fp8", files_of(REAL))
    for cmd in (["check", "--engine", ENGINE], ["plan", "--engine", ENGINE], ["inspect"]):
        remote = qscale(env, cmd[0], "llmc/qwen3_5_moe-fp8", *cmd[1:], "-f", "json")
        local = local_cli(cmd[0], str(REAL), *cmd[1:], "-f", "json")
        assert remote.returncode == local.returncode, remote.stderr
        assert remote.stderr == local.stderr == ""
        out_r, out_l = json.loads(remote.stdout), json.loads(local.stdout)
        out_r.pop("source", None), out_l.pop("source", None)
        assert out_r == out_l


def test_revision_tag_and_commit(hub: HubServer, tmp_path: Path, env: dict[str, str]) -> None:
    clean = qwen3_5_moe("ct-fp8").write(tmp_path, name="clean")
    scale = "model.language_model.layers.1.mlp.experts.0.up_proj.weight_scale"
    broken = qwen3_5_moe("ct-fp8").drop(scale).write(tmp_path, name="broken")
    old = hub.add("org/rev", files_of(broken), refs=("v1",))
    hub.add("org/rev", files_of(clean), refs=("main",))
    at_main = qscale(env, "check", "org/rev", "-f", "json")
    at_tag = qscale(env, "check", "org/rev@v1", "-f", "json")
    at_commit = qscale(env, "check", f"org/rev@{old}", "-f", "json")
    assert report(at_main) == report(local_cli("check", str(clean), "-f", "json"))
    assert report(at_tag) == report(local_cli("check", str(broken), "-f", "json"))
    assert report(at_commit) == report(at_tag)
    assert not report(at_main)["findings"]
    assert any(scale in f["message"] for f in report(at_tag)["findings"])
    assert json.loads(at_tag.stdout)["source"] == "org/rev@v1"


def test_missing_repo_and_revision(hub: HubServer, tmp_path: Path, env: dict[str, str]) -> None:
    hub.add("org/present", files_of(qwen3_5_moe("ct-fp8").write(tmp_path)))
    assert_one_error(qscale(env, "check", "org/absent"), "no repo `org/absent`")
    assert_one_error(qscale(env, "inspect", "org/present@nope"), "no revision `nope`")
    assert_one_error(qscale(env, "plan", "org/present@nope"), "no revision `nope`")


def test_truncated_remote_file_gives_the_local_error(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    folder = qwen3_5_moe("ct-fp8").write(tmp_path)
    whole = (folder / "model.safetensors").read_bytes()
    n = int.from_bytes(whole[:8], "little")
    for cut, code in ((8 + n // 2, "QS001"), (len(whole) - 100, "QS002")):
        (folder / "model.safetensors").write_bytes(whole[:cut])
        hub.add(f"org/cut-{code}", files_of(folder))
        remote = qscale(env, "check", f"org/cut-{code}")
        local = local_cli("check", str(folder))
        assert_one_error(remote, code, "model.safetensors")
        assert remote.stderr == local.stderr


def test_index_naming_a_missing_file_gives_the_local_error(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    folder = qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)
    (folder / "model-00002-of-00002.safetensors").unlink()
    hub.add("org/missing-shard", files_of(folder))
    remote = qscale(env, "check", "org/missing-shard")
    assert_one_error(remote, "QS006", "model-00002-of-00002.safetensors")
    assert remote.stderr == local_cli("check", str(folder)).stderr


def test_server_without_range_support_is_refused_not_downloaded(
    hub: HubServer, big: Path, env: dict[str, str]
) -> None:
    hub.add("org/big", files_of(big))
    hub.ranges = False
    try:
        proc = qscale(env, "check", "org/big")
    finally:
        hub.ranges = True
    assert_one_error(proc, "HTTP 200, not 206")
    assert "range requests" in proc.stderr
    assert hub.bytes_sent() < hub.total_bytes("org/big") / 2


# --------------------------------------------------------------------------- cache, offline


def _download(env: dict[str, str], repo: str) -> None:
    code = f"from huggingface_hub import snapshot_download; snapshot_download({repo!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_cached_repo_offline_makes_no_request(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    folder = qwen3_5_moe("ct-fp8").drop(r"layers\.0\.mlp\.gate\.weight").write(tmp_path)
    hub.add("org/cached", files_of(folder))
    _download(env, "org/cached")  # the real huggingface_hub download into the cache
    local = report(local_cli("check", str(folder), "-f", "json"))

    hub.clear_log()
    online = qscale(env, "check", "org/cached", "-f", "json")
    assert report(online) == local
    assert safetensors_gets(hub.requests()) == []  # weights come from the cache

    hub.clear_log()
    offline = qscale({**env, "HF_HUB_OFFLINE": "1"}, "check", "org/cached", "-f", "json")
    assert report(offline) == local
    assert hub.requests() == []


def test_offline_not_cached_is_a_clear_error(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    hub.add("org/uncached", files_of(qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)))
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    assert_one_error(
        qscale(offline, "check", "org/uncached"), "not in the local Hugging Face cache", "OFFLINE"
    )
    assert hub.requests() == []
    # only config.json in the cache (as after loading just the config with transformers)
    _in_python(env, "import huggingface_hub as h; h.hf_hub_download('org/uncached', 'config.json')")
    assert_one_error(qscale(offline, "check", "org/uncached"), "only partly in the local")
    assert hub.requests()[-1].path.endswith("config.json")  # the download; not qscale


def test_unreachable_endpoint_is_a_clear_error(tmp_path: Path, env: dict[str, str]) -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = {**env, "HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    proc = qscale(dead, "check", "org/anything")
    assert_one_error(proc, f"cannot reach http://127.0.0.1:{port}", "not in the local")


# --------------------------------------------------------------------------- access


def test_token_is_sent_to_the_hub_as_bearer_and_not_to_the_cdn(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    hub.add("org/private", files_of(qwen3_5_moe("ct-fp8").write(tmp_path)), token="hf_secret")
    assert_one_error(qscale(env, "check", "org/private"), "private")
    hub.clear_log()
    proc = qscale({**env, "HF_TOKEN": "hf_secret"}, "check", "org/private")
    assert proc.returncode == 0, proc.stderr
    log = hub.requests()
    to_hub = [r for r in log if r.server == "hub"]
    to_cdn = [r for r in log if r.server == "cdn"]
    assert to_hub and to_cdn
    assert all(r.authorization == "Bearer hf_secret" for r in to_hub)
    assert all(r.authorization is None for r in to_cdn)


def test_gated_repo_is_an_access_error(hub: HubServer, tmp_path: Path, env: dict[str, str]) -> None:
    hub.add("org/gated", files_of(qwen3_5_moe("ct-fp8").write(tmp_path)), gated=True)
    proc = qscale(env, "check", "org/gated")
    assert_one_error(proc, "gated")
    assert "request access" in proc.stderr


# --------------------------------------------------------------------------- library


def _in_python(env: dict[str, str], code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_read_values_works_remotely(hub: HubServer, big: Path, env: dict[str, str]) -> None:
    hub.add("org/big", files_of(big))
    code = (
        "import json, sys\n"
        "from qscale import read_checkpoint\n"
        "ckpt = read_checkpoint(sys.argv[1])\n"
        "names = sorted(n for n, t in ckpt.tensors.items() if t.numel > 64 and t.nbytes < 70000)\n"
        "vals = ckpt.read_values(names)\n"
        "print(json.dumps({n: vals[n].ravel()[:50].tolist() for n in names}))\n"
    )
    remote = json.loads(_in_python(env, code.replace("sys.argv[1]", "'org/big'")))
    local = json.loads(_in_python(env, code.replace("sys.argv[1]", repr(str(big)))))
    assert len(remote) > 10
    assert remote == local


def test_remote_check_does_not_import_torch(
    hub: HubServer, tmp_path: Path, env: dict[str, str]
) -> None:
    hub.add("org/notorch", files_of(qwen3_5_moe("ct-fp8").write(tmp_path)))
    code = (
        "import sys\nfrom qscale.cli import app\n"
        "try:\n    app(['check', 'org/notorch', '-f', 'json'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    _in_python(env, code)
    assert safetensors_gets(hub.requests())


def test_range_file_reads_ahead_once_then_exactly() -> None:
    data = bytes(range(256)) * 400  # 102400 bytes
    calls: list[tuple[int, int]] = []

    def fetch(a: int, b: int) -> bytes:
        calls.append((a, b))
        return data[a:b]

    rf = RangeFile(len(data), fetch, read_ahead=1000)
    assert rf.read(8) == data[:8] and calls == [(0, 1000)]
    assert rf.read(2000) == data[8:2008] and calls[-1] == (1000, 2008)
    rf.prefetch(coalesce([(5000, 5004), (5010, 5020), (90000, 90008)], gap=100))
    assert calls[-2:] == [(5000, 5020), (90000, 90008)]
    rf.seek(5010)
    assert rf.read(10) == data[5010:5020] and len(calls) == 4  # served from the prefetch
    rf.seek(len(data) - 4)
    assert rf.read(100) == data[-4:] and calls[-1] == (len(data) - 4, len(data))
    assert rf.fetched == 1000 + 1008 + 20 + 8 + 4


def test_range_file_short_answer_reads_short() -> None:
    rf = RangeFile(100, lambda a, b: b"x" * min(b - a, 10))
    assert rf.read(50) == b"x" * 10  # the server sent less: the reader reports truncation


# --------------------------------------------------------------------------- progress


def _on_tty(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal; returns exit code, stdout, terminal text."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qscale", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(slave)
    screen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            screen += chunk
            if not chunk and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out, screen.decode(errors="replace")


BAR = "reading safetensors headers"


def test_progress_bar_only_on_a_terminal_in_console_format(
    hub: HubServer, big: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    hub.add("org/big", files_of(big))
    code, out, screen = _on_tty(env, "check", "org/big", "--engine", ENGINE)
    assert code == 1 and BAR in screen and "files" in screen
    assert BAR not in out  # the report on stdout stays clean
    code, out, screen = _on_tty(env, "check", "org/big", "--engine", ENGINE, "-f", "json")
    assert code == 1 and BAR not in screen and screen.strip() == ""
    json.loads(out)
    piped = qscale(env, "check", "org/big", "--engine", ENGINE)
    assert piped.returncode == 1 and piped.stderr == ""  # not a terminal: nothing on stderr
    assert BAR not in piped.stdout and "\r" not in piped.stdout and "\x1b" not in piped.stdout


def test_local_progress_bar_needs_many_files(tmp_path: Path, env: dict[str, str]) -> None:
    many = qwen3_5_moe("ct-fp8").write(tmp_path, shards=8, name="many")
    few = qwen3_5_moe("ct-fp8").write(tmp_path, shards=2, name="few")
    assert BAR in _on_tty(env, "inspect", str(many))[2]
    assert BAR not in _on_tty(env, "inspect", str(few))[2]
