"""CLI start-up: `qscale --version`, `--help`, `qscale rule X` and the commands' `--help` load
neither torch, numpy, pydantic, rich nor the rules, the formats or the engine catalogue (a missing
checkpoint stops `qscale check` before the rules load); what they print is what the eager CLI
printed, and an option's value is what typer's own parsing gives."""

import json
import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from qscale import rules
from qscale.cli import COMMANDS, app, load_command
from qscale.cli.rule import _find, rule_codes, rule_docs
from qscale.errors import UsageError

HEAVY = ("numpy", "torch", "qscale.checkpoint", "qscale.rules", "qscale.formats",
         "qscale.engines.catalogue", "huggingface_hub", "compressed_tensors", "pydantic", "rich")
#: what `qscale check` of a missing checkpoint may not load: it stops in the reader, which
#: imports numpy, before the rules, the formats, the Hub client and the renderers
NOT_FOR_A_MISSING_CHECKPOINT = ("torch", "qscale.rules", "qscale.formats", "qscale.runner",
                                "qscale.report", "huggingface_hub", "compressed_tensors",
                                "pydantic", "rich")

_PROBE = """
import json, sys
sys.argv = ["qscale", *sys.argv[1:]]
from qscale.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _loaded(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules `qscale ARGS` has imported when it exits, and the process."""
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       check=True)
    return set(json.loads(p.stderr.strip().splitlines()[-1])), p


def _named(loaded: set[str], heavy: tuple[str, ...]) -> set[str]:
    """The modules of ``loaded`` that are, or lie in a package of, ``heavy``."""
    return {m for m in loaded if any(m == h or m.startswith(f"{h}.") for h in heavy)}


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["rule", "QS204"],
                                  ["rule", "ignore-entry-mismatch"], ["rule", "--all"],
                                  ["check", "--help"], ["models", "--help"],
                                  ["layouts", "--help"]])
def test_start_up_loads_nothing_heavy(args):
    loaded, p = _loaded(*args)
    assert "qscale.cli" in loaded  # the probe ran the CLI
    assert not _named(loaded, HEAVY)
    assert p.stdout


def test_an_input_error_points_at_its_rule_before_the_rules_load(tmp_path):
    # the hint's rule codes come from the rule sources when no check has imported the rules
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    loaded, p = _loaded("check", str(tmp_path / "model.safetensors"))
    hint = re.search(r"`qscale rule (QS\d{3})` explains it$", p.stderr.strip().splitlines()[-2])
    assert hint is not None, p.stderr
    assert hint.group(1) in rules.BY_CODE
    assert not _named(loaded, NOT_FOR_A_MISSING_CHECKPOINT)


def test_check_of_a_missing_checkpoint_stops_before_the_rules_load(tmp_path):
    loaded, p = _loaded("check", str(tmp_path / "missing"))
    assert "error: " in p.stderr and "no such file or folder" in p.stderr
    assert "qscale.cli.check" in loaded
    assert not _named(loaded, NOT_FOR_A_MISSING_CHECKPOINT)


def test_lazy_command_list_is_the_eager_one():
    eager = typer.Typer(name="qscale", help=app.info.help, no_args_is_help=True,
                        add_completion=False, rich_markup_mode=None,
                        context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 120})
    for name in COMMANDS:
        cmd = load_command(name)
        eager.command(name)(cmd.callback)  # type: ignore[arg-type]
    eager.callback()(app.registered_callback.callback)  # type: ignore[union-attr]
    runner = CliRunner()
    lazy_help = runner.invoke(app, ["--help"], terminal_width=100).output
    assert "rule     Explain a rule, or list them all." in lazy_help
    assert lazy_help == runner.invoke(eager, ["--help"], terminal_width=100).output


def test_rule_docs_from_source_are_the_registry():
    docs = rule_docs()
    assert docs is not None
    assert [(d.code, d.name, d.severity, d.doc, d.check is None, d.summary) for d in docs] == [
        (r.code, r.name, r.severity, r.doc, r.check is None, r.summary) for r in rules.ALL_RULES]


def test_a_rule_found_by_its_file_name_is_the_one_the_full_scan_finds():
    docs = rule_docs()
    assert docs is not None
    for d in docs:
        for key in (d.code, d.code.lower(), d.name, d.name.upper()):
            assert _find(key) == d
    assert rule_codes() == set(rules.BY_CODE)
    for missing in ("QS999", "no-such-rule", "qs20*", "*", ""):
        with pytest.raises(UsageError, match="no rule"):
            _find(missing)


def test_public_names_resolve_lazily():
    import qscale.fix.render  # binds the subpackage on the package: `qscale.fix` stays the function
    from qscale import fix
    from qscale.fix import fix as fix_fn

    assert fix is fix_fn and qscale.fix is fix_fn
    for name in qscale.__all__:
        assert getattr(qscale, name) is not None
    with pytest.raises(AttributeError):
        qscale.no_such_name  # noqa: B018


