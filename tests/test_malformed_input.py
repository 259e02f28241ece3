"""Malformed input: exit code 2, one ``error:`` line naming the file and the problem (and the
rule code), an optional ``hint:`` line, never a traceback.

Each test writes a valid checkpoint with the builder, then breaks one thing with plain file
operations, and runs the real CLI (``python -m qscale check``) as a subprocess.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from builders import Built, qwen3_5_moe
from safetensors.torch import load_file, save_file

ST = "model.safetensors"
SHARD1 = "model-00001-of-00002.safetensors"
SHARD2 = "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def base() -> Built:
    return qwen3_5_moe("ct-fp8")


@pytest.fixture
def ckpt(base: Built, tmp_path: Path) -> Path:
    """A valid single-file checkpoint folder."""
    return base.write(tmp_path)


@pytest.fixture
def sharded(base: Built, tmp_path: Path) -> Path:
    """A valid checkpoint in two shards with an index."""
    return base.write(tmp_path, shards=2)


def assert_input_error(proc: Any, *, names: str, problem: str, code: str | None) -> str:
    """Exit 2; stdout empty; stderr is ``error: ...`` and at most a ``hint: ...``."""
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 2, (proc.returncode, out, err)
    assert "Traceback" not in out + err
    assert out == ""
    lines = err.splitlines()
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("error: "), err
    assert sum(line.startswith("error:") for line in lines) == 1, err
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), err
    error = lines[0]
    assert "internal error" not in error, error
    assert names in error, (names, error)
    assert re.search(problem, error), (problem, error)
    if code == "":  # errors outside any rule carry no code
        assert not re.match(r"error: QS\d{3} ", error), error
    elif code is not None:
        assert error.startswith(f"error: {code} "), error
    return error


# --------------------------------------------------------------------------- byte helpers


def read_st(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_st(path: Path, header: Any, data: bytes) -> None:
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(len(h).to_bytes(8, "little") + h + data)


def by_offset(header: dict[str, Any]) -> list[str]:
    """Tensor names in data order."""
    return sorted(
        (k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"]
    )


def edit_header(path: Path, fn: Callable[[dict[str, Any], bytes], bytes | None]) -> None:
    header, data = read_st(path)
    new_data = fn(header, data)
    write_st(path, header, data if new_data is None else new_data)


# --------------------------------------------------------------------------- one file


def test_file_shorter_than_8_bytes(ckpt: Path, run_cli: Any) -> None:
    (ckpt / ST).write_bytes(b"\x10\x00\x00")
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem="3 bytes, too short", code="QS001"
    )


def test_short_file_passed_directly(ckpt: Path, run_cli: Any) -> None:
    (ckpt / ST).write_bytes(b"")
    assert_input_error(
        run_cli("check", str(ckpt / ST)), names=ST, problem="0 bytes, too short", code="QS001"
    )


def test_truncated_in_header(ckpt: Path, run_cli: Any) -> None:
    raw = (ckpt / ST).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    (ckpt / ST).write_bytes(raw[: 8 + n // 2])
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem=rf"header length {n} exceeds the file size .*truncated",
        code="QS001",
    )


def test_truncated_in_data(ckpt: Path, run_cli: Any) -> None:
    raw = (ckpt / ST).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    (ckpt / ST).write_bytes(raw[: 8 + n + (len(raw) - 8 - n) // 2])
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem=r"past the end of the file", code="QS002"
    )


def test_header_length_huge(ckpt: Path, run_cli: Any) -> None:
    raw = (ckpt / ST).read_bytes()
    (ckpt / ST).write_bytes((2**63).to_bytes(8, "little") + raw[8:])
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem="exceeds qscale's cap of 100000000 bytes",
        code="QS001",
    )


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (b'{"a": {"dtype": "F32", ', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b'["a", "b"]', "not a JSON object"),
        (b'"just a string"', "not a JSON object"),
        (b'{"__metadata__": [1, 2]}', "`__metadata__` is not an object"),
    ],
    ids=["truncated-json", "not-utf8", "array", "string", "metadata-not-object"],
)
def test_header_not_a_json_object(ckpt: Path, run_cli: Any, header: bytes, problem: str) -> None:
    _, data = read_st(ckpt / ST)
    write_st(ckpt / ST, header, data)
    assert_input_error(run_cli("check", str(ckpt)), names=ST, problem=problem, code="QS001")


def _first(header: dict[str, Any]) -> dict[str, Any]:
    return dict(header[by_offset(header)[0]])




@pytest.mark.parametrize(
    ("mutate", "problem", "code"),
    [
        (lambda e: e.pop("dtype"), "malformed header entry", "QS001"),
        (lambda e: e.pop("shape"), "malformed header entry", "QS001"),
        (lambda e: e.pop("data_offsets"), "malformed header entry", "QS001"),
        (lambda e: e.update(data_offsets=[0]), "malformed header entry", "QS001"),
        (lambda e: e.update(data_offsets=None), "malformed header entry", "QS001"),
        (lambda e: e.update(shape=7), "malformed header entry", "QS001"),
        (lambda e: e.update(shape=[2.5, 4]), "non-integer shape", "QS001"),
        (lambda e: e.update(shape=["128", "128"]), "non-integer shape", "QS001"),
        (lambda e: e.update(shape=[-1, 128]), "non-integer shape", "QS001"),
        (lambda e: e.update(shape=[True]), "non-integer shape", "QS001"),
        (lambda e: e.update(data_offsets=[0.0, 4.0]), "non-integer shape or offset", "QS001"),
        (lambda e: e.update(dtype=None), "unknown dtype None", "QS004"),
        (lambda e: e.update(dtype=["F32"]), "unknown dtype", "QS004"),
        (lambda e: e.clear() or e.update(x=1), "malformed header entry", "QS001"),
    ],
    ids=[
        "no-dtype", "no-shape", "no-offsets", "one-offset", "null-offsets", "shape-int",
        "float-shape", "string-shape", "negative-shape", "bool-shape", "float-offsets",
        "dtype-null", "dtype-list", "empty-entry",
    ],
)  # fmt: skip
def test_malformed_entry(
    ckpt: Path, run_cli: Any, mutate: Callable[[dict[str, Any]], Any], problem: str, code: str
) -> None:
    def fn(header: dict[str, Any], _data: bytes) -> None:
        mutate(header[by_offset(header)[0]])

    edit_header(ckpt / ST, fn)
    error = assert_input_error(run_cli("check", str(ckpt)), names=ST, problem=problem, code=None)
    assert error.startswith(f"error: {code}"), error


def test_entry_not_an_object(ckpt: Path, run_cli: Any) -> None:
    edit_header(ckpt / ST, lambda h, _d: h.update({by_offset(h)[0]: "F32"}))
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem="malformed header entry", code="QS001"
    )


def test_unknown_dtype(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], _data: bytes) -> None:
        header[by_offset(header)[0]]["dtype"] = "F7_E3M3"

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem="unknown dtype 'F7_E3M3'", code="QS004"
    )


def test_byte_length_not_dtype_times_shape(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], _data: bytes) -> None:
        entry = header[by_offset(header)[0]]
        entry["shape"] = [*entry["shape"][:-1], entry["shape"][-1] * 2]

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem=r"holds \d+ bytes but .* needs \d+",
        code="QS003",
    )


def test_offset_gap(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], data: bytes) -> bytes:
        last = header[by_offset(header)[-1]]
        begin, end = last["data_offsets"]
        last["data_offsets"] = [begin + 8, end + 8]
        return data[:begin] + bytes(8) + data[begin:]

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem=r"8 unclaimed bytes before .*offset gap",
        code="QS002",
    )


def test_overlapping_tensors(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], data: bytes) -> bytes:
        last = header[by_offset(header)[-1]]
        begin, end = last["data_offsets"]
        last["data_offsets"] = [begin - 2, end - 2]
        return data[:-2]

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem="overlaps the tensor before it",
        code="QS002",
    )


def test_two_tensors_at_the_same_offsets(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], _data: bytes) -> None:
        order = by_offset(header)
        a, b = header[order[0]], header[order[1]]
        b.update(dtype=a["dtype"], shape=a["shape"], data_offsets=a["data_offsets"])

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem="overlaps|unclaimed", code="QS002"
    )


def test_tensor_past_end_of_file(ckpt: Path, run_cli: Any) -> None:
    def fn(header: dict[str, Any], _data: bytes) -> None:
        last = header[by_offset(header)[-1]]
        begin, end = last["data_offsets"]
        last["shape"] = [2, *last["shape"]]
        last["data_offsets"] = [begin, begin + 2 * (end - begin)]

    edit_header(ckpt / ST, fn)
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem=r"ends at byte \d+, past the end",
        code="QS002",
    )


def test_trailing_unclaimed_bytes(ckpt: Path, run_cli: Any) -> None:
    with open(ckpt / ST, "ab") as fh:
        fh.write(b"\0" * 24)
    assert_input_error(
        run_cli("check", str(ckpt)),
        names=ST,
        problem="24 bytes after the last tensor",
        code="QS002",
    )


def test_unreadable_file(ckpt: Path, run_cli: Any) -> None:
    (ckpt / ST).unlink()
    (ckpt / ST).mkdir()
    assert_input_error(
        run_cli("check", str(ckpt)), names=ST, problem="is a folder, not a regular file",
        code="QS001",
    )


# --------------------------------------------------------------------------- shards and index


def _index(root: Path) -> dict[str, Any]:
    return json.loads((root / INDEX).read_text())


def _write_index(root: Path, obj: dict[str, Any]) -> None:
    (root / INDEX).write_text(json.dumps(obj))


def test_tensor_in_two_files(sharded: Path, run_cli: Any) -> None:
    one, two = load_file(str(sharded / SHARD1)), load_file(str(sharded / SHARD2))
    name = sorted(two)[0]
    save_file({**one, name: two[name]}, str(sharded / SHARD1))
    error = assert_input_error(
        run_cli("check", str(sharded)), names=name, problem="is also in", code="QS005"
    )
    assert SHARD1 in error and SHARD2 in error


def test_index_names_missing_file(sharded: Path, run_cli: Any) -> None:
    (sharded / SHARD2).unlink()
    error = assert_input_error(
        run_cli("check", str(sharded)), names=INDEX, problem="not in the folder", code="QS006"
    )
    assert SHARD2 in error


@pytest.mark.parametrize(
    "weight_map", [None, [], {"a": 1}, {}], ids=["null", "list", "non-string", "empty"]
)
def test_index_weight_map_malformed(sharded: Path, run_cli: Any, weight_map: Any) -> None:
    _write_index(sharded, {"metadata": {}, "weight_map": weight_map})
    assert_input_error(
        run_cli("check", str(sharded)), names=INDEX, problem="weight_map", code="QS006"
    )


def test_index_not_json(sharded: Path, run_cli: Any) -> None:
    (sharded / INDEX).write_text("{")
    assert_input_error(
        run_cli("check", str(sharded)), names=INDEX, problem="not valid JSON", code="QS006"
    )


def test_index_names_tensor_its_file_lacks(sharded: Path, run_cli: Any) -> None:
    idx = _index(sharded)
    idx["weight_map"]["model.language_model.layers.9.mlp.gate.weight"] = SHARD1
    _write_index(sharded, idx)
    error = assert_input_error(
        run_cli("check", str(sharded)),
        names=SHARD1,
        problem=r"has no tensor `model\.language_model\.layers\.9\.mlp\.gate\.weight`",
        code="QS007",
    )
    assert INDEX in error


def test_index_places_tensor_in_wrong_file(sharded: Path, run_cli: Any) -> None:
    idx = _index(sharded)
    name = next(n for n, f in idx["weight_map"].items() if f == SHARD1)
    idx["weight_map"][name] = SHARD2
    _write_index(sharded, idx)
    error = assert_input_error(
        run_cli("check", str(sharded)),
        names=INDEX,
        problem=f"places `{re.escape(name)}`",
        code="QS007",
    )
    assert SHARD1 in error


def test_tensor_not_in_index(sharded: Path, run_cli: Any) -> None:
    idx = _index(sharded)
    name = sorted(idx["weight_map"])[3]
    file = idx["weight_map"].pop(name)
    _write_index(sharded, idx)
    error = assert_input_error(
        run_cli("check", str(sharded)),
        names=file,
        problem=f"`{re.escape(name)}` is not in",
        code="QS007",
    )
    assert INDEX in error


def test_stray_file_not_in_index_is_a_warning(sharded: Path, run_cli: Any) -> None:
    """vLLM loads only the files the index lists (0.33 ``filter_duplicate_safetensors_files``):
    a stray file is a QS008 warning, the check goes on, and the file is not read."""
    (sharded / "model-extra.safetensors").write_bytes(b"not a safetensors file")
    proc = run_cli("check", str(sharded), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    stray = [f for f in report["findings"] if f["code"] == "QS008"]
    assert [(f["severity"], f["location"]) for f in stray] == [
        ("warning", {"file": "model-extra.safetensors"})
    ]
    assert report["complete"] is True


def test_no_stray_warning_for_indexed_files(sharded: Path, run_cli: Any) -> None:
    """Near miss: every file indexed, no QS008."""
    proc = run_cli("check", str(sharded), "--format", "json")
    assert not [f for f in json.loads(proc.stdout)["findings"] if f["code"] == "QS008"]


@pytest.mark.parametrize(
    "entry",
    ["../" + SHARD2, "sub/../" + SHARD2, "ABS", "sub/" + SHARD2, "..\\" + SHARD2],
    ids=["dotdot", "inner-dotdot", "absolute", "subfolder", "backslash"],
)
def test_index_entry_outside_folder(sharded: Path, run_cli: Any, entry: str) -> None:
    if entry == "ABS":
        entry = str((sharded / SHARD2).resolve())
    idx = _index(sharded)
    idx["weight_map"] = {n: (entry if f == SHARD2 else f) for n, f in idx["weight_map"].items()}
    _write_index(sharded, idx)
    error = assert_input_error(
        run_cli("check", str(sharded)),
        names=INDEX,
        problem="points outside the checkpoint",
        code="QS009",
    )
    assert entry in error


def test_symlink_outside_folder(base: Built, tmp_path: Path, run_cli: Any) -> None:
    root = base.write(tmp_path / "repo")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / ST).rename(outside / ST)
    (root / ST).symlink_to(outside / ST)
    assert_input_error(
        run_cli("check", str(root)), names=ST, problem="link points outside", code="QS009"
    )


def test_indexed_symlink_outside_folder(sharded: Path, tmp_path: Path, run_cli: Any) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (sharded / SHARD2).rename(outside / SHARD2)
    (sharded / SHARD2).symlink_to(os.path.relpath(outside / SHARD2, sharded))
    assert_input_error(
        run_cli("check", str(sharded)),
        names=SHARD2,
        problem="link points outside",
        code="QS009",
    )


def _hf_cache(base: Built, tmp_path: Path, shards: int, repo: str = "models--o--n") -> Path:
    """A Hugging Face cache layout: snapshot files are relative links into ``../../blobs``."""
    built = base.write(tmp_path / "src", shards=shards)
    blobs = tmp_path / "hub" / repo / "blobs"
    snap = tmp_path / "hub" / repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(built.iterdir())):
        blob = f"{i:040x}"
        shutil.move(str(f), blobs / blob)
        (snap / f.name).symlink_to(Path("..", "..", "blobs", blob))
    return snap


@pytest.mark.parametrize("shards", [1, 2])
def test_hf_cache_blob_links_are_accepted(
    base: Built, tmp_path: Path, run_cli: Any, shards: int
) -> None:
    snap = _hf_cache(base, tmp_path, shards)
    proc = run_cli("check", str(snap))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert "no findings" in proc.stdout


def test_hf_cache_link_into_another_repos_blobs(base: Built, tmp_path: Path, run_cli: Any) -> None:
    snap = _hf_cache(base, tmp_path, 1)
    other = tmp_path / "hub" / "models--x--y" / "blobs"
    other.mkdir(parents=True)
    target = (snap / ST).resolve()
    shutil.move(str(target), other / target.name)
    (snap / ST).unlink()
    (snap / ST).symlink_to(Path("..", "..", "..", "models--x--y", "blobs", target.name))
    assert_input_error(
        run_cli("check", str(snap)), names=ST, problem="link points outside", code="QS009"
    )


# --------------------------------------------------------------------------- paths and configs


def test_missing_path(tmp_path: Path, run_cli: Any) -> None:
    missing = tmp_path / "nope"
    assert_input_error(
        run_cli("check", str(missing)),
        names=str(missing),
        problem="no such file or folder",
        code="",
    )


def test_not_a_safetensors_file(ckpt: Path, run_cli: Any) -> None:
    assert_input_error(
        run_cli("check", str(ckpt / "config.json")),
        names="config.json",
        problem="not a .safetensors file",
        code="",
    )


def test_folder_without_safetensors(ckpt: Path, run_cli: Any) -> None:
    (ckpt / ST).rename(ckpt / "pytorch_model.bin")
    assert_input_error(
        run_cli("check", str(ckpt)), names=str(ckpt), problem="no .safetensors file", code=""
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"),
     ("\udcff", "not valid JSON")],
    ids=["syntax", "array", "not-utf8"],
)  # fmt: skip
def test_invalid_config_json(ckpt: Path, run_cli: Any, text: str, problem: str) -> None:
    (ckpt / "config.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    assert_input_error(
        run_cli("check", str(ckpt)), names="config.json", problem=problem, code="QS101"
    )


def test_quantization_config_not_an_object(base: Built, tmp_path: Path, run_cli: Any) -> None:
    built = copy.deepcopy(base)
    built.config["quantization_config"] = ["compressed-tensors"]
    root = built.write(tmp_path)
    assert_input_error(
        run_cli("check", str(root)),
        names="config.json",
        problem="`quantization_config` is not an object",
        code="QS101",
    )


MISSING = object()
ARCH = r"config\.json: /architectures"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("Qwen3_5MoeForConditionalGeneration",
         f'{ARCH} is a string \\("Qwen3_5MoeForConditionalGeneration"\\), expected a list'),
        (5, rf"{ARCH} is a number \(5\), expected a list"),
        ({"0": "X"}, f"{ARCH} is an object"),
        ([], f"{ARCH} is an empty list"),
        (None, f"{ARCH} is null"),
        (MISSING, f"{ARCH} is missing"),
        (["Qwen3_5MoeForConditionalGeneration", 7], rf"{ARCH}/1 is a number \(7\)"),
        ([""], f"{ARCH}/0 is an empty string"),
    ],
    ids=["string", "number", "object", "empty", "null", "missing", "non-string", "blank"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["check", "plan", "layouts"])
def test_malformed_architectures(
    base: Built, tmp_path: Path, run_cli: Any, value: Any, problem: str, command: str
) -> None:
    built = copy.deepcopy(base)
    if value is MISSING:
        del built.config["architectures"]
    else:
        built.config["architectures"] = value
    root = built.write(tmp_path)
    error = assert_input_error(
        run_cli(command, str(root)), names="config.json", problem=problem, code="QS103"
    )
    assert "has no qscale family" not in error  # not read as architecture 'Q' or None


def test_string_architectures_hint_writes_the_list(
    base: Built, tmp_path: Path, run_cli: Any
) -> None:
    built = copy.deepcopy(base)
    built.config["architectures"] = "Qwen3_5MoeForConditionalGeneration"
    r = run_cli("check", str(built.write(tmp_path)))
    hint = r.stderr.splitlines()[1]
    assert 'write it as a list: "architectures": ["Qwen3_5MoeForConditionalGeneration"];' in hint
    assert hint.endswith("`qscale rule QS103` explains it"), hint


def test_missing_architectures_names_the_engine_error(
    base: Built, tmp_path: Path, run_cli: Any
) -> None:
    """Unquantized too: vLLM refuses a config without architectures whatever the weights."""
    built = copy.deepcopy(base)
    del built.config["architectures"]
    del built.config["quantization_config"]
    r = run_cli("check", str(built.write(tmp_path)))
    assert r.returncode == 2, r.stdout
    assert "No model architectures are specified" in r.stderr.splitlines()[1]


G0 = "/quantization_config/config_groups/group_0"


@pytest.mark.parametrize(
    ("pointer", "value", "problem"),
    [
        (f"{G0}/weights/strategy", "group", "group needs a positive group_size"),
        (f"{G0}/weights/strategy", "blocky", "unknown strategy"),
        (f"{G0}/weights/block_structure", "128xfoo", "block_structure"),
        (f"{G0}/weights/num_bits", "eight", "num_bits"),
        (f"{G0}/weights/group_size", -4, "group_size"),
        (f"{G0}/weights/actorder", "group", "actorder"),
        (f"{G0}/weights/colour", "red", "unknown field"),
        (f"{G0}/input_activations/strategy", "token", "static token"),
        (f"{G0}/weights", [1], "expected an object"),
        (f"{G0}/targets", "Linear", "`targets` must be a list"),
        ("/quantization_config/config_groups", [], "`config_groups` must be an object"),
        ("/quantization_config/format", "fp3-quantized", "unknown format"),
        ("/quantization_config/ignore", "lm_head", "`ignore` must be a list"),
        ("/quantization_config/ignore", ["re:(unclosed"], "invalid regular expression"),
    ],
    ids=[
        "group-no-size", "bad-strategy", "bad-block", "bad-num-bits", "bad-group-size",
        "actorder-group", "extra-field", "static-token", "weights-list", "targets-string",
        "groups-list", "bad-format", "ignore-string", "bad-regex",
    ],
)  # fmt: skip
def test_compressed_tensors_config_rejected(
    base: Built, tmp_path: Path, run_cli: Any, pointer: str, value: Any, problem: str
) -> None:
    root = copy.deepcopy(base).set_config(pointer, value).write(tmp_path)
    assert_input_error(
        run_cli("check", str(root)), names="config.json", problem=problem, code="QS101"
    )


@pytest.mark.parametrize("method", ["awq-ish", 7, None])
def test_unknown_quant_method(base: Built, tmp_path: Path, run_cli: Any, method: Any) -> None:
    root = (
        copy.deepcopy(base).set_config("/quantization_config/quant_method", method).write(tmp_path)
    )
    if isinstance(method, str):
        assert_input_error(
            run_cli("check", str(root)),
            names="config.json",
            problem="quant_method 'awq-ish' is unknown to vLLM 0.33 and SGLang, not modelled",
            code="QS102",
        )
    else:
        assert_input_error(
            run_cli("check", str(root)),
            names="config.json",
            problem="no `quant_method`",
            code="QS101",
        )


def test_debug_shows_traceback(ckpt: Path, run_cli_subprocess: Any) -> None:
    (ckpt / ST).write_bytes(b"\x01")
    proc = run_cli_subprocess("--debug", "check", str(ckpt))  # the interpreter prints it
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "HeaderError" in proc.stderr and "too short" in proc.stderr


# --------------------------------------------------------------------------- every command
#
# The cases of issue #13, each run through all five commands that read a checkpoint, in
# process (``qscale.cli.main`` with real UTF-8 streams, as a terminal has), under a time
# limit: one ``error:`` line, a ``hint:``, exit 2, never a traceback or a hang.

COMMANDS = [["check"], ["inspect"], ["plan"], ["layouts"], ["fix", "--dry-run"]]


class _Hang(BaseException):
    pass


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(*args: str, limit: int = 30) -> Ran:
    """``qscale ARGS`` in this process; output through strict UTF-8 streams."""
    import io
    import signal
    import sys

    from qscale.cli import main

    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", write_through=True)
    saved = sys.argv, sys.stdout, sys.stderr

    def hang(*_: Any) -> None:
        raise _Hang(f"qscale {' '.join(args)} ran past {limit} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(limit)
    code: Any = 0
    try:
        sys.argv, sys.stdout, sys.stderr = ["qscale", *args], out, err
        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        sys.argv, sys.stdout, sys.stderr = saved
    return Ran(code if isinstance(code, int) else 2, out_b.getvalue().decode(),
               err_b.getvalue().decode())  # fmt: skip


def _edit_config(root: Path, fn: Callable[[dict[str, Any]], None]) -> None:
    cfg = json.loads((root / "config.json").read_text())
    fn(cfg)
    (root / "config.json").write_text(json.dumps(cfg))


def _first_small(header: dict[str, Any]) -> str:
    return next(k for k in by_offset(header) if header[k]["shape"] == [1])


def _big_shape(header: dict[str, Any], data: bytes) -> None:
    header[_first_small(header)]["shape"] = [1] * 10_000


def _shape_object(header: dict[str, Any], data: bytes) -> bytes:
    k = _first_small(header)
    header[k]["shape"] = {}
    return data


def _surrogate(root: Path) -> None:
    header, data = read_st(root / ST)
    k = _first_small(header)
    raw = json.dumps(header).encode().replace(k.encode(), k.encode() + b"\\ud800", 1)
    write_st(root / ST, raw, data)


def _raw_header(root: Path, fn: Callable[[bytes], bytes]) -> None:
    raw = (root / ST).read_bytes()
    n = int.from_bytes(raw[:8], "little")
    write_st(root / ST, fn(raw[8 : 8 + n]), raw[8 + n :])


def _link_loop(root: Path, name: str) -> None:
    (root / name).unlink(missing_ok=True)
    (root / name).symlink_to(name)


def _config_outside(root: Path) -> None:
    outside = root.parent / "elsewhere.json"
    (root / "config.json").rename(outside)
    (root / "config.json").symlink_to(outside)


CASES: dict[str, tuple[Callable[[Path], None], str, str, str | None]] = {
    # name: (break the checkpoint, file named, problem, code)
    "fifo-named-safetensors": (
        lambda r: os.mkfifo(r / "extra.safetensors"), "extra.safetensors", "is a FIFO", "QS001"),
    "fifo-config": (
        lambda r: ((r / "config.json").unlink(), os.mkfifo(r / "config.json")), "config.json",
        "is a FIFO", "QS101"),
    "num-experts-10**12": (
        lambda r: _edit_config(r, lambda c: c["text_config"].update(num_experts=10**12)),
        "config.json", r"num_experts is 1000000000000, outside 0 … 16777216", "QS101"),
    "deep-config": (
        lambda r: (r / "config.json").write_text("[" * 100_000 + "]" * 100_000), "config.json",
        "nested too deeply", "QS101"),
    "deep-header": (
        lambda r: _raw_header(r, lambda h: b'{"__metadata__":' + b"[" * 5000 + b"]" * 5000
                              + b"," + h[1:]), ST, "nested too deeply", "QS001"),
    "config-link-loop": (lambda r: _link_loop(r, "config.json"), "config.json", "link loop", None),
    "safetensors-link-loop": (
        lambda r: _link_loop(r, "x.safetensors"), "x.safetensors", "link loop", "QS001"),
    "10k-dim-shape": (
        lambda r: edit_header(r / ST, _big_shape), ST, "10000 dimensions", "QS001"),
    "lone-surrogate-name": (_surrogate, ST, "lone UTF-16 surrogate", "QS001"),
    "metadata-not-string": (
        lambda r: edit_header(r / ST, lambda h, d: h.update(__metadata__={"format": 1})), ST,
        "value of `format` is not a string", "QS001"),
    "metadata-twice": (
        lambda r: _raw_header(r, lambda h: b'{"__metadata__":{},"__metadata__":{},' + h[1:]), ST,
        "`__metadata__` twice", "QS001"),
    "bom": (lambda r: _raw_header(r, lambda h: b"\xef\xbb\xbf" + h), ST, "BOM", "QS001"),
    "shape-object": (
        lambda r: edit_header(r / ST, _shape_object), ST, "malformed header entry", "QS001"),
    "header-over-cap": (
        lambda r: (r / ST).write_bytes((200_000_000).to_bytes(8, "little") + (r / ST)
                                       .read_bytes()[8:]), ST,
        "exceeds qscale's cap of 100000000 bytes", "QS001"),
    "git-lfs-pointer": (
        lambda r: (r / ST).write_text("version https://git-lfs.github.com/spec/v1\n"
                                      "oid sha256:" + "0" * 64 + "\nsize 123456\n"), ST,
        "is a Git LFS pointer, not the file", "QS001"),
    "config-git-lfs-pointer": (
        lambda r: (r / "config.json").write_text("version https://git-lfs.github.com/spec/v1\n"
                                                 "oid sha256:" + "0" * 64 + "\nsize 1234\n"),
        "config.json", "is a Git LFS pointer, not the file", "QS101"),
    "no-config": (
        lambda r: (r / "config.json").unlink(), "config.json", "missing", "QS101"),
    "config-links-outside": (_config_outside, "config.json", "outside the checkpoint", "QS009"),
}  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_every_command(ckpt: Path, case: str, command: list[str]) -> None:
    breaks, names, problem, code = CASES[case]
    breaks(ckpt)
    ran = run_main(command[0], str(ckpt), *command[1:])
    assert_input_error(ran, names=names, problem=problem, code=code)


def test_lfs_hint_says_git_lfs_pull(ckpt: Path) -> None:
    CASES["git-lfs-pointer"][0](ckpt)
    assert "hint: run `git lfs pull`" in run_main("check", str(ckpt)).stderr


def test_permission_error_gets_a_permission_hint(
    ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Tests run as root, where chmod 000 reads anyway: the OS refusal is simulated.)"""
    real_open = os.open

    def refusing(path: Any, *args: Any, **kw: Any) -> int:
        if str(path).endswith(ST):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", refusing)
    ran = run_main("check", str(ckpt))
    assert_input_error(ran, names=ST, problem="Permission denied", code="QS001")
    assert "permissions" in ran.stderr and "not fully downloaded" not in ran.stderr


