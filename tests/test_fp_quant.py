"""``quant_method: fp_quant`` (FP-Quant MXFP4 / NVFP4 with a Hadamard rotation) as vLLM builds
and loads it, on the tiny Llama checkpoints of tests/fixtures/fp_quant/ (written in the layout
FP-Quant's exporter and fp_quant's FPQuantLinear save, not by them: they need CUDA; see the
README there) against what real vLLM 0.33.0 loaded from them
(tests/fixtures/vllm_golden/fp_quant/, ``oracle/fp_quant_oracle.py golden``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from builders import Built, from_files

from qscale import CheckOptions, check, plan_load, read_checkpoint
from qscale.errors import ConfigError, UnknownFormat
from qscale.findings import Severity
from qscale.formats import fp_quant, resolve_quantization
from qscale.layout import Deployment

FIXTURES = Path(__file__).parent / "fixtures"
FP = FIXTURES / "fp_quant"
GOLDEN = FIXTURES / "vllm_golden" / "fp_quant"
CLEAN = FP / "llama-mxfp4-no-backward"  # what vLLM >= 0.23 registers, and nothing else
EXPORTER = FP / "llama-mxfp4-exporter"  # with backward_hadamard_matrix, as the exporters write
QKV = FP / "llama-mxfp4-qkv-scales"  # layer 0's q/k/v and gate/up global scales differ
NVFP4 = FP / "llama-nvfp4-no-backward"  # NVFP4, Hadamard group 16
ENGINE = "vllm==0.33.0"
L0 = "model.layers.0"


def report(folder: Path, engine: str = ENGINE, tp: int = 1, allow: bool = True):
    return check(read_checkpoint(folder), CheckOptions(
        engine=engine, deployment=Deployment(tp=tp, allow_deprecated_quantization=allow)))


def codes(folder: Path, engine: str = ENGINE, tp: int = 1, allow: bool = True) -> list[str]:
    return sorted({f.code for f in report(folder, engine, tp, allow).findings})


def golden(name: str, tp: int, version: str = "0.33.0") -> dict:
    g = json.loads((GOLDEN / f"{name}@vllm-{version}-tp{tp}.json").read_text())
    assert g["vllm_version"] == version and g["tp"] == tp
    return g


@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("folder", [CLEAN, NVFP4], ids=lambda f: f.name)
def test_clean_fixture_exits_0_with_the_flag_as_real_vllm_loaded_it(folder, tp, run_cli):
    g = golden(folder.name, tp)
    assert [r["load"] for r in g["ranks"]] == ["ok"] * tp
    result = run_cli("check", str(folder), "--engine", ENGINE, "--tp", str(tp),
                     "--allow-deprecated-quantization")
    assert result.returncode == 0, result.stdout


def test_without_the_flag_vllm_033_refuses_it_as_deprecated(run_cli):
    result = run_cli("check", str(CLEAN), "--engine", ENGINE)
    assert result.returncode == 1
    assert "QS106" in result.stdout and "fp_quant" in result.stdout


@pytest.mark.parametrize(("folder", "version"), [(QKV, "0.33.0"), (QKV, "0.32.0"),
                                                 (NVFP4, "0.33.0")])
def test_plan_holds_what_real_vllm_loaded(folder, version):
    """Every FP-Quant parameter real vLLM built is in the plan, fed by the shards it took, and
    its one-element global scales hold the value real vLLM kept."""
    ckpt = read_checkpoint(folder)
    engine = f"vllm=={version}"
    plan = plan_load(ckpt, engine, resolve_quantization(ckpt, engine))
    (rank,) = golden(folder.name, 1, version)["ranks"]
    seen = 0
    for name, got in rank["params"].items():
        if got is None:  # backward_hadamard_matrix: vLLM 0.33 registers none
            assert name not in plan.params
            continue
        p = plan.param(name)
        if "value" in got:
            if len(p.sources) == 1:  # o_proj, down_proj: loaded as stored
                stored = ckpt.value(p.sources[0].source)
                assert stored is not None and float(stored[0]) == got["value"], name
                seen += 1
                continue
            assert p.slots is not None and p.slots[0] == pytest.approx(got["value"]), name
            if len(p.sources) > 1:  # the shard loaded last is the one kept
                assert p.kept_from is not None
                kept = p.kept_from.rpartition(".")[0].rpartition(".")[2]
                assert kept in got["equals_stored"], name
            seen += 1
        elif "equals_stored" in got:  # the Hadamard matrix: the last shard's, too
            assert p.kept_from is None or \
                p.kept_from.rpartition(".")[0].rpartition(".")[2] in got["equals_stored"]
        else:
            assert got["equal_to_stored_slice"] is True
        assert len(p.sources) == (3 if "qkv" in name else 2 if "gate_up" in name else 1)
    assert seen == 2 * 4 * 2  # two global scales, four layers per decoder layer, two layers


def test_differing_qkv_global_scales_keep_v_projs_and_are_qs403():
    # real vLLM 0.33.0 kept v_proj's 1.5 and up_proj's 4.0 (weight) / 6.0 (act) in layer 0
    (rank,) = golden("llama-mxfp4-qkv-scales", 1)["ranks"]
    assert rank["params"][f"{L0}.self_attn.qkv_proj.weight_global_scale"]["value"] == 1.5
    assert rank["params"][f"{L0}.mlp.gate_up_proj.act_global_scale"]["value"] == 6.0
    found = [f for f in report(QKV).findings if f.code == "QS403"]
    by_param = {f.location.param: f for f in found}
    assert set(by_param) == {f"{L0}.{m}.{s}" for m in ("self_attn.qkv_proj", "mlp.gate_up_proj")
                             for s in ("weight_global_scale", "act_global_scale")}
    qkv = by_param[f"{L0}.self_attn.qkv_proj.weight_global_scale"]
    # q's own 3.0 and k's 2.0 replaced by v's 1.5: output 1/(w a) grows by 2 and 4/3
    assert "partition(s) 0 dequantized ×2 " in qkv.message
    assert "partition(s) 1 dequantized ×1.333" in qkv.message
    assert f"`{L0}.self_attn.v_proj.weight_global_scale`" in qkv.message
    assert all(f.severity == Severity.ERROR for f in found)


def test_nvfp4_act_global_scale_differing_is_not_an_error(tmp_path):
    # NVFP4 quantizes the one input with act_global_scale and divides by it again
    built = from_files(NVFP4)
    for leaf in ("weight_global_scale", "act_global_scale"):
        built.set_value(f"{L0}.self_attn.k_proj.{leaf}", 8.0)
    got = [f for f in report(built.write(tmp_path)).findings if f.code == "QS403"]
    assert {f.location.param.rpartition(".")[2] for f in got} == {"weight_global_scale"}


def test_one_removed_scales_is_an_error_naming_the_module(tmp_path):
    built = from_files(CLEAN).drop(rf"^{L0}\.self_attn\.k_proj\.scales$")
    found = report(built.write(tmp_path)).findings
    assert [f.code for f in found] == ["QS201"]
    assert f"`{L0}.self_attn.k_proj.scales` is missing" in found[0].message


def test_exporter_layout_fails_on_023_and_later_and_loads_before():
    # real vLLM 0.33.0: "There is no module or parameter named
    # 'layers.0.mlp.down_proj.backward_hadamard_matrix' in LlamaModel"
    for version in ("0.32.0", "0.33.0"):
        (rank,) = golden("llama-mxfp4-exporter", 1, version)["ranks"]
        assert rank["load"] == "error" and "backward_hadamard_matrix" in rank["message"]
    found = report(EXPORTER).findings
    assert {f.code for f in found} == {"QS203"}
    assert all(f.location.tensor.endswith(".backward_hadamard_matrix") for f in found)
    assert "registers no `backward_hadamard_matrix` (vllm==0.22.1 was the last" \
        in found[0].message
    assert codes(EXPORTER, "vllm==0.23.0") == ["QS203"]
    # 0.18.0-0.22.1 register it (and never read it): both layouts load
    assert codes(EXPORTER, "vllm==0.22.1") == [] == codes(CLEAN, "vllm==0.20.0")


def test_tp_that_cuts_the_hadamard_group_is_qs505():
    # real vLLM 0.33.0 at TP=4: o_proj's 16 input columns per rank, Hadamard group 32
    g = golden("llama-mxfp4-no-backward", 4)
    assert {r["load"] for r in g["ranks"]} == {"error"}
    said = "The input size is not aligned with the quantized weight shape"
    assert all(said in r["message"] for r in g["ranks"])
    found = report(CLEAN, tp=4).findings
    assert [f.code for f in found] == ["QS505"]
    assert "self_attn.o_proj" in found[0].message and said in found[0].message
    assert "TP that works: 1, 2" in found[0].message


def test_e8m0_nan_scale_and_zero_global_scale_are_qs303(tmp_path):
    built = from_files(CLEAN)
    s = built.tensors[f"{L0}.mlp.down_proj.scales"]
    s[3, 1] = 0xFF  # E8M0 NaN
    built.set_value(f"{L0}.self_attn.o_proj.act_global_scale", 0.0)
    found = [f for f in report(built.write(tmp_path)).findings if f.code == "QS303"]
    where = {f.location.tensor for f in found}
    assert where == {f"{L0}.mlp.down_proj.scales", f"{L0}.self_attn.o_proj.act_global_scale"}
    assert all(f.severity == Severity.ERROR for f in found)


def _cfg(folder: Path, **changes) -> Built:
    built = from_files(folder)
    for key, value in changes.items():
        if value is None:
            del built.config["quantization_config"][key]
        else:
            built.set_config(f"/quantization_config/{key}", value)
    return built


def test_unknown_forward_dtype_is_qs101(tmp_path):
    with pytest.raises(ConfigError, match=r"forward_dtype `mxfp8`.*\"Only mxfp4 and nvfp4"):
        codes(_cfg(CLEAN, forward_dtype="mxfp8").write(tmp_path))


def test_missing_required_key_is_qs101_per_release(tmp_path):
    folder = _cfg(CLEAN, forward_method=None).write(tmp_path)
    with pytest.raises(ConfigError, match=r"no `forward_method`.*Cannot find any of"):
        codes(folder)
    # FP-Quant's own qconfig once wrote no pseudoquantization: 0.18.0-0.22.1 require it
    folder = _cfg(CLEAN, pseudoquantization=None).write(tmp_path, name="nopseudo")
    assert codes(folder) == []
    with pytest.raises(ConfigError, match=r"vllm==0.22.1 FPQuantConfig.from_config"):
        codes(folder, "vllm==0.22.1")


def test_pseudoquantization_is_refused_up_to_0_22(tmp_path):
    folder = _cfg(EXPORTER, pseudoquantization=True).write(tmp_path)
    with pytest.raises(ConfigError, match="Pseudoquantization is not supported for vLLM"):
        codes(folder, "vllm==0.20.0")


def test_float16_model_is_refused(tmp_path):
    built = from_files(CLEAN).set_config("/torch_dtype", "float16")
    with pytest.raises(ConfigError, match=r"torch.float16 is not supported for quantization"
                       r" method fp_quant"):
        codes(built.write(tmp_path))


def test_modules_to_not_convert_and_head(tmp_path):
    quant = resolve_quantization(read_checkpoint(CLEAN), ENGINE)
    assert quant.modules["lm_head"].scheme is None
    assert "modules_to_not_convert" in quant.modules["lm_head"].resolution.reason
    scheme = quant.modules[f"{L0}.self_attn.q_proj"].scheme
    assert scheme is not None and scheme.label == "FP-Quant MXFP4 (Hadamard 32)"
    assert [t.param for t in scheme.tensors] == ["qweight", "scales", "weight_global_scale",
                                                 "act_global_scale", "forward_hadamard_matrix"]
    # a quantized head (not listed): vLLM builds ParallelLMHead BF16 (get_quant_method: None)
    built = from_files(CLEAN).set_config("/quantization_config/modules_to_not_convert", [])
    head = built.tensors.pop("lm_head.weight")
    built.add("lm_head.qweight", torch.zeros(head.shape[0], head.shape[1] // 2,
                                             dtype=torch.uint8))
    for name, t in list(built.tensors.items()):
        if name.startswith(f"{L0}.mlp.down_proj."):
            leaf = name.rpartition(".")[2]
            if leaf not in ("qweight", "scales"):
                built.add(f"lm_head.{leaf}", t.clone())
    built.add("lm_head.scales", torch.full((head.shape[0], head.shape[1] // 32), 127,
                                           dtype=torch.uint8))
    assert "QS206" in codes(built.write(tmp_path))


def test_sglang_refuses_it_and_unread_releases_are_partial(run_cli):
    # SGLang 0.5.12 / 0.5.23: fp_quant is not in QUANTIZATION_METHODS
    with pytest.raises(ConfigError, match="Unknown quantization method: fp_quant"):
        codes(CLEAN, "sglang==0.5.12")
    for engine in ("sglang==0.5.12", "vllm==0.34.0"):
        result = run_cli("check", str(CLEAN), "--engine", engine,
                         "--allow-deprecated-quantization")
        assert result.returncode == 2, (engine, result.stdout)


def test_facts_cite_the_catalogue():
    got = fp_quant.facts((0, 33, 0))
    assert got["required keys"].startswith("['hadamard_group_size', 'forward_dtype',")
    assert "vllm==0.33.0 vllm/model_executor/layers/quantization/fp_quant.py" in got["parameters"]
    assert "backward_hadamard_matrix" in fp_quant.facts((0, 22, 1))["parameters"]
    assert "backward_hadamard_matrix" not in got["parameters"].split(";")[0]


def test_a_release_without_the_facts_is_qs102(monkeypatch):
    monkeypatch.setattr(fp_quant, "release", lambda version: None)
    cfg = fp_quant.parse(json.loads((CLEAN / "config.json").read_text())["quantization_config"])
    assert isinstance(cfg.refusal(None), UnknownFormat)


def test_an_entry_naming_one_shard_of_a_fused_layer_is_qs204(tmp_path):
    # vLLM tests `prefix.endswith(entry)` on its own layer names: `q_proj` is part of
    # `qkv_proj`, which it builds FP-Quant, while the checkpoint stores q_proj in BF16
    q = f"{L0}.self_attn.q_proj"
    built = from_files(CLEAN).drop(rf"^{q}\.").add(f"{q}.weight",
                                                   torch.zeros(64, 64, dtype=torch.bfloat16))
    built.set_config("/quantization_config/modules_to_not_convert", ["lm_head", q, "nowhere"])
    found = [f for f in report(built.write(tmp_path)).findings if f.code == "QS204"]
    assert [f.severity for f in found] == [Severity.ERROR, Severity.WARNING]
    assert f"`{L0}.self_attn.qkv_proj`, which does not end with it" in found[0].message
    assert "`nowhere` matches no module" in found[1].message


def test_the_value_kept_is_the_shard_vllm_loads_last_across_files(tmp_path):
    # files in natural order (model-2 before model-10), names sorted within a file: with
    # v_proj in the first file and q_proj in the last, q_proj's scale is the one kept
    from safetensors.torch import save_file

    built = from_files(QKV)
    out = tmp_path / "sharded"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(built.config))
    v = f"{L0}.self_attn.v_proj."
    q = f"{L0}.self_attn.q_proj."
    files = {"model-2.safetensors": {}, "model-10.safetensors": {}}
    for name, t in built.tensors.items():
        files["model-10.safetensors" if name.startswith(q) else "model-2.safetensors"][name] = t
    weight_map = {}
    for fname, part in files.items():
        save_file({n: t.contiguous() for n, t in part.items()}, str(out / fname))
        weight_map.update(dict.fromkeys(part, fname))
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    ckpt = read_checkpoint(out)
    p = plan_load(ckpt, ENGINE).param(f"{L0}.self_attn.qkv_proj.weight_global_scale")
    assert p.kept_from == f"{q}weight_global_scale" and p.slots == (3.0,)
    assert v + "weight_global_scale" in {s.source for s in p.sources}


def test_plan_command_names_the_shard_kept(run_cli):
    result = run_cli("plan", str(QKV), "--engine", ENGINE, "-p",
                     f"{L0}.self_attn.qkv_proj.weight_global_scale")
    assert result.returncode == 0
    assert f"kept {L0}.self_attn.v_proj.weight_global_scale" in result.stdout
    data = json.loads(run_cli("plan", str(QKV), "--engine", ENGINE, "-f", "json").stdout)
    qkv = next(p for p in data["params"] if p["name"] == f"{L0}.self_attn.qkv_proj")
    assert qkv["kept_from"]["weight_global_scale"] == f"{L0}.self_attn.v_proj.weight_global_scale"
    assert qkv["slots"]["weight_global_scale"] == [1.5]


def test_fix_drops_backward_hadamard_matrix_for_023_and_later(tmp_path):
    # real vLLM 0.33.0 loaded the output (oracle/README.md); vLLM 0.22.1 does not need it
    from safetensors.torch import load_file

    from qscale.fix import Status, fix

    out = tmp_path / "out"
    result = fix(EXPORTER, out, engine=ENGINE,
                 deployment=Deployment(allow_deprecated_quantization=True))
    assert result.status == Status.FIXED
    assert [c.fixer for c in result.plan.applied] == ["drop-unregistered"]
    got, src = load_file(out / "model.safetensors"), load_file(EXPORTER / "model.safetensors")
    assert set(src) - set(got) == {n for n in src if n.endswith(".backward_hadamard_matrix")}
    assert len(set(src) - set(got)) == 14
    assert all(torch.equal(got[n], src[n]) for n in got)
    assert codes(out) == [] == codes(out, "vllm==0.22.1")


def test_a_0d_global_scale_loads_alone_and_is_refused_in_a_fused_layer(tmp_path):
    # ColumnParallel / RowParallel weight_loader reshape a 0-d tensor to [1]; the merged
    # (QKV, MergedColumn) ones assert the shapes are equal (real vLLM 0.33.0 on these two
    # variants of the clean fixture: loads; AssertionError)
    built = from_files(CLEAN)
    o = f"{L0}.self_attn.o_proj.weight_global_scale"
    built.tensors[o] = built.tensors[o].reshape(())
    assert codes(built.write(tmp_path)) == []
    q = f"{L0}.self_attn.q_proj.act_global_scale"
    built.tensors[q] = built.tensors[q].reshape(())
    found = report(built.write(tmp_path, name="fused")).findings
    assert [f.code for f in found] == ["QS402"]
    assert f"`{q}` is 0-d" in found[0].message


@pytest.mark.parametrize("folder", [CLEAN, NVFP4], ids=lambda f: f.name)
def test_every_ranks_shapes_at_tp2_are_what_the_scheme_gives(folder):
    """Per TP rank, each FP-Quant parameter's shape real vLLM 0.33.0 built, against the
    scheme's shape rules at the rank's slice (column layers split the output, row layers the
    input; the global scales and the Hadamard matrix are whole on every rank)."""
    ckpt = read_checkpoint(folder)
    quant = resolve_quantization(ckpt, ENGINE)
    plan = plan_load(ckpt, ENGINE, quant)
    for rank in golden(folder.name, 2)["ranks"]:
        for name, got in rank["params"].items():
            if got is None:
                continue
            p = plan.param(name)
            layer, _, leaf = name.rpartition(".")
            row = layer.endswith(("o_proj", "down_proj"))  # RowParallelLinear in Llama
            rows, shape = 0, None
            for src in p.sources:
                mq = quant.modules[src.source.rpartition(".")[0]]
                assert mq.scheme is not None and mq.logical_shape is not None
                o, i = mq.logical_shape
                o, i = (o, i // 2) if row else (o // 2, i)
                spec = mq.scheme.spec(leaf)
                assert spec is not None
                (shape,) = spec.accepted(o, i) if leaf in ("qweight", "scales") else \
                    (spec.accepted(o, i)[-1],)
                rows += shape[0]
            assert shape is not None
            want = [rows, shape[1]] if leaf in ("qweight", "scales") else list(shape)
            assert got["shape"] == want, (name, got["shape"], want)