def test_a_check_keeps_no_load_plan_alive(tmp_path):
    # sharding.read_shapes kept the last plan in a module-level cache (~190k objects on a
    # 400B-class checkpoint, scanned by every later GC pass)
    import gc

    from builders import qwen3_5_moe

    from qscale import CheckOptions, LoadPlan, check, read_checkpoint

    def plans() -> int:
        gc.collect()
        return sum(type(o) is LoadPlan for o in gc.get_objects())

    before = plans()
    report = check(read_checkpoint(qwen3_5_moe("ct-mxfp4").write(tmp_path)),
                   CheckOptions(engine="vllm==0.33.0"))
    assert report.findings is not None
    del report
    assert plans() == before


#: a check of the folder in argv[1] through the command line, then the probe's own lines
_CHECK_PROBE = """
import os, sys
sys.argv = ["qscale", "check", sys.argv[1], "--engine", "vllm==0.33.0"]
from qscale.cli import main
try:
    main()
except SystemExit:
    pass
"""
_BLAS_PROBE = _CHECK_PROBE + """
print(os.environ.get("OPENBLAS_NUM_THREADS"), "numpy" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("preset, want", [(None, "1"), ("3", "3")])
def test_the_command_line_starts_one_blas_thread_unless_told_otherwise(preset, want):
    """numpy's OpenBLAS reads the variable when numpy loads, which the check does."""
    import os
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    fixture = Path(__file__).parent / "fixtures" / "real" / "autoround-llama-auto_awq"
    p = subprocess.run([sys.executable, "-c", _BLAS_PROBE, str(fixture)], capture_output=True,
                       text=True, env=env, check=False)
    assert p.stderr.strip().splitlines()[-1] == f"{want} True"


_MALLOC_PROBE = """
import ctypes, sys
from qscale.cli import main
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
sys.argv = ["qscale", "--version"]
try:
    main()
except SystemExit:
    pass
before = libc.mallinfo2().hblkhd
block = bytearray(4 << 20)
print(libc.mallinfo2().hblkhd - before >= 4 << 20, file=sys.stderr)
"""


def _has_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _has_mallinfo2(),
                    reason="glibc malloc only")
@pytest.mark.parametrize("preset, mmapped", [(None, False), ("MALLOC_ARENA_MAX", True)])
def test_the_command_line_keeps_mid_sized_blocks_on_the_heap_unless_malloc_is_tuned(preset,
                                                                                   mmapped):
    """A 4 MiB block (a header scan's temporaries are 0.1-1 MB) comes from the heap once the
    command line has raised glibc's mmap threshold; a user's own MALLOC_* setting wins."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    if preset is not None:
        env[preset] = "4"
    p = subprocess.run([sys.executable, "-c", _MALLOC_PROBE], capture_output=True, text=True,
                       env=env, check=False)
    assert p.stderr.strip().splitlines()[-1] == str(mmapped)


def test_each_parser_is_registered_under_its_modules_own_method_name():
    """FORMATS names each parser by a literal (its module is imported when a checkpoint
    needs it); the literal is the module's own constant."""
    import importlib

    from qscale.formats import FORMATS
    from qscale.formats.registry import RUNTIME_ONLY
    from qscale.rules import qs304_group_index_mismatch

    own = {"awq": "AWQ", "gptq": "GPTQ", "experts_int8": "EXPERTS_INT8"}
    for method, parser in FORMATS.items():
        module = importlib.import_module(parser.function().__module__)
        if method in RUNTIME_ONLY:
            assert method in module.METHODS
        elif method == "inc":  # INCConfig's own name, parsed as auto-round
            assert module.METHOD == "auto-round"
        else:
            assert getattr(module, own.get(method, "METHOD")) == method, method
    from qscale.formats import gptq

    assert qs304_group_index_mismatch.GPTQ == gptq.GPTQ


_FORMATS_PROBE = _CHECK_PROBE + """
print(sorted(m.rpartition(".")[2] for m in sys.modules
             if m.startswith("qscale.formats.") and not m.rpartition(".")[2].startswith("_")),
      file=sys.stderr)
"""


@pytest.mark.parametrize("fixture, parsers", [
    ("autoround-llama-auto_awq", "['gptq', 'registry']"),
    ("autoround-llama-auto_round", "['auto_round', 'gptq', 'registry']"),
])
def test_a_check_imports_its_own_formats_parser_alone(fixture, parsers):
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "real" / fixture
    p = subprocess.run([sys.executable, "-c", _FORMATS_PROBE, str(path)], capture_output=True,
                       text=True, check=False)
    assert p.stderr.strip().splitlines()[-1] == parsers


@pytest.mark.parametrize("argv, command", [
    (["qscale", "check", "x"], "check"), (["qscale", "--debug", "check", "x"], "check"),
    (["qscale", "fix", "check"], "fix"), (["qscale", "--version"], None),
])
def test_the_subcommand_is_the_first_word_that_is_not_an_option(argv, command):
    """A check keeps the GC off from start-up (under the console script): only `check`."""
    from qscale.cli import _command

    assert _command(argv) == command