def test_damaged_file_keeps_the_download_hint(ckpt: Path) -> None:
    """Near miss of the permission hint: a truncated file still says fetch it again."""
    (ckpt / ST).write_bytes((ckpt / ST).read_bytes()[:100])
    assert "not fully downloaded" in run_main("check", str(ckpt)).stderr


def test_valid_checkpoint_every_command(ckpt: Path) -> None:
    """Near miss of every case above: the unbroken checkpoint reads in all five commands."""
    for command in COMMANDS:
        ran = run_main(command[0], str(ckpt), *command[1:])
        assert ran.returncode in (0, 1), (command, ran.stderr)
        assert "error:" not in ran.stderr, (command, ran.stderr)


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize(
    "args",
    [
        ["check", "-o", "{root}/" + ST],
        ["check", "-o", "{root}/config.json"],
        ["check", "--write-baseline", "{root}/config.json"],
        ["check", "--write-baseline", "{root}/" + ST],
        ["inspect", "-o", "{root}/config.json"],
        ["plan", "-o", "{root}/" + ST],
        ["layouts", "-o", "{root}/config.json"],
        ["check", "{root}/" + ST, "-o", "{root}/" + ST],
    ],
    ids=["check-o-model", "check-o-config", "baseline-config", "baseline-model", "inspect-o",
         "plan-o", "layouts-o", "single-file"],
)
def test_outputs_never_overwrite_inputs(ckpt: Path, args: list[str]) -> None:
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    argv = [a.format(root=ckpt) for a in args]
    if argv[1].startswith("-"):
        argv.insert(1, str(ckpt))
    ran = run_main(*argv)
    assert_input_error(ran, names=argv[-1], problem="refusing to overwrite it", code="")
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_output_through_a_link_to_an_input_is_refused(ckpt: Path, tmp_path: Path) -> None:
    link = tmp_path / "report.json"
    link.symlink_to(ckpt / "config.json")
    before = (ckpt / "config.json").read_bytes()
    ran = run_main("check", str(ckpt), "-o", str(link))
    assert_input_error(ran, names=str(link), problem="input of this run", code="")
    assert (ckpt / "config.json").read_bytes() == before


