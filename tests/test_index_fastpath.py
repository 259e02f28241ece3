"""The shard index read without ``json.loads`` agrees with the ``json.loads`` path.

Two levels:

* the text functions of ``qscale.safetensors_scan`` (``scan_index``, ``index_lists_runs``)
  on random indexes (1,400 by default, 4,200 under ``QSCALE_FUZZ=full``; fixed seeds),
  written by ``json.dumps`` with every layout option and then broken at random: whenever
  they accept an index as listing some names with their files, it is exactly what
  ``json.loads`` gives (order, duplicates, file of each name);
* ``read_checkpoint`` of real sharded checkpoints whose index is rewritten (reordered, sorted,
  pretty or compact, escaped, duplicate or missing or moved names, stray or missing files,
  broken headers): the same checkpoint, or the same error code and message, as the
  ``json.loads`` path (``_list_files`` then the files), which is the reading before the
  fast path existed.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from budget import cases
from builders import qwen3_5_moe

from qscale import checkpoint, read_checkpoint
from qscale.checkpoint import Checkpoint
from qscale.errors import QscaleError
from qscale.safetensors_scan import index_lists_runs, scan_index

INDEX = "model.safetensors.index.json"
Pairs = list[tuple[str, str]]

# --------------------------------------------------------------------------- text level

PLAIN = "abcdefghijklmnopqrstuvwxyz0123456789._-"
#: characters that a name may hold and that test the scanner: JSON syntax, whitespace,
#: non-ASCII, characters json.dumps escapes, and the key it looks for
ODD = ["}", "{", ":", ",", " ", "[", "é", "日", "\u2028", '"', "\\", "\n", "\x7f", "/"]
ODD.append("weight_map")


def _name(rng: random.Random, odd: float) -> str:
    parts = [rng.choice(PLAIN) for _ in range(rng.randint(1, 12))]
    if rng.random() < odd:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(ODD))
    return "".join(parts)


def _weight_map(rng: random.Random, odd: float) -> Pairs:
    files = [f"model-{i:05d}-of-00004.safetensors" for i in range(1, rng.randint(2, 5))]
    if rng.random() < odd:
        files[0] = rng.choice(["mödel.safetensors", "a b.safetensors", 'q".safetensors'])
    names = list(dict.fromkeys(_name(rng, odd) for _ in range(rng.randint(1, 12))))
    return [(n, files[min(i * len(files) // len(names), len(files) - 1)]) for i, n in
            enumerate(names)]


def _dump(rng: random.Random, pairs: Pairs, decoy: bool = False) -> bytes:
    """``json.dumps`` with random options; ``decoy`` adds a ``weight_map`` inside the
    metadata (before the real one, the scanner meets it first and refuses the index)."""
    wm = dict(pairs)
    meta: dict[str, Any] = {"total_size": rng.randint(0, 10**12)}
    if decoy:
        meta["weight_map"] = {"decoy": "model-00001-of-00004.safetensors"}
    if rng.random() < 0.2:
        meta["note"] = "weight_map"
    doc = {"metadata": meta, "weight_map": wm}
    if rng.random() < 0.3:
        doc = {"weight_map": wm, "metadata": meta}
    if rng.random() < 0.1:
        doc["extra"] = [1, 2, {"x": None}]
    text = json.dumps(
        doc,
        indent=rng.choice([None, None, 0, 1, 2, "\t"]),
        separators=rng.choice([None, (",", ":"), (", ", ": "), (",", ": ")]),
        sort_keys=rng.random() < 0.3,
        ensure_ascii=rng.random() < 0.5,
    )
    return text.encode()


def _entry_text(raw: bytes, pairs: Pairs, rng: random.Random) -> bytes:
    """A textual mutation that keeps the bytes plausible: a duplicate, dropped, swapped or
    moved entry, or a byte inserted, deleted or replaced, a BOM, CRLF line ends, garbage."""
    kind = rng.randrange(10)
    name, file = rng.choice(pairs)
    ent = json.dumps(name, ensure_ascii=False).encode() + b": " + json.dumps(file).encode()
    other = rng.choice(pairs)[1].encode()
    at = raw.find(json.dumps(name, ensure_ascii=False).encode() + b":")
    if kind == 0 and at >= 0:  # a duplicate key: json.loads keeps the last one
        return raw[:at] + ent.replace(file.encode(), other) + b", " + raw[at:]
    if kind == 1 and at >= 0:  # the same name placed twice, the second after
        end = raw.rfind(b"}") if rng.random() < 0.5 else raw.find(b"}", at)
        return raw[:end] + b", " + ent.replace(file.encode(), other) + raw[end:]
    if kind == 2:
        return raw.replace(file.encode(), other, 1)
    if kind == 3:
        return b"\xef\xbb\xbf" + raw
    if kind == 4:
        return raw.replace(b"\n", b"\r\n")
    if kind == 5:
        return raw + rng.choice([b"x", b" ", b"}", b"\n"])
    pos = rng.randrange(len(raw))
    if kind == 6:
        return raw[:pos] + raw[pos + 1 :]
    if kind == 7:
        return raw[:pos]
    junk = rng.choice([b'"', b"{", b"}", b"[", b",", b":", b"\\", b" ", b"\n", b"\x00", b"\xff"])
    return raw[:pos] + junk + raw[pos + (kind == 8) :]


def _truth(raw: bytes) -> Pairs | None:
    """What the json.loads path reads: strict UTF-8 with universal newlines (``read_text``),
    then a ``weight_map`` that is an object of strings; None where it raises."""
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        obj = json.loads(text)
    except ValueError:
        return None
    wm = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(wm, dict) or not wm or not all(isinstance(v, str) for v in wm.values()):
        return None
    return list(wm.items())


def _runs(pairs: Pairs) -> list[tuple[str, list[str]]]:
    """Consecutive names of one file, as the files' headers give them."""
    runs: list[tuple[str, list[str]]] = []
    for name, file in pairs:
        if runs and runs[-1][0] == file:
            runs[-1][1].append(name)
        else:
            runs.append((file, [name]))
    return runs


