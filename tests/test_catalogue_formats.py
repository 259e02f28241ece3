"""The quantization-format facts of the engine catalogue (``data/vllm.json`` ``formats``):
every fact a format module or ``qscale.engines.wna16`` reads has a cited entry in every
catalogued release, the thresholds and rows built from them follow the entries, and a release
the data has no entry for is reported partial rather than modelled by another in silence."""

from __future__ import annotations

import itertools
import json
import zipfile
from importlib import resources

import pytest
from builders import dense, qwen3_moe
from cli_runner import cli_subprocess

from qscale.engines import catalogue, parse_version, wna16
from qscale.engines.extract import (
    FORMAT_READERS,
    HAND_FORMAT_FACTS,
    SourceTree,
    extract_formats,
    format_rows,
)
from qscale.engines.generate import build, main
from qscale.formats import deepseek_v4_fp8, fbgemm_fp8, fp_quant, quark, torchao

CAT = catalogue.load("vllm")
assert CAT is not None
#: every threshold quark.py reads from the catalogue, by its name there
QUARK_SINCE = {n: getattr(quark, n) for n in ("INT8_DYNAMIC_SINCE", "INT8_SCALE_2D_SINCE",
                                               "NVFP4_SINCE", "INT4_SINCE")}
QUARK_SINCE.update({f"MOE_FACTS[{k}]": f.since for k, f in quark.MOE_FACTS.items()
                    if f.since is not None})
QUARK_SINCE["FP8_BLOCK_FACT"] = quark.FP8_BLOCK_FACT.since
#: every catalogue fact the modules read
USED = sorted({s.fact for s in QUARK_SINCE.values()}
              | {name for name, _ in wna16._VLLM_FIELDS.values()}
              | {name for name, _ in wna16._AUTO_ROUND_FIELDS.values()}
              | set(fbgemm_fp8.CATALOGUE_FACTS.values()) | set(fp_quant.CATALOGUE_FACTS.values())
              | {"auto_round.backends"}
              | {name for name, _ in torchao.CATALOGUE_FACTS.values()}
              | set(torchao.CITED_FACTS.values()) | set(deepseek_v4_fp8.CATALOGUE_FACTS.values()))


@pytest.mark.parametrize("name", USED)
def test_every_used_fact_has_a_cited_entry_in_every_release(name):
    for release in CAT.releases:
        fact = catalogue.format_fact("vllm", name, parse_version(release))
        assert fact is not None, f"{name} has no entry for vllm=={release}"
        assert fact.release == release
        path = fact.source.split(":")[0]
        assert path.startswith("vllm/") and path.endswith(".py"), fact.source
        assert fact.how == "extracted" or fact.how.startswith("hand-written: read in "), fact.how
        assert fact.cite.startswith(f"vllm=={release} vllm/")


def test_hand_written_facts_are_few_and_the_rest_have_a_reader():
    assert set(USED) <= set(FORMAT_READERS) | set(HAND_FORMAT_FACTS)
    assert not set(FORMAT_READERS) & set(HAND_FORMAT_FACTS)
    assert len(HAND_FORMAT_FACTS) < len(FORMAT_READERS) / 3
    for rows in HAND_FORMAT_FACTS.values():
        for first, last, _value, source, why in rows:
            assert first in CAT.releases and last in CAT.releases
            assert source.startswith("vllm/") and why.startswith("read in ")


def test_ranges_are_ordered_and_do_not_overlap():
    order = {r: i for i, r in enumerate(CAT.releases)}
    for name, ranges in CAT.formats.items():
        spans = [(order[r.first], order[r.last]) for r in ranges]
        assert all(a <= b for a, b in spans), name
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(spans)), name


@pytest.mark.parametrize("const", sorted(QUARK_SINCE))
def test_quark_thresholds_follow_the_entries(const):
    since = QUARK_SINCE[const]
    holds = since._holds
    for release in CAT.releases:
        fact = catalogue.format_fact("vllm", since.fact, parse_version(release))
        assert fact is not None
        assert holds(fact.value) == (parse_version(release) >= since), (const, release)
    # compares as the version tuple it stands for, both ways
    assert since == since.value and tuple(since) == since.value
    assert not since.value < since and since.value <= since and since > (0, 17)


