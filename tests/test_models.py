"""`qscale models` and docs/models.md: every architecture an engine release serves, planned or
not-plannable and why, from the committed engine catalogue."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from qscale.docs import render_models_doc
from qscale.engines import catalogue, parse_engine

ROOT = Path(__file__).resolve().parents[1]
VLLM = catalogue.load("vllm")
assert VLLM is not None
RELEASES = VLLM.releases
NEWEST = f"vllm=={RELEASES[-1]}"


def test_json_lists_every_architecture_with_status_why_and_source(run_cli):
    r = run_cli("models", "--engine", "vllm==0.33.0", "-f", "json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert list(data) == ["engine", "architectures", "summary"]
    assert data["engine"] == "vllm==0.33.0"
    served = catalogue.architectures(parse_engine("vllm==0.33.0"))
    assert [a["name"] for a in data["architectures"]] == [a.name for a in served]
    for entry in data["architectures"]:
        assert list(entry) == ["name", "status", "why", "source"]
        assert entry["source"].endswith(".py@vllm==0.33.0")
        assert (entry["status"] == "planned") == (entry["why"] == "")
    counts = Counter(a["status"] for a in data["architectures"])
    assert data["summary"] == {s: counts[s] for s in ("planned", "not-plannable")}
    assert data["summary"]["planned"] > 200 and data["summary"]["not-plannable"] > 0
    by_name = {a["name"]: a for a in data["architectures"]}
    assert by_name["Qwen3_5MoeForConditionalGeneration"]["status"] == "planned"


def test_the_default_engine_names_the_release_it_read(run_cli):
    data = json.loads(run_cli("models", "-f", "json").stdout)
    assert data["engine"] == NEWEST


def test_console_is_a_table_then_the_counts(run_cli):
    r = run_cli("models", "--engine", "vllm==0.33.0")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    data = json.loads(run_cli("models", "-e", "vllm==0.33.0", "-f", "json").stdout)
    s = data["summary"]
    assert lines[-1] == (
        f"vllm==0.33.0: {s['planned'] + s['not-plannable']} architectures served:"
        f" {s['planned']} planned, {s['not-plannable']} not-plannable"
    )
    unplanned = next(a for a in data["architectures"] if a["status"] == "not-plannable")
    assert any(unplanned["name"] in ln and "not-plannable" in ln for ln in lines)
    assert any("LlamaForCausalLM" in ln and "planned" in ln for ln in lines)


@pytest.mark.parametrize("engine", ["sglang==0.5.12", "vllm==0.10.0"])
def test_an_engine_version_without_data_is_an_error(run_cli, engine):
    r = run_cli("models", "--engine", engine)
    assert r.returncode == 2 and r.stdout == ""
    error, hint = r.stderr.splitlines()
    assert error == (
        f"error: {engine}: qscale's engine catalogue has no architectures for this version"
    )
    assert hint == f"hint: catalogued releases: vllm {', '.join(RELEASES)}"


def test_docs_page_has_a_table_per_release_newest_first():
    text = render_models_doc()
    assert text is not None
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert heads == [f"## vllm=={r}" for r in reversed(RELEASES)]
    rows = [ln for ln in text.splitlines() if ln.startswith("| `")]
    total = sum(len(catalogue.architectures(parse_engine(f"vllm=={r}"))) for r in RELEASES)
    assert len(rows) == total
    assert all(ln.count(" | ") == 3 for ln in rows), "a why with a bare | breaks the table"


def test_docs_page_matches_the_shipped_catalogue():
    """`python -m qscale.docs` writes docs/models.md; CI diffs it like docs/rules."""
    text = render_models_doc()
    page = ROOT / "docs" / "models.md"
    assert page.is_file() and page.read_text() == text, (
        "docs/models.md is stale: run `python -m qscale.docs`")
