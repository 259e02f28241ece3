"""`qscale models` and docs/models.md: every architecture an engine release serves, planned or
not-plannable and why.

The command and the page are tested against a stand-in catalogue (tests/fake_catalogue.py);
the last test holds docs/models.md to whatever catalogue this qscale ships.
"""

from __future__ import annotations

import json
from pathlib import Path

import fake_catalogue
import pytest
from typer.testing import CliRunner

from qscale.cli import app
from qscale.docs import render_models_doc
from qscale.errors import UnknownEngine

ROOT = Path(__file__).resolve().parents[1]
WHY = "fuses `qkv|gate` in a way qscale does not model"
ROWS = {
    "0.32.0": [("LlamaForCausalLM", "text", "")],
    "0.33.0": [
        ("LlamaForCausalLM", "text", ""),
        ("Qwen3_5MoeForConditionalGeneration", "multimodal", ""),
        ("FooForCausalLM", "text", WHY),
    ],
}


@pytest.fixture
def catalogue(monkeypatch):
    return fake_catalogue.install(monkeypatch, "vllm", ROWS)


def models(*args: str):
    return CliRunner().invoke(app, ["models", *args])


def test_json_lists_every_architecture_with_status_why_and_source(catalogue):
    r = models("--engine", "vllm==0.33.0", "-f", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {
        "engine": "vllm==0.33.0",
        "architectures": [
            {"name": "FooForCausalLM", "status": "not-plannable", "why": WHY,
             "source": "fooforcausallm.py@vllm==0.33.0"},
            {"name": "LlamaForCausalLM", "status": "planned", "why": "",
             "source": "llamaforcausallm.py@vllm==0.33.0"},
            {"name": "Qwen3_5MoeForConditionalGeneration", "status": "planned", "why": "",
             "source": "qwen3_5moeforconditionalgeneration.py@vllm==0.33.0"},
        ],
        "summary": {"planned": 2, "not-plannable": 1},
    }  # fmt: skip


def test_the_default_engine_names_the_release_it_read(catalogue):
    data = json.loads(models("-f", "json").output)
    assert data["engine"] == "vllm==0.33.0" and data["summary"]["planned"] == 2
    older = json.loads(models("-e", "vllm==0.32.5", "-f", "json").output)
    assert older["engine"] == "vllm==0.32.0"
    assert [a["name"] for a in older["architectures"]] == ["LlamaForCausalLM"]


def test_console_is_a_table_then_the_counts(catalogue):
    r = models("--engine", "vllm==0.33.0")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[-1] == "vllm==0.33.0: 3 architectures served: 2 planned, 1 not-plannable"
    [foo] = [ln for ln in lines if "FooForCausalLM" in ln]
    assert "not-plannable" in foo and "fuses `qkv|gate`" in foo
    assert any("LlamaForCausalLM" in ln and "planned" in ln for ln in lines)


def test_an_engine_version_without_data_is_an_error(catalogue):
    r = models("--engine", "sglang==0.5.12")
    assert isinstance(r.exception, UnknownEngine)  # main() prints error:/hint:, exits 2
    assert str(r.exception) == (
        "sglang==0.5.12: qscale's engine catalogue has no architectures for this version"
    )
    assert r.exception.hint == "catalogued releases: vllm 0.32.0, 0.33.0"


def test_docs_page_has_a_table_per_release_newest_first(catalogue):
    text = render_models_doc()
    assert text is not None
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert heads == ["## vllm==0.33.0", "## vllm==0.32.0"]
    assert "3 architectures: 2 planned, 1 not-plannable." in text
    escaped = WHY.replace("|", "\\|")
    assert f"| `FooForCausalLM` | text | not-plannable | {escaped} |" in text
    assert "1 architecture: 1 planned, 0 not-plannable." in text


def test_docs_page_matches_the_shipped_catalogue():
    """`python -m qscale.docs` writes docs/models.md exactly when a catalogue is shipped."""
    text = render_models_doc()
    page = ROOT / "docs" / "models.md"
    if text is None:
        assert not page.exists(), "docs/models.md without a catalogue: run `python -m qscale.docs`"
    else:
        assert page.is_file() and page.read_text() == text, (
            "docs/models.md is stale: run `python -m qscale.docs`")