def _fast(raw: bytes, pairs: Pairs) -> bool:
    """Whether the scanner accepts the index as listing ``pairs``, in this order."""
    layout = scan_index(raw)
    return layout is not None and index_lists_runs(raw, layout, _runs(pairs))


def _naive(raw: bytes) -> Pairs:
    """What a parser that trusts the text would read: every `"a": "b"` after `weight_map`,
    duplicates, escapes and all. An adversarial guess for the scanner to accept."""
    text = raw.decode("utf-8", "replace")
    at = text.find('"weight_map"')
    return re.findall(r'"([^"]*)"\s*:\s*"([^"]*)"', text[at + 12 :]) if at >= 0 else []


def _distinct(pairs: Pairs) -> Pairs:
    """``pairs`` if no name is in it twice, else nothing: ``index_lists_runs`` is given
    distinct names (a checkpoint's tensor names), and says nothing about repeated ones."""
    return pairs if len({n for n, _ in pairs}) == len(pairs) else []


# random cases per test; tests/budget.py: QSCALE_FUZZ=full runs the larger counts. The
# coverage floors below scale with the count (at full: 500 and 150 of 600, 100 of 3000).
UNBROKEN_CASES = cases(200, 600)
BROKEN_CASES = cases(1000, 3000)
CHECKPOINT_CASES = cases(50, 150)


@pytest.mark.parametrize("odd", [0.0, 0.3])
def test_unbroken_indexes_are_read_as_json_loads_reads_them(odd: float) -> None:
    rng = random.Random(20 + int(odd * 10))
    accepted = 0
    for _ in range(UNBROKEN_CASES):
        pairs = _weight_map(rng, odd)
        decoy = rng.random() < 0.1
        raw = _dump(rng, pairs, decoy)
        truth = _truth(raw)
        assert truth is not None and dict(truth) == dict(pairs)
        pairs = truth  # the order the index lists them in (sorted keys or not)
        ok = _fast(raw, pairs)
        accepted += ok
        if len(pairs) > 1:  # the same names in another order are refused
            assert not _fast(raw, pairs[::-1])
        plain = all(c in PLAIN + "/ é" for n, f in pairs for c in n + f)
        if decoy:
            continue
        if odd == 0.0 or (plain and b"\\" not in raw):  # plain json.dumps output: taken
            assert ok, raw[:300]
    assert accepted > (UNBROKEN_CASES * 5 // 6 if odd == 0.0 else UNBROKEN_CASES // 4)


def test_broken_indexes_are_never_read_otherwise_than_json_loads() -> None:
    rng = random.Random(7)
    outcomes = {"intended": 0, "naive": 0, "refused": 0, "invalid": 0}
    for _ in range(BROKEN_CASES):
        pairs = _weight_map(rng, 0.15)
        raw = _dump(rng, pairs, rng.random() < 0.05)
        for _ in range(rng.randint(1, 2)):
            raw = _entry_text(raw, pairs, rng)
        truth = _truth(raw)
        outcomes["invalid"] += truth is None
        # the map before the damage, and what the damaged text seems to say
        for what, guess in (("intended", pairs), ("naive", _distinct(_naive(raw)))):
            if guess and _fast(raw, guess):  # exactly these names, in order, nothing else
                assert truth == guess, (what, raw)
                outcomes[what] += 1
            else:
                outcomes["refused"] += 1
    # the mutations hit every side: accepted indexes, refused ones, and invalid JSON
    assert min(outcomes.values()) > BROKEN_CASES // 30, outcomes


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"weight_map": {"a": "f.safetensors", "a": "g.safetensors"}}', "duplicate"),
        ('{"weight_map": {"a": "f.safetensors"}, "weight_map": {"b": "f.safetensors"}}', "two"),
        ('{"metadata": {"weight_map": {"a": "f.safetensors"}}}', "nested only"),
        ('{"weight_map": {"a": "f.safetensors"}, "x": 01}', "rest invalid"),
        ('{"weight_map": {"a\\u0062": "f.safetensors"}}', "escape"),
        ('{"weight_map": {"a": "f.safetensors",}}', "trailing comma"),
        ('\ufeff{"weight_map": {"a": "f.safetensors"}}', "BOM"),
        ('{"weight_map": {"a\tb": "f.safetensors"}}', "control character"),
        ('{"weight_map": {"a": "f.safetensors" "b": "f.safetensors"}}', "no comma"),
        ('{"weight_map": {"a" "f.safetensors"}}', "no colon"),
        ('{"weight_map": {"a":: "f.safetensors"}}', "two colons"),
        ('{"weight_map": {"a": "f.safetensors",, "b": "f.safetensors"}}', "two commas"),
        ('{"weight_map": {"a": "f.safetensors", "b" "f.safetensors"}}', "second colon"),
        ('{"weight_map": {"a": "f.safetensors", "b": "f.safetensors"}}', "valid, two"),
    ],
)
def test_near_misses(text: str, why: str) -> None:
    raw = text.encode()
    truth = _truth(raw)
    for guess in ([("a", "f.safetensors")], [("a", "f.safetensors"), ("b", "f.safetensors")],
                  _distinct(_naive(raw)), [("a", "g.safetensors")]):
        if _fast(raw, guess):
            assert truth == guess, (why, guess)
    # each case is one change away from the valid one, and is refused
    assert (why == "valid, two") == _fast(raw, [("a", "f.safetensors"), ("b", "f.safetensors")])


