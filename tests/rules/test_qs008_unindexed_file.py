import shutil

from builders import qwen3_5_moe

from qscale import CheckOptions, check, read_checkpoint
from qscale.findings import Severity

SHARD1 = "model-00001-of-00002.safetensors"


def _qs008(root):
    report = check(read_checkpoint(root), CheckOptions(select=["QS008"]))
    assert not report.crashed, report.crashed
    return list(report.findings)


def test_stray_file_is_a_warning_and_not_read(tmp_path):
    root = qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)
    shutil.copy(root / SHARD1, root / "model-old.safetensors")
    (root / "zz-broken.safetensors").write_bytes(b"garbage")  # never opened
    findings = _qs008(root)
    assert [(f.severity, f.location.file) for f in findings] == [
        (Severity.WARNING, "model-old.safetensors"),
        (Severity.WARNING, "zz-broken.safetensors"),
    ]
    assert "not listed in model.safetensors.index.json" in findings[0].message
    assert "model-old.safetensors" not in {h.file for h in read_checkpoint(root).files}


def test_near_miss_every_file_indexed(tmp_path):
    assert _qs008(qwen3_5_moe("ct-fp8").write(tmp_path, shards=2)) == []


def test_near_miss_single_file_without_index(tmp_path):
    """With no index every .safetensors file is read: none is stray."""
    assert _qs008(qwen3_5_moe("ct-fp8").write(tmp_path)) == []