def test_output_next_to_the_inputs_is_written(ckpt: Path, tmp_path: Path) -> None:
    """Near miss: a new file, even inside the checkpoint folder, is no input."""
    ran = run_main("check", str(ckpt), "-f", "json", "-o", str(ckpt / "qscale-report.json"))
    assert ran.returncode in (0, 1), ran.stderr
    assert json.loads((ckpt / "qscale-report.json").read_text())["findings"] is not None
    ran = run_main("check", str(ckpt), "--write-baseline", str(tmp_path / "baseline.json"))
    assert ran.returncode == 0, ran.stderr


@pytest.mark.parametrize("option", ["-o", "--write-baseline"])
def test_unwritable_check_output(ckpt: Path, tmp_path: Path, option: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = run_main("check", str(ckpt), option, str(blocker / "report.json"))
    assert_input_error(ran, names=str(blocker / "report.json"), problem="cannot write", code=None)


def test_unwritable_fix_out(sharded: Path, tmp_path: Path) -> None:
    """(On vllm 0.19.1 this checkpoint has safe fixes to write: see test_fix_cli.)"""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ran = run_main("fix", str(sharded), "--out", str(blocker / "fixed"), "-e", "vllm==0.19.1")
    assert_input_error(ran, names=str(blocker / "fixed"), problem="cannot write", code="")
