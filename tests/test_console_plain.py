"""The console report without rich (output that is not a terminal) is what rich writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.findings import Applicability, Finding, Fix, Location, Report, Severity
from qscale.report import console

FIXTURES = Path(__file__).parent / "fixtures" / "real"


def _same(lines: list[console.Line]) -> None:
    assert console.plain(lines) == console._rich(lines, color=False, width=100)


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.iterdir()
                                           if (p / "config.json").exists())[:8])
@pytest.mark.parametrize("engine", ["vllm==0.33.0", "vllm==0.19.1", "sglang==0.5.13"])
def test_fixture_reports_print_as_rich_prints_them(fixture, engine):
    report = check(read_checkpoint(FIXTURES / fixture), CheckOptions(engine=engine))
    for partial in (False, True):
        _same(console.report_lines(report, allow_partial=partial))


def test_reports_with_findings_fixes_and_groups_print_as_rich_prints_them(tmp_path):
    b = qwen3_5_moe("fp8-block")
    b.drop(next(n for n in b.tensors if n.endswith("experts.1.up_proj.weight_scale_inv")))
    b.drop(next(n for n in b.tensors if n.endswith("experts.0.up_proj.weight_scale_inv")))
    report = check(read_checkpoint(b.write(tmp_path)), CheckOptions(engine="vllm==0.19.1"))
    assert report.findings and any(f.fix for f in report.findings)
    assert any(g.count > 1 for g in report.groups)
    _same(console.report_lines(report))


@pytest.mark.parametrize("text", [
    "markup [bold]x[/bold] and [weight] and [0]", "emoji :warning: :100:",
    "control \x07bell \x08bs \x0bvt \x0cff \x0dcr \x1besc \x00nul \x7fdel",
    "wide 模型 权重 and combining e\u0301", "trailing spaces   ", "", "\\[escaped]",
])
def test_text_that_rich_might_read_as_markup_prints_as_it_is(text):
    f = Finding("QS201", Severity.ERROR, text, Location(tensor=text), name="x",
                fix=Fix(f"fix {text}", Applicability.MANUAL))
    report = Report(text, (f,), summary={"modules": 1})
    lines = console.report_lines(report)
    _same(lines)
    assert text.translate(console._CONTROL) in console.plain(lines)


def test_a_tab_is_left_to_rich():
    report = Report("src", (Finding("QS201", Severity.ERROR, "a\tb 模\tc", Location()),))
    out = console.render(report)
    assert "\t" not in out and out == console._rich(console.report_lines(report), color=False,
                                                    width=100)


def test_a_plain_check_does_not_import_rich():
    fixture = FIXTURES / "autoround-llama-auto_awq"
    code = ("import sys\nfrom qscale.cli import main\n"
            f"sys.argv = ['qscale', 'check', {str(fixture)!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('rich' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert p.stderr.strip().splitlines()[-1] == "False"
