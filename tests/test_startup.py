"""CLI start-up: `qscale --version`, `--help` and `qscale rule X` load neither numpy nor the
rules, the formats or the engine catalogue; what they print is what the eager CLI printed."""

import json
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from qscale import rules
from qscale.cli import COMMANDS, app, load_command
from qscale.cli.rule import rule_docs

HEAVY = ("numpy", "torch", "qscale.checkpoint", "qscale.rules", "qscale.formats",
         "qscale.engines.catalogue", "huggingface_hub", "compressed_tensors")

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


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["rule", "QS204"],
                                  ["rule", "--all"], ["check", "--help"]])
def test_start_up_loads_nothing_heavy(args):
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                       check=True)
    loaded = set(json.loads(p.stderr.strip().splitlines()[-1]))
    # `check --help` imports the check command, which may load numpy, never torch
    heavy = {"torch", "compressed_tensors"} if args[0] == "check" else set(HEAVY)
    assert not {m for m in loaded if m.split(".")[0] in heavy or m in heavy}
    assert p.stdout


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