# --------------------------------------------------------------------------- read_checkpoint

SHARDS = 3


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qwen3_5_moe("ct-fp8").write(tmp_path_factory.mktemp("pristine"), shards=SHARDS)


def _files_order(root: Path) -> Pairs:
    """Every tensor with its file, in the order of the files' headers."""
    pairs: Pairs = []
    for f in sorted(p.name for p in root.glob("*.safetensors")):
        raw = (root / f).read_bytes()
        header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
        pairs += [(n, f) for n in header if n != "__metadata__"]
    return pairs


def _json_path(root: Path) -> Checkpoint:
    """The reading without the fast index path."""
    files, index = checkpoint._list_files(root)
    return checkpoint._read_local(str(root), root, files, index, None)


def _outcome(read: Callable[[Path], Checkpoint], root: Path) -> Any:
    try:
        c = read(root)
    except QscaleError as exc:
        return type(exc).__name__, exc.code, exc.message
    values = {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in c.values.items()}
    return c.files, list(c.tensors.items()), values, c.index_file, dict(c.config.raw), c.unindexed


def _write_index(root: Path, doc: Any, rng: random.Random) -> None:
    text = json.dumps(
        doc,
        indent=rng.choice([None, 1, 2]),
        separators=rng.choice([None, (",", ":")]),
        sort_keys=rng.random() < 0.2,
    )
    (root / INDEX).write_bytes(text.encode())


def _mutations(root: Path, rng: random.Random) -> Iterator[str]:
    """Change the checkpoint in one or two ways; yield what was done."""
    files = yield from _rewrite_index(root, rng)
    yield from _break_more(root, rng, files)


def _rewrite_index(root: Path, rng: random.Random) -> Generator[str, None, list[str]]:
    """A new index: another order, maybe a name dropped, added or moved."""
    pairs = _files_order(root)
    files = sorted({f for _, f in pairs})
    kind = rng.randrange(12)
    if kind == 0:
        order = pairs  # as the files list them
    elif kind == 1:
        order = sorted(pairs)
    elif kind == 2:
        order = list(reversed(pairs))
    else:
        order = rng.sample(pairs, len(pairs))
    wm_pairs = list(order)
    if kind in (3, 4):  # a name dropped, or one the files lack
        wm_pairs.pop(rng.randrange(len(wm_pairs)))
    if kind == 4:
        wm_pairs.insert(rng.randrange(len(wm_pairs)), ("model.nothing.weight", files[0]))
    if kind == 5:  # a name moved to another file
        i = rng.randrange(len(wm_pairs))
        wm_pairs[i] = (wm_pairs[i][0], files[(files.index(wm_pairs[i][1]) + 1) % len(files)])
    doc: dict[str, Any] = {"metadata": {"total_size": 1}, "weight_map": dict(wm_pairs)}
    _write_index(root, doc, rng)
    yield f"order {kind}"
    return files


