"""The fuzzers of ``tests/fuzz``, a small seeded count per run (``QSCALE_FUZZ_CASES`` sets it;
``python -m tests.fuzz.headers 40000`` runs many by hand)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from builders import qwen3_5_moe
from fuzz import configs, headers

COUNT = int(os.environ.get("QSCALE_FUZZ_CASES", "300"))


def test_headers_accepted_exactly_as_the_safetensors_library_does(tmp_path: Path) -> None:
    path = str(tmp_path / "f.safetensors")
    disagree = [
        (i, lib, raw[:200])
        for i, raw in enumerate(headers.cases(COUNT, seed=1))
        if (lib := headers.library_accepts(raw, path)) != headers.qscale_accepts(raw)
    ]
    assert not disagree, disagree[:3]


def test_the_fuzzer_reaches_both_verdicts(tmp_path: Path) -> None:
    """Near miss: a fuzzer whose cases were all valid, or all broken, would prove nothing."""
    path = str(tmp_path / "f.safetensors")
    verdicts = {headers.library_accepts(raw, path) for raw in headers.cases(60, seed=1)}
    assert verdicts == {True, False}


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', True),
        (b'{"__metadata__":{"x":"y"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', True),
        (b'{"__metadata__":null,"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', True),
        (b'{"__metadata__":{"x":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', False),
        (b'{"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', False),
        (b'{"__metadata__":{},"__metadata__":{},"a":{"dtype":"F32","shape":[2],'
         b'"data_offsets":[0,8]}}', False),
        (b'{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', False),
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1,"x":2}}', True),
        (b'\xef\xbb\xbf{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', False),
        (b' {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', True),
        (b'{"a":{"dtype":"F32","shape":{},"data_offsets":[0,4]}}', False),
        (b'{"a":{"dtype":"F32","shape":[-0, 2],"data_offsets":[0,0]}}', False),
        (b'{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}', False),
        (b'{"a\\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', False),
        (b'{"a\\ud83d\\ude00":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', True),
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":NaN}}', False),
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + b"[" * 125
         + b"]" * 125 + b"}}", True),
        (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + b"[" * 126
         + b"]" * 126 + b"}}", False),
        (b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000 + b',"a":{"dtype":"F32","shape":[2],'
         b'"data_offsets":[0,8]}}', False),
    ],
    ids=[
        "valid", "metadata", "metadata-null", "metadata-int-value", "metadata-list",
        "metadata-twice", "dtype-twice", "extra-key-twice", "bom", "leading-space",
        "shape-object", "minus-zero", "above-u64", "lone-surrogate", "surrogate-pair", "nan",
        "depth-127", "depth-128", "deep-metadata",
    ],
)
def test_header_parity_cases(tmp_path: Path, header: bytes, accepted: bool) -> None:
    """Each class of header the two readers once disagreed on, with its near miss."""
    data = b"" if b"[-0, 2]" in header else b"\0" * 8
    raw = headers.join(header, data)
    assert headers.library_accepts(raw, str(tmp_path / "f.safetensors")) is accepted
    assert headers.qscale_accepts(raw) is accepted


def test_configs_read_or_refuse_never_crash(tmp_path: Path) -> None:
    """Fuzzed config.json: a QscaleError (one `error:` line) or a check with no rule crash,
    and the cases reach both outcomes (near miss: a fuzzer that only breaks proves little)."""
    root = qwen3_5_moe("ct-fp8").write(tmp_path)
    base = json.loads((root / "config.json").read_text())
    outcomes = [configs.run_case(root, c) for c in configs.cases(base, max(COUNT // 5, 20), 1)]
    failures = [o for o in outcomes if o not in ("checked", "refused")]
    assert not failures, failures[:3]
    assert {"checked", "refused"} <= set(outcomes)
