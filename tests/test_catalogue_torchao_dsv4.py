"""The torchao and DeepSeek-V4 facts of the engine catalogue (``data/vllm.json`` ``formats``,
``torchao.*`` and ``deepseek_v4.*``): read from the release sources, the thresholds and the
release span built from them follow the entries, and a release that lacks one or reads it
otherwise is not checked as the others are."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
from builders import deepseek_v4
from cli_runner import cli_subprocess

from qscale import CheckOptions, check, read_checkpoint
from qscale.engines import catalogue, parse_version
from qscale.engines.extract import SourceTree, extract_formats
from qscale.errors import ConfigError, UnknownFormat
from qscale.formats import deepseek_v4_fp8, torchao

CAT = catalogue.load("vllm")
assert CAT is not None
FIXTURES = Path(__file__).parent / "fixtures" / "torchao"
DSV4_SINCE = {n: getattr(deepseek_v4_fp8, n) for n in (
    "CONFIG_SINCE", "EXPERT_DTYPE_SINCE", "NVFP4_SINCE", "NVFP4_IGNORE_SINCE",
    "MXFP8_LINEAR_SINCE")}


@pytest.mark.parametrize(("const", "expect"), [
    ("CONFIG_SINCE", (0, 20)), ("EXPERT_DTYPE_SINCE", (0, 20, 1)), ("NVFP4_SINCE", (0, 22)),
    ("NVFP4_IGNORE_SINCE", (0, 32)), ("MXFP8_LINEAR_SINCE", (0, 30))])
def test_dsv4_thresholds_follow_the_entries(const, expect):
    since = DSV4_SINCE[const]
    assert since.value == expect  # what the module held by hand before, read from the wheels
    for release in CAT.releases:
        fact = catalogue.format_fact("vllm", since.fact, parse_version(release))
        assert fact is not None
        assert bool(fact.value) == (parse_version(release) >= since), (const, release)


def test_dsv4_expert_dtypes_per_release():
    assert deepseek_v4_fp8.EXPERT_DTYPES == ("fp4", "fp8")
    assert deepseek_v4_fp8.expert_dtypes((0, 20, 1)) == ("fp4", "fp8")
    assert deepseek_v4_fp8.expert_dtypes((0, 20, 0)) == ()  # 0.20.0 reads no expert_dtype
    assert deepseek_v4_fp8.expert_dtypes((0, 19, 1)) == ()


def test_an_unknown_expert_dtype_on_0_20_0_is_not_refused_there(tmp_path):
    """vLLM 0.20.0's DeepseekV4FP8Config reads no ``expert_dtype`` (no
    ``_DEEPSEEK_V4_EXPERT_DTYPES`` in ``model_executor/models/deepseek_v4.py``): it does not
    raise for ``int4`` as 0.20.1 does; the check says it is not modelled there."""
    b = deepseek_v4("dsv4-fp8", experts="dsv4-mxfp4")
    b.config["expert_dtype"] = "int4"
    with pytest.raises(UnknownFormat, match=r"0\.20\.0 ignores it"):
        check(read_checkpoint(b.write(tmp_path / "a")), CheckOptions(engine="vllm==0.20.0"))
    with pytest.raises(ConfigError, match=r"expected one of \('fp4', 'fp8'\)"):
        check(read_checkpoint(b.write(tmp_path / "b")), CheckOptions(engine="vllm==0.20.1"))


def test_torchao_release_span_is_the_catalogues():
    assert torchao.READ_RELEASES == ((0, 18), (0, 33))
    for release in CAT.releases:
        got = torchao.facts(parse_version(release))
        assert "not read" not in json.dumps(got), release
    assert torchao.facts((0, 21, 0))["FP8 activation check"].startswith("False")
    assert torchao.facts((0, 22, 0))["FP8 activation check"].startswith("True")


_TORCHAO_PY = """
class TorchAOConfig:
    @classmethod
    def from_config(cls, config):
        quant_method = cls.get_from_keys_or(config, ["quant_method"], None)
        is_checkpoint_torchao_serialized = (
            quant_method is not None and {serialized} in quant_method)
        hf_config = cls.get_from_keys_or(config, ["quant_type"], None)
        assert len(hf_config) == 1 and {key} in hf_config
    def get_quant_method(self, layer, prefix):
        if not isinstance(layer, {layer}):
            return None
        return TorchAOLinearMethod(self)