def _break_more(root: Path, rng: random.Random, files: list[str]) -> Iterator[str]:
    raw = (root / INDEX).read_bytes()
    extra = rng.randrange(11)
    if extra == 0:  # a duplicate key whose first file is otherwise unused (a stray file)
        shutil.copy(root / files[0], root / "model-extra.safetensors")
        name = json.loads(raw)["weight_map"].popitem()[0].encode()
        at = raw.find(name)
        raw = raw[:at] + name + b': "model-extra.safetensors", ' + raw[at:]
        (root / INDEX).write_bytes(raw)
        yield "duplicate key into a stray file"
    elif extra == 1:
        (root / files[-1]).unlink()
        yield "file missing"
    elif extra == 2:  # a broken header and maybe an index error too: which comes first
        p = root / files[rng.randrange(len(files))]
        p.write_bytes(p.read_bytes()[: rng.randrange(4, 400)])
        yield "truncated file"
    elif extra == 3:
        (root / INDEX).write_bytes(raw.replace(b'"model.', b'"\\u006dodel.', 1))
        yield "escape"
    elif extra == 4:
        (root / INDEX).write_bytes(raw.replace(b"\n", b"\r\n"))
        yield "CRLF"
    elif extra == 5:
        (root / INDEX).write_bytes(raw[: rng.randrange(len(raw))])
        yield "index cut"
    elif extra == 6:
        shutil.copy(root / files[0], root / "model-stray.safetensors")
        yield "stray file"
    elif extra == 7:  # a valid file without tensors: the index cannot list it
        (root / "model-empty.safetensors").write_bytes((8).to_bytes(8, "little") + b"{}      ")
        yield "file without tensors"
    elif extra == 8:
        (root / "model-dir.safetensors").mkdir()
        yield "folder named like a file"


def test_read_checkpoint_agrees_with_the_json_path(pristine: Path, tmp_path: Path) -> None:
    rng = random.Random(3)
    seen: dict[str, int] = {}
    for i in range(CHECKPOINT_CASES):
        root = tmp_path / f"case{i}"
        shutil.copytree(pristine, root)
        done = list(_mutations(root, rng))
        fast, slow = _outcome(read_checkpoint, root), _outcome(_json_path, root)
        assert fast == slow, done
        key = str(fast[1]) if len(fast) == 3 else "QS008" if fast[-1] else "ok"
        seen[key] = seen.get(key, 0) + 1
        shutil.rmtree(root)
    # the cases reach a clean read, every index error code, and a stray-file warning (QS008)
    assert {"ok", "QS001", "QS006", "QS007", "QS008"} <= seen.keys(), seen


@pytest.mark.parametrize("order", ["files", "sorted"])
def test_a_valid_index_is_read_without_json_loads(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    root = shutil.copytree(pristine, tmp_path / "c")
    pairs = _files_order(root)
    pairs = {"files": pairs, "sorted": sorted(pairs)}[order]
    (root / INDEX).write_text(json.dumps({"weight_map": dict(pairs)}, indent=2))
    expected = _outcome(_json_path, root)

    def no_json_path(*args: Any) -> Any:
        raise AssertionError("the json.loads path ran")

    monkeypatch.setattr(checkpoint, "_list_files", no_json_path)
    assert _outcome(read_checkpoint, root) == expected
    ckpt = read_checkpoint(root)
    assert list(ckpt.tensors) == [n for n, _ in _files_order(root)]
    assert all(isinstance(v, np.ndarray) for v in ckpt.values.values()) and ckpt.values


def test_names_json_cannot_spell_unescaped_fall_back(tmp_path: Path) -> None:
    """A tensor name with a lone surrogate or a control character (from escapes in a header)
    cannot match an index without escapes: refused without an exception, then read by the
    json.loads path like any other disagreement."""
    layout = scan_index(b'{"weight_map": {"a": "f.safetensors"}}')
    assert layout is not None
    for name in ("a\ud800", "a\x01", "a\n"):
        assert not index_lists_runs(b'{"weight_map": {"a": "f.safetensors"}}', layout,
                                    [("f.safetensors", [name])])
    root = tmp_path / "ckpt"
    root.mkdir()
    # (a lone surrogate is refused in the header itself, as the safetensors library does)
    header = b'{"a\\u0001":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    header += b" " * (-len(header) % 8)
    shard = "model-00001-of-00001.safetensors"
    (root / shard).write_bytes(len(header).to_bytes(8, "little") + header + b"\0\0\x80?")
    (root / INDEX).write_text(json.dumps({"weight_map": {"b": shard}}))
    (root / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    fast, slow = _outcome(read_checkpoint, root), _outcome(_json_path, root)
    assert fast == slow and fast[1] == "QS007", fast
