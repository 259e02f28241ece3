import torch
from builders import bf16, ct_fp8, qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from rules.helpers import run

MTP = "mtp.layers.0.mlp.experts.0"


def with_mtp(scheme_fn, ignore_mtp=False):
    g = torch.Generator().manual_seed(1)
    built = qwen3_5_moe("ct-fp8")
    for proj, out, inp in (("gate_proj", 128, 128), ("up_proj", 128, 128),
                           ("down_proj", 128, 128)):
        for name, t in scheme_fn(f"{MTP}.{proj}", out, inp, g).items():
            built.add(name, t)
    if ignore_mtp:
        ig = built.config["quantization_config"]["ignore"]
        built.set_config("/quantization_config/ignore", [*ig, r"re:^mtp\..*"])
    return built


def test_bf16_mtp_layers_missing_from_the_ignore_list(tmp_path):
    findings = run(with_mtp(bf16), tmp_path, "QS207")
    assert len(findings) == 3 and all(f.severity.label == "warning" for f in findings)
    assert "MTP draft model would build it quantized" in findings[0].message
    # and not also reported as a main-model defect
    report = check(read_checkpoint(tmp_path / "ckpt"), CheckOptions(select=["QS202"]))
    assert report.findings == ()


def test_quantized_mtp_layers_that_the_config_ignores(tmp_path):
    findings = run(with_mtp(ct_fp8, ignore_mtp=True), tmp_path, "QS207")
    assert len(findings) == 3 and "would build it in BF16" in findings[0].message


def test_near_miss_bf16_mtp_layers_ignored(tmp_path):
    assert run(with_mtp(bf16, ignore_mtp=True), tmp_path, "QS207") == []


def test_near_miss_mtp_quantized_like_the_main_model(tmp_path):
    assert run(with_mtp(ct_fp8), tmp_path, "QS207") == []
