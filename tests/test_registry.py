"""Every name in vLLM 0.33's quantization registry (qscale.formats.registry) gives a definite
outcome: modelled, refused with the engine's reason, or QS102 saying why not modelled."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import dense, from_files

from qscale import CheckOptions, check, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import ALIASES, FORMATS, VLLM_METHODS, registry

REAL = Path(__file__).parent / "fixtures" / "real"


def findings(path: Path, engine: str = "vllm==0.33.0") -> list[tuple[str, str]]:
    report = check(read_checkpoint(path), CheckOptions(engine=engine))
    return sorted((f.code, f.message) for f in report.findings)


def test_every_registry_name_is_parsed_or_says_why_not():
    known = set(FORMATS) | set(ALIASES)
    for m in registry.VLLM_0_33:
        assert m.name in known or m.why_not, m.name
        assert not (m.name in known and m.why_not), f"{m.name}: modelled and a QS102 reason"
    assert set(registry.BY_NAME) == VLLM_METHODS


@pytest.mark.parametrize("method", registry.RUNTIME_ONLY)
def test_runtime_method_in_a_checkpoint_is_refused(tmp_path, method, run_cli):
    built = dense("LlamaForCausalLM", "bf16")
    built.config["quantization_config"] = {"quant_method": method}
    path = built.write(tmp_path)
    with pytest.raises(ConfigError, match="runtime method, not a checkpoint format") as err:
        findings(path)
    assert err.value.code == "QS101"
    assert "does not support loading from a checkpoint config" in err.value.message
    result = run_cli("check", str(path), "--engine", "vllm==0.33.0")
    assert result.returncode == 2 and "QS101" in result.stdout + result.stderr


@pytest.mark.parametrize(("method", "extra", "words"), [
    ("humming", {}, "serve-time kernel backend"),
])
def test_unmodelled_checkpoint_names_say_why(tmp_path, method, extra, words, run_cli):
    built = dense("LlamaForCausalLM", "bf16")
    built.config["quantization_config"] = {"quant_method": method, **extra}
    path = built.write(tmp_path)
    with pytest.raises(UnknownFormat, match=words) as err:
        findings(path)
    assert err.value.code == "QS102"
    assert registry.BY_NAME[method].config in err.value.message
    result = run_cli("check", str(path), "--engine", "vllm==0.33.0")
    assert result.returncode == 2 and "QS102" in result.stdout + result.stderr


@pytest.mark.parametrize("fixture", ["autoround-llama-auto_round",
                                     "autoround-qwen3_moe-auto_round"])
def test_inc_reads_as_auto_round_on_vllm_0_33(tmp_path, fixture):
    # INCConfig.from_config reads no quant_method: `inc` and `auto-round` build alike
    as_inc = from_files(REAL / fixture)
    assert as_inc.config["quantization_config"]["quant_method"] == "auto-round"
    as_inc.config["quantization_config"]["quant_method"] = "inc"
    assert findings(as_inc.write(tmp_path)) == findings(REAL / fixture)


def test_inc_with_a_broken_tensor_gives_auto_rounds_finding(tmp_path):
    fixture = REAL / "autoround-llama-auto_round"
    broken = from_files(fixture).drop(r"model\.layers\.0\.self_attn\.q_proj\.scales$")
    as_inc = broken.copy()
    as_inc.config["quantization_config"]["quant_method"] = "inc"
    found = findings(as_inc.write(tmp_path, name="inc"))
    assert found and found == findings(broken.write(tmp_path, name="auto-round"))
    assert any("q_proj" in message for _, message in found)


@pytest.mark.parametrize("engine", ["sglang==0.5.12", "vllm==0.24.0"])
def test_inc_elsewhere_is_not_checked(tmp_path, engine):
    as_inc = from_files(REAL / "autoround-llama-auto_round")
    as_inc.config["quantization_config"]["quant_method"] = "inc"
    with pytest.raises(UnknownFormat, match="INCConfig's own name"):
        findings(as_inc.write(tmp_path), engine)


def test_methods_page_tabulates_the_registry():
    from qscale.docs import render_methods_doc

    page = (Path(__file__).parents[1] / "docs" / "methods.md").read_text()
    assert page == render_methods_doc(), "docs/methods.md is stale: run `python -m qscale.docs`"
    table = page.split("## vLLM 0.33's quantization registry", 1)[1]
    for m in registry.VLLM_0_33:
        [row] = [r for r in table.splitlines() if r.startswith(f"| `{m.name}` |")]
        assert m.config in row and m.use.value in row
        assert ("[QS102](rules/QS102.md): " in row) == bool(m.why_not), row
    assert "runtime method" in table.split("| `fp8_per_block` |", 1)[1].splitlines()[0]
