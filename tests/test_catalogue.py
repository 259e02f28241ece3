"""The rule registry is consistent: unique sorted codes, module names, docs, tests."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from qscale import rules
from qscale.rules._api import REQUIRED_HEADINGS

ROOT = Path(__file__).resolve().parents[1]


def test_codes_unique_sorted_and_not_removed():
    codes = [r.code for r in rules.ALL_RULES]
    assert codes == sorted(set(codes))
    assert not set(codes) & set(rules.REMOVED)


def test_names_are_kebab_case_and_unique():
    names = [r.name for r in rules.ALL_RULES]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in names)


def test_module_file_names_match_code_and_name():
    for r in rules.ALL_RULES:
        mod = f"qscale.rules.{r.code.lower()}_{r.name.replace('-', '_')}"
        assert importlib.import_module(mod).RULE is r


def test_docstrings_have_required_headings():
    for r in rules.ALL_RULES:
        for heading in REQUIRED_HEADINGS:
            assert heading in r.doc, (r.code, heading)


def test_every_checking_rule_has_a_test_module():
    for r in rules.ALL_RULES:
        if r.check is not None:
            name = f"test_{r.code.lower()}_{r.name.replace('-', '_')}.py"
            assert (ROOT / "tests" / "rules" / name).is_file(), name


def test_generated_docs_are_current():
    from qscale.docs import render_rule_docs

    for path, text in render_rule_docs().items():
        on_disk = ROOT / "docs" / "rules" / path
        assert on_disk.is_file() and on_disk.read_text() == text, (
            f"docs/rules/{path} is stale: run `python -m qscale.docs`")


def test_every_checking_rule_finding_carries_a_fix(tmp_path):
    """JSON findings carry code, severity, location, message and fix (issue #4)."""
    from builders import qwen3_5_moe

    from qscale import CheckOptions, check, read_checkpoint

    built = (qwen3_5_moe("ct-fp8")
             .drop(r"layers\.1\.self_attn\.o_proj\.input_scale")
             .add("model.language_model.layers.1.self_attn.o_proj.weight_zero_point",
                  __import__("torch").zeros(1)))
    report = check(read_checkpoint(built.write(tmp_path)),
                   CheckOptions(engine="vllm==0.19.1"))
    assert {"QS201", "QS203", "QS401"} <= {f.code for f in report.findings}
    assert all(f.fix is not None and f.fix.title for f in report.findings)


def test_every_code_qscale_raises_has_a_rule():
    """`qscale rule CODE` explains every code an error or a finding carries."""
    raised = set()
    for path in (ROOT / "qscale").rglob("*.py"):
        raised |= set(re.findall(r'code\s*[=:]\s*(?:str\s*=\s*)?"(QS\d{3})"', path.read_text()))
    assert raised >= {"QS001", "QS101", "QS102", "QS103"}, raised
    assert raised <= set(rules.BY_CODE), sorted(raised - set(rules.BY_CODE))
