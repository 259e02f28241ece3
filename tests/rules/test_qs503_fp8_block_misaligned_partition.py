from pathlib import Path

from builders import qwen3_5_moe

from qscale import CheckOptions, Severity, check, read_checkpoint
from qscale.layout import Deployment

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
CT_BLOCK = REAL / "llmc-qwen3_5_moe-FP8_BLOCK"  # compressed-tensors block 128x128
L0 = "language_model.model.layers.0"


def run(path, engine=None, **layout):
    report = check(
        read_checkpoint(path),
        CheckOptions(select=["QS503"], engine=engine, deployment=Deployment(**layout)),
    )
    assert not report.crashed, report.crashed
    return {f.location.param or f.location.tensor: f for f in report.findings}


def test_compressed_tensors_block_at_tp2_is_refused():
    found = run(CT_BLOCK, tp=2)
    qkvz = found[f"{L0}.linear_attn.in_proj_qkvz"]
    assert qkvz.severity == Severity.ERROR
    assert "per-rank partitions [64, 64, 128, 128] at TP=2" in qkvz.message
    assert ('"Weight output_partition_size = 64 is not divisible by weight quantization'
            ' block_n = 128."') in qkvz.message
    down = found[f"{L0}.mlp.shared_expert.down_proj"]
    assert "Weight input_size_per_partition = 64 is not divisible by weight quantization" \
           " block_k = 128." in down.message
    assert down.message.endswith("TP that works: 1")
    experts = found["model.language_model.layers.0.mlp.experts.0.down_proj.weight"]
    assert "The output_size of gate's and up's weight = 64" in experts.message


def test_near_miss_tp1_and_expert_parallel_keep_blocks_whole():
    assert run(CT_BLOCK) == {}
    # expert parallel keeps whole experts: only the dense layers are reported
    found = run(CT_BLOCK, tp=2, enable_expert_parallel=True)
    assert not any(".experts" in k for k in found)


def test_quant_method_fp8_merged_layers_are_exempt_but_row_layers_are_not(tmp_path):
    found = run(qwen3_5_moe("fp8-block").write(tmp_path), "vllm==0.20.0", tp=2)
    assert found[f"{L0}.linear_attn.in_proj_qkvz"].severity == Severity.WARNING
    assert "allow_fp8_block_shape_mismatch" in found[f"{L0}.linear_attn.in_proj_qkvz"].message
    assert found[f"{L0}.mlp.shared_expert.down_proj"].severity == Severity.ERROR


def test_sglang_has_no_merged_layer_exemption(tmp_path):
    found = run(qwen3_5_moe("fp8-block").write(tmp_path), "sglang==0.5.12", tp=2)
    assert found[f"{L0}.linear_attn.in_proj_qkvz"].severity == Severity.ERROR
