"""The console script's exit (``qscale.cli.run``, ``qscale._exit``) and the records built
without their frozen ``__init__`` (``qscale._fast.maker``).

``run`` ends the process with ``os._exit``: the report, the output file and the exit code
must be exactly those of the in-process entry point, also for an output of many buffers, and
in process nothing may be kept or left with the GC off."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys

import pytest
from builders import qwen3_5_moe
from cli_runner import cli_subprocess

from qscale import _exit
from qscale._fast import maker
from qscale.engines.loader import ShardSlot
from qscale.formats import ModuleQuant, Resolution, resolve_quantization
from qscale.modules import ModuleInfo, group_modules
from qscale.source import read_checkpoint

P = "model.language_model.layers"


console = cli_subprocess  #: ``python -m qscale``: the console script's path (``qscale.cli.run``)


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    return (
        qwen3_5_moe("ct-fp8")
        .drop(rf"{P}\.1\.self_attn\.o_proj\.input_scale")
        .write(tmp_path_factory.mktemp("broken"))
    )


def test_console_script_report_and_exit_code_match_in_process(broken, run_cli):
    for args in (("check", str(broken)), ("check", str(broken), "-f", "json")):
        here = run_cli(*args)
        there = console(*args)
        assert (there.returncode, there.stdout) == (here.returncode, here.stdout) == (
            1, here.stdout)
        assert "QS201" in there.stdout
    json.loads(there.stdout)  # the whole document arrived before the process ended


def test_console_script_output_is_complete(broken, run_cli):
    here = run_cli("inspect", str(broken), "-f", "json")
    there = console("inspect", str(broken), "-f", "json")
    assert there.returncode == here.returncode == 0
    assert len(there.stdout) > 4 * 8192  # several of the text stream's buffers
    assert there.stdout == here.stdout


def test_console_script_writes_the_output_file(broken, tmp_path):
    out = tmp_path / "report.json"
    r = console("check", str(broken), "-f", "json", "-o", str(out))
    assert r.returncode == 1, r.stderr
    assert json.loads(out.read_text())["findings"][0]["code"] == "QS201"


def test_console_script_error_exit_code():
    r = console("check", "/nonexistent/qscale-checkpoint")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ")


def test_in_process_keeps_nothing_and_leaves_the_gc_on(broken, run_cli):
    assert gc.isenabled()
    r = run_cli("check", str(broken))
    assert r.returncode == 1
    assert not _exit.ENABLED and _exit._kept == []
    assert gc.isenabled()


def test_maker_builds_what_the_constructor_builds(broken):
    ckpt = read_checkpoint(str(broken))
    modules = group_modules(ckpt)
    some = next(m for m in modules.values() if len(m.tensors) > 1)
    assert some == ModuleInfo(some.name, some.kind, some.tensors)
    assert type(some) is ModuleInfo
    with pytest.raises(dataclasses.FrozenInstanceError):
        some.name = "x"  # type: ignore[misc]
    slot = maker(ShardSlot)("a.weight", "w1", 3)
    same = ShardSlot("a.weight", "w1", 3)
    assert slot == same and hash(slot) == hash(same)
    quant = resolve_quantization(ckpt, "vllm==0.33.0")
    for mq in quant.modules.values():
        rebuilt = ModuleQuant(mq.module, mq.resolution, mq.logical_shape)
        assert mq == rebuilt and mq.scheme is rebuilt.scheme is mq.resolution.scheme
    assert any(mq.scheme is not None for mq in quant.modules.values())
    res = Resolution(None, "why")
    assert ModuleQuant(some, res, None).scheme is None



def test_console_script_with_stdout_closed_exits_with_the_command_s_code():
    """Started with descriptor 1 closed (``qscale check X >&-``), Python has no sys.stdout:
    the exit flushes what there is instead of failing on the missing stream."""
    r = subprocess.run([sys.executable, "-m", "qscale", "check", "/nonexistent/qscale-ckpt"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_console_script_with_stdout_and_stderr_closed_writes_the_output_file(broken, tmp_path):
    """A check run from cron with ``>&- 2>&-``: the report goes to ``-o`` and the exit code is
    the verdict's (no colour or progress probe of a missing stream)."""
    out = tmp_path / "report.json"

    def closed() -> None:
        os.close(1)
        os.close(2)

    for args, code in ((("check", str(broken), "-f", "json", "-o", str(out)), 1),
                       (("check", str(broken), "--select", "QS001"), 0)):
        r = subprocess.run([sys.executable, "-m", "qscale", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, preexec_fn=closed)
        assert r.returncode == code
    assert json.loads(out.read_text())["findings"][0]["code"] == "QS201"


_GC_PROBE = """
import gc, os, sys
from qscale import _exit, cli
_exit.ENABLED = True  # as the console script (qscale.cli.run)
seen = []
real = cli.app
def app():
    seen.append(gc.isenabled())  # before the command's modules are imported
    real()
cli.app = app
sys.argv = ["qscale", *sys.argv[1:]]
try:
    cli.main()
except SystemExit:
    pass
print(seen, file=sys.stderr)
os._exit(0)
"""


@pytest.mark.parametrize("args, gc_on", [
    (["check", "/nonexistent/qscale-checkpoint"], False), (["rule", "QS204"], True)])
def test_console_script_check_keeps_the_gc_off_from_start_up(args, gc_on):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _GC_PROBE, *args], capture_output=True,
                       text=True, check=False)
    assert p.stderr.strip().splitlines()[-1] == f"[{gc_on}]"