"""
_LOADER_PY = """
class DefaultModelLoader:
    def load_weights(self, model, model_config):
        if model_config.quantization == "torchao":
            if (quant_config.is_checkpoint_torchao_serialized
                    and torchao_version_at_least("0.15.0")):
                self.load_config.safetensors_load_strategy = {strategy}
"""


@pytest.mark.parametrize(("fields", "fact", "value"), [
    ({}, None, None),
    ({"key": '"only"'}, "torchao.quant_type_keys", ["only"]),
    ({"serialized": '"ao"'}, "torchao.serialized",
     "quant_method is not None and 'ao' in quant_method"),
    ({"layer": "FusedMoE"}, "torchao.layers", ["FusedMoE"]),
    ({"strategy": '"lazy"'}, "torchao.load_strategy",
     {"strategy": "lazy", "torchao_at_least": "0.15.0"}),
])
def test_torchao_readers_read_the_source(tmp_path, fields, fact, value):
    src = {"key": '"default"', "serialized": '"torchao"', "layer": "LinearBase",
           "strategy": '"torchao"', **fields}
    q = tmp_path / "vllm/model_executor/layers/quantization"
    q.mkdir(parents=True)
    (q / "torchao.py").write_text(_TORCHAO_PY.format(**src), encoding="utf-8")
    loader = tmp_path / "vllm/model_executor/model_loader"
    loader.mkdir(parents=True)
    (loader / "default_loader.py").write_text(_LOADER_PY.format(**src), encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    modelled = dict(torchao.CATALOGUE_FACTS.values())
    for name, want in modelled.items():
        if name == "torchao.unflatten":  # no weight_utils.py here: a gap, not a value
            assert name not in got
            continue
        assert got[name][0] == (value if name == fact else want), name
    assert got["torchao.fp8_activation_check"][0] is False


def _data_with(tmp_path: Path, fact: str, last: object) -> dict[str, str]:
    """The committed data with ``fact`` read as ``last`` in 0.33.0 (None: not read there)."""
    raw = json.loads(resources.files("qscale.engines").joinpath("data/vllm.json").read_text(
        encoding="utf-8"))
    [row] = raw["formats"][fact]
    assert row[:2] == ["0.18.0", "0.33.0"]
    rows = [["0.18.0", "0.32.0", *row[2:]]]
    if last is not None:
        rows.append(["0.33.0", "0.33.0", last, *row[3:]])
    raw["formats"][fact] = rows
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "vllm.json").write_text(json.dumps(raw), encoding="utf-8")
    return {catalogue.DATA_ENV: str(tmp_path / "data")}


@pytest.mark.parametrize("last", [None, ["LinearBase", "FusedMoE"]])
def test_a_torchao_fact_missing_or_otherwise_is_not_checked(tmp_path, last):
    env = _data_with(tmp_path, "torchao.layers", last)
    ckpt = str(FIXTURES / "llama-int8wo")
    r = cli_subprocess("check", ckpt, "--engine", "vllm==0.33.0", "-f", "json", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "QS102" in r.stdout + r.stderr and "layers quantized" in r.stdout + r.stderr
    said = "torchao.layers) was not read" if last is None else "'FusedMoE'"
    assert said in r.stderr, r.stderr
    # near miss: the release before it reads every fact as modelled, in the same data
    r = cli_subprocess("check", ckpt, "--engine", "vllm==0.32.0", "-f", "json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dsv4_claims_are_the_catalogues():
    """``qscale._dsv4`` imports nothing of qscale (the checkpoint reader uses it), so its
    names are constants; they are the newest release's ``override_quantization_method``
    claims, and a release before the config class claims nothing."""
    from qscale import _dsv4

    newest = catalogue.format_fact("vllm", "deepseek_v4.claims", None)
    assert newest is not None and newest.source.startswith("vllm/models/deepseek_v41/")
    assert set(newest.value["methods"]) == _dsv4.METHODS
    assert set(newest.value["model_types"]) == {_dsv4.MODEL_TYPE} | _dsv4.OTHER_MODEL_TYPES
    for release in CAT.releases:
        fact = catalogue.format_fact("vllm", "deepseek_v4.claims", parse_version(release))
        assert fact is not None
        has_config = parse_version(release) >= deepseek_v4_fp8.CONFIG_SINCE
        assert bool(fact.value["model_types"]) == has_config, release
        if has_config:
            assert _dsv4.MODEL_TYPE in fact.value["model_types"]
            assert set(fact.value["methods"]) == _dsv4.METHODS


_DSV4_INIT = """
def get_quantization_config(name):
    if current_platform.is_cuda():
        from vllm.models.deepseek_v41 import {name} as DeepseekV41FP8Config
    from vllm.models.deepseek_v4 import {name}