def test_quark_moe_facts_cite_the_entry_their_threshold_starts_at():
    # MOE_FACTS covers the MoE methods the catalogue's dispatch lists hold, and no others
    newest = catalogue.format_fact("vllm", "quark.moe_methods", None)
    assert newest is not None
    builds = {f.builds.split()[0] for f in quark.MOE_FACTS.values()}
    assert builds - set(newest.value) == {"should_ignore_layer(check_children=True)"}
    for fact in (*quark.MOE_FACTS.values(), quark.FP8_BLOCK_FACT):
        if fact.since is None:  # W4A8: modelled in no release; cites the newest dispatch
            assert fact.builds in newest.value
            assert fact.source == f"vllm=={newest.release} {newest.source.split(':')[0]}"
            continue
        first = next(r for r in CAT.releases if parse_version(r) >= fact.since)
        entry = catalogue.format_fact("vllm", fact.since.fact, parse_version(first))
        assert entry is not None and fact.since._holds(entry.value)
        assert fact.source == f"vllm=={first} {entry.source.split(':')[0]}"
        earlier = CAT.releases[CAT.releases.index(first) - 1]
        before = catalogue.format_fact("vllm", fact.since.fact, parse_version(earlier))
        assert before is not None and not fact.since._holds(before.value)


_FP8_BLOCK_CFG = {
    "weight": {"dtype": "fp8_e4m3", "qscheme": "per_block", "block_size": [128, 128],
               "is_dynamic": False, "symmetric": True},
    "input_tensors": {"dtype": "fp8_e4m3", "qscheme": "per_group", "group_size": 128,
                      "is_dynamic": True, "symmetric": True},
}


def test_quark_fp8_block_scale_name_is_the_entry_of_every_release():
    for release in CAT.releases:
        entry = catalogue.format_fact("vllm", "quark.fp8_block_scale", parse_version(release))
        assert entry is not None
        got = quark._scheme(_FP8_BLOCK_CFG, "cfg", parse_version(release))
        if entry.value is None:  # no QuarkW8A8Fp8PerBlock: the config is refused
            assert isinstance(got, str) and "no Quark FP8 per-block scheme" in got, release
        else:
            assert isinstance(got, quark.QuantScheme), (release, got)
            assert [t.param for t in got.tensors] == ["weight", entry.value], release
    assert [name for _, name, _ in quark.FP8_BLOCK_SCALE_NAMES] == [
        "weight_scale_inv", "weight_scale"]


_QUARK_MOE_PY = """
class QuarkMoEMethod:
    @staticmethod
    def get_moe_method(quant_config, module, layer_name):
        if quant_config._is_fp8_w8a8(w, i):
            return QuarkW8A8Fp8MoEMethod(w, i, module.moe_config)
        {int8}
        raise RuntimeError("Unsupported FusedMoe scheme")
class QuarkW8A8Fp8MoEMethod(QuarkMoEMethod):
    def __init__(self, weight_config, input_config, moe):
        self.weight_qscheme = weight_config.get("qscheme")
        per_tensor = self.weight_qscheme == "per_tensor" and self.input_qscheme == "per_tensor"
        per_block = self.weight_qscheme == "per_block" and self.input_qscheme == "per_group"
        if not ({guard}):
            raise ValueError("For FP8 Fused MoE layers, ...")
class QuarkW8A8Int8MoEMethod(QuarkMoEMethod):
    pass
"""