"""
_DSV4_CONFIG = """
_DEEPSEEK_V4_EXPERT_DTYPES = ("fp4", "fp8")
class {name}(Fp8Config):
    @classmethod
    def override_quantization_method(cls, hf_quant_cfg, user_quant, hf_config=None):
        if hf_quant_cfg.get("quant_method") in ("fp8", "deepseek_v4_fp8"):
            model_type = getattr(hf_config, "model_type", None)
            if model_type {test}:
                return "deepseek_v4_fp8"
    def _resolve(self, quant_cfg):
        return quant_cfg.get("moe_quant_algo")
    def get_quant_method(self, layer, prefix):
        return ModelOptLinearMethod(self) if {mxfp8} else None
"""


@pytest.mark.parametrize("name", ["DeepseekV4FP8Config", "DeepseekV5FP8Config"])
def test_dsv4_readers_follow_the_imported_classes(tmp_path, name):
    q = tmp_path / "vllm/model_executor/layers/quantization"
    q.mkdir(parents=True)
    (q / "__init__.py").write_text(_DSV4_INIT.format(name=name), encoding="utf-8")
    for pkg, test, mxfp8 in (("deepseek_v4", '== "deepseek_v4"', "False"),
                             ("deepseek_v41", 'in ("deepseek_v4", "deepseek_v41")', "True")):
        d = tmp_path / "vllm/models" / pkg
        d.mkdir(parents=True)
        (d / "__init__.py").write_text(f"from .quant_config import {name}\n", encoding="utf-8")
        (d / "quant_config.py").write_text(_DSV4_CONFIG.format(
            name=name, test=test, mxfp8=mxfp8), encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    if name != "DeepseekV4FP8Config":  # near miss: another class name is no V4 config
        assert got["deepseek_v4.configs"][0] == [] and got["deepseek_v4.expert_dtypes"][0] == []
        assert got["deepseek_v4.claims"][0] == {"methods": [], "model_types": []}
        return
    assert got["deepseek_v4.configs"][0] == ["vllm/models/deepseek_v4/quant_config.py",
                                             "vllm/models/deepseek_v41/quant_config.py"]
    assert got["deepseek_v4.expert_dtypes"][0] == ["fp4", "fp8"]
    assert got["deepseek_v4.moe_quant_algo"][0] is True
    assert got["deepseek_v4.mxfp8_linear"][0] is True  # the v41 class names it
    assert got["deepseek_v4.nvfp4_ignore"][0] is False
    assert got["deepseek_v4.claims"][0] == {"methods": ["deepseek_v4_fp8", "fp8"],
                                            "model_types": ["deepseek_v4", "deepseek_v41"]}
    assert got["deepseek_v4.claims"][1].startswith("vllm/models/deepseek_v41/")