def test_quark_moe_readers_read_the_dispatch_and_the_guard(tmp_path):
    q = tmp_path / "vllm/model_executor/layers/quantization/quark"
    q.mkdir(parents=True)
    (q / "quark_moe.py").write_text(_QUARK_MOE_PY.format(
        int8="elif x:\n            return QuarkW8A8Int8MoEMethod(w, i, module.moe_config)",
        guard="per_tensor or per_block"), encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    assert got["quark.moe_methods"][0] == ["QuarkW8A8Fp8MoEMethod", "QuarkW8A8Int8MoEMethod"]
    assert got["quark.moe_fp8_weight_qschemes"][0] == ["per_block", "per_tensor"]
    assert got["quark.moe_fp8_weight_qschemes"][1].endswith(
        "quark_moe.py:QuarkW8A8Fp8MoEMethod.__init__")
    # near miss: the class is defined but not dispatched to, the local is not in the guard
    (q / "quark_moe.py").write_text(_QUARK_MOE_PY.format(int8="", guard="per_tensor"),
                                    encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    assert got["quark.moe_methods"][0] == ["QuarkW8A8Fp8MoEMethod"]
    assert got["quark.moe_fp8_weight_qschemes"][0] == ["per_tensor"]
    # no quark.py / schemes file in this release: those facts are absent (a gap), not False
    assert "quark.exclude_children" not in got and "quark.fp8_block_scale" not in got


_QUARK_CONFIG_PY = """
class QuarkConfig:
    def get_quant_method(self, layer, prefix):
        if should_ignore_layer(prefix, ignore=[], check_children={children}):
            return None
"""
_PER_BLOCK_PY = """
class QuarkW8A8Fp8:
    pass
class QuarkW8A8Fp8PerBlock:
    def create_weights(self, layer, weight_loader):
        layer.register_parameter("weight", weight)
        weight_scale = create_fp8_scale_parameter(BlockQuantScaleParameter, weight_loader)
        layer.register_parameter("{name}", weight_scale)
"""


@pytest.mark.parametrize(("children", "name", "expect"), [
    ("isinstance(layer, RoutedExperts)", "weight_scale_inv", (True, "weight_scale_inv")),
    ("False", "weight_scale", (False, "weight_scale")),  # a literal False: not passed on
])
def test_quark_exclude_and_block_scale_readers(tmp_path, children, name, expect):
    q = tmp_path / "vllm/model_executor/layers/quantization/quark"
    (q / "schemes").mkdir(parents=True)
    (q / "quark.py").write_text(_QUARK_CONFIG_PY.format(children=children), encoding="utf-8")
    (q / "schemes/quark_w8a8_fp8.py").write_text(_PER_BLOCK_PY.format(name=name),
                                                 encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    assert (got["quark.exclude_children"][0], got["quark.fp8_block_scale"][0]) == expect
    assert got["quark.fp8_block_scale"][1].endswith(
        "quark_w8a8_fp8.py:QuarkW8A8Fp8PerBlock.create_weights")
    # a release whose scheme file has no per-block class: an entry of None, not a gap
    (q / "schemes/quark_w8a8_fp8.py").write_text("class QuarkW8A8Fp8:\n    pass\n",
                                                 encoding="utf-8")
    got = extract_formats(SourceTree(tmp_path))
    assert got["quark.fp8_block_scale"][0] is None
    assert got["quark.fp8_block_scale"][1].endswith("QuarkW8A8Fp8PerBlock (absent)")


def test_a_quark_moe_fact_missing_from_a_release_makes_its_check_partial(tmp_path):
    raw = json.loads(resources.files("qscale.engines").joinpath("data/vllm.json").read_text(
        encoding="utf-8"))
    rows = raw["formats"]["quark.moe_methods"]
    assert rows[-1][:2] == ["0.33.0", "0.33.0"]
    rows.pop()  # 0.33.0 not read
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "vllm.json").write_text(json.dumps(raw), encoding="utf-8")
    env = {catalogue.DATA_ENV: str(tmp_path / "data")}
    ckpt = qwen3_moe("quark-int8").write(tmp_path / "ckpt")
    r = cli_subprocess("check", str(ckpt), "--engine", "vllm==0.33.0", "-f", "json", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "QS010" in r.stdout and "quark.moe_methods" in r.stdout
    # the release before it has the entry, in the same data: clean
    r = cli_subprocess("check", str(ckpt), "--engine", "vllm==0.32.0", "-f", "json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "quark.moe_methods" not in r.stdout


def test_wna16_rows_are_the_entries_of_every_release():
    for release in CAT.releases:
        version = parse_version(release)
        row = wna16.facts("vllm", version)
        assert row is not None and row.low <= version < row.high
        for attr, (name, convert) in wna16._VLLM_FIELDS.items():
            fact = catalogue.format_fact("vllm", name, version)
            assert fact is not None and getattr(row, attr) == convert(fact.value), (release, attr)
            assert fact.source.split(":")[0] in row.sources
        ar = wna16.auto_round_facts("vllm", version)
        assert ar is not None
        for attr, (name, convert) in wna16._AUTO_ROUND_FIELDS.items():
            fact = catalogue.format_fact("vllm", name, version)
            assert fact is not None and getattr(ar, attr) == convert(fact.value), (release, attr)
    # a row spans the releases that agree: neighbouring rows differ in behaviour
    for rows, fields in ((wna16.VLLM, wna16._VLLM_FIELDS),
                         (wna16.VLLM_AUTO_ROUND, wna16._AUTO_ROUND_FIELDS)):
        for a, b in itertools.pairwise(rows):
            assert a.high == b.low
            assert any(getattr(a, f) != getattr(b, f) for f in fields)


def test_same_in_every_release_facts_are():
    # read release-independently: the modules take the newest release's value
    for name in ("auto_round.backends", "fbgemm_fp8.required_keys"):
        assert len({json.dumps(r.value) for r in CAT.formats[name]}) == 1, name
    assert frozenset(CAT.formats["auto_round.backends"][-1].value) == wna16.AUTO_ROUND_BACKENDS
    assert fbgemm_fp8.required_keys() == tuple(CAT.formats["fbgemm_fp8.required_keys"][-1].value)
    params = CAT.formats["fbgemm_fp8.parameters"][-1].value
    # the scheme fbgemm_fp8.py checks against: an FP8 weight and an F32 [out, 1] scale
    assert params["ModelWeightParameter"] == {"dtype": "torch.float8_e4m3fn", "rank": 2}
    assert params["ChannelQuantScaleParameter"]["rank"] == 2
    assert all("vllm==0.33.0 vllm/" in text for text in fbgemm_fp8.FACTS.values())


def test_a_fact_missing_from_a_release_leaves_a_gap_not_a_bridge():
    releases = ["0.30.0", "0.31.0", "0.32.0"]
    read = {"0.30.0": {"x.y": (1, "vllm/a.py:A")}, "0.31.0": {},
            "0.32.0": {"x.y": (1, "vllm/a.py:A")}}
    rows = format_rows(read, releases)["x.y"]
    assert [(r[0], r[1]) for r in rows] == [("0.30.0", "0.30.0"), ("0.32.0", "0.32.0")]
    # the data file's section is the same rows
    assert build("vllm", {r: {} for r in releases}, formats=read)["formats"]["x.y"] == rows


def _with_new_patch_release(tmp_path, new: str = "0.33.1"):
    """The committed catalogue as a regeneration that added ``new`` would leave it: every
    architecture and extracted fact read again and unchanged but one, read as an
    ``allow_tile_padding`` expression the rows do not know, and the hand-written facts not
    (yet) checked in it."""
    raw = json.loads(resources.files("qscale.engines").joinpath("data/vllm.json").read_text(
        encoding="utf-8"))
    last = raw["releases"][-1]
    raw["releases"].append(new)
    for rows in raw["architectures"].values():
        if rows[-1][1] == last:
            rows[-1][1] = new
    for name, rows in raw["formats"].items():
        if name == "gptq.moe_tile_padding":  # an expression the rows do not know
            rows.append([new, new, "self.pad_ok(layer)", *rows[-1][3:]])
        elif rows[-1][1] == last and rows[-1][4] == "extracted":
            rows[-1][1] = new
    (tmp_path / "vllm.json").write_text(json.dumps(raw), encoding="utf-8")
    return tmp_path


def test_a_release_missing_from_the_data_is_partial_not_the_newest(tmp_path):
    (tmp_path / "data").mkdir()
    data = _with_new_patch_release(tmp_path / "data")
    ckpt = dense("LlamaForCausalLM", "gptq").write(tmp_path)
    env = {catalogue.DATA_ENV: str(data)}
    r = cli_subprocess("check", str(ckpt), "--engine", "vllm==0.33.1", "-f", "json", env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    out = json.loads(r.stdout)
    text = json.dumps(out)
    assert "vllm==0.33.1 catalogue has no entry" in text and "wna16.marlin_tiles" in text
    assert "values qscale does not model for gptq.moe_tile_padding" in text
    # near miss: the release before it has every entry, in the same data, and is not partial
    r = cli_subprocess("check", str(ckpt), "--engine", "vllm==0.33.0", "-f", "json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "catalogue has no entry" not in r.stdout


_QUARK_PY = """
from vllm.model_executor.layers.quantization.quark.schemes import (QuarkScheme, {extra})
class QuarkConfig:
    def _is_int8(self, weight_quant, input_quant):
        return weight_quant.get("dtype") == "int8" and {dynamic}
"""
_GPTQ_PY = """
class GPTQConfig:
    def __init__(self, weight_bits):
        if self.weight_bits not in [2, 3, 4, 8]:
            raise ValueError(weight_bits)
"""


def _wheel(folder, version: str, *, nvfp4: bool, gptq: bool):
    """A stand-in release wheel holding only the sources two format readers look at."""
    q = "vllm/model_executor/layers/quantization/"
    dynamic = 'input_quant.get("qscheme") == "per_channel"' if nvfp4 else "True"
    with zipfile.ZipFile(folder / f"vllm-{version}-cp38-abi3-any.whl", "w") as z:
        z.writestr(f"{q}quark/quark.py", _QUARK_PY.format(
            extra="QuarkNVFP4" if nvfp4 else "QuarkW8A8Int8", dynamic=dynamic))
        if gptq:
            z.writestr(f"{q}gptq.py", _GPTQ_PY)


def test_generate_formats_only_then_check_is_reproducible(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "0.1.0", nvfp4=False, gptq=True)
    _wheel(wheels, "0.2.0", nvfp4=True, gptq=False)
    out = tmp_path / "vllm.json"
    out.write_text(json.dumps(build("vllm", {"0.1.0": {}, "0.2.0": {}})), encoding="utf-8")
    args = ["vllm", "--formats-only", "--wheels", str(wheels), "--out", str(out)]
    assert main(args) == 0
    formats = json.loads(out.read_text(encoding="utf-8"))["formats"]
    assert [r[:3] for r in formats["quark.schemes"]] == [
        ["0.1.0", "0.1.0", ["QuarkScheme", "QuarkW8A8Int8"]],
        ["0.2.0", "0.2.0", ["QuarkNVFP4", "QuarkScheme"]]]
    assert [r[:3] for r in formats["quark.int8_dynamic_input"]] == [
        ["0.1.0", "0.1.0", False], ["0.2.0", "0.2.0", True]]
    assert [r[:3] for r in formats["gptq.fallback_bits"]] == [
        ["0.1.0", "0.1.0", [2, 3, 4, 8]], ["0.2.0", "0.2.0", []]]
    assert formats["gptq.fallback_bits"][1][3].endswith("gptq.py:GPTQConfig (absent)")
    # a fact whose source neither release has is absent, not guessed
    assert "marlin.group_sizes" not in formats
    assert main([*args, "--check"]) == 0
    # a committed file that is not what the wheels say fails the check
    data = json.loads(out.read_text(encoding="utf-8"))
    data["formats"]["quark.int8_dynamic_input"][0][2] = True
    out.write_text(json.dumps(data), encoding="utf-8")
    assert main([*args, "--check"]) == 1
