"""Benchmark `qscale fix`: the rewrite costs the bytes of the files that change, nothing more.

    /work/venv/bin/python bench/bench_fix.py                      # dense, scaled-down layout
    /work/venv/bin/python bench/bench_fix.py --layout sparse      # full-scale 397B, sparse

Both layouts come from the real Qwen3.5-397B-A17B-FP8 ``config.json`` through
``bench_read.build_tensors`` (block FP8, ``weight_scale_inv``), split into files in name
order:

- ``dense``: the config scaled down (``--layers``, ``--experts``, ``--vocab``; no vision
  tower, real hidden and expert sizes), every byte written;
- ``sparse``: full scale (60 layers, 512 experts, 94 files, ~400 GB logical) written as holes
  except the scales, like ``bench_read.py``.

The first ``max(--changed)`` files are stored twice: as exported, and with one
``weight_scale_inv`` stored under the compressed-tensors spelling ``weight_scale`` (QS209, a
safe rename). The checkpoint for K is a folder of hard links: the misnamed version of files
1..K, the others as exported. For each K, ``qscale fix`` is timed in its three phases: plan
(the check and the fixers), write (links, rewrites, configs, index, manifest, fsync, rename)
and the re-check of the output. Unchanged files are hard-linked, so the write phase should grow
with the bytes of the K rewritten files and stay flat otherwise (``write s/GB`` constant). On
the sparse layout only the data regions of a rewritten file are copied (holes stay holes), so
its bytes are the allocated ones. Built layouts are reused from
``bench/out/fix-*``; ``--rebuild`` starts over. Check ``df`` first: the dense layout takes
about ``(files + max(--changed)) × file size`` of disk and each run writes up to
``max(--changed)`` files more (deleted after timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_read import (  # noqa: E402
    DEFAULT_CONFIG,
    Tensor,
    _header,
    _nbytes,
    build_tensors,
    shard,
)

from qscale import CheckOptions, Severity, check, read_checkpoint  # noqa: E402
from qscale.fix.planner import plan_fix  # noqa: E402
from qscale.fix.writer import commit, finish, write_output  # noqa: E402

OUT = HERE / "out"
FILL = 0x38  #: every weight byte (FP8 1.0, a small BF16/F32): real data, cheap to produce


def scaled_config(config: dict[str, Any], layers: int, experts: int, vocab: int) -> dict[str, Any]:
    """The real config with fewer layers, experts and tokens, and no vision tower."""
    out = json.loads(json.dumps(config))
    tc = out["text_config"]
    tc["layer_types"] = tc["layer_types"][:layers]
    tc["num_hidden_layers"] = layers
    tc["num_experts"] = experts
    tc["num_experts_per_tok"] = min(tc["num_experts_per_tok"], experts)
    tc["vocab_size"] = vocab
    out.pop("vision_config", None)
    qc = out["quantization_config"]
    qc["modules_to_not_convert"] = [
        m
        for m in qc.get("modules_to_not_convert", [])
        if "visual" not in m and not _beyond(m, layers)
    ]
    return out


def _beyond(module: str, layers: int) -> bool:
    """A module of a decoder layer the scaled config no longer has."""
    _head, sep, rest = module.partition("model.language_model.layers.")
    return bool(sep) and int(rest.split(".", 1)[0]) >= layers


def _misnamed(tensors: list[Tensor]) -> tuple[list[Tensor], str]:
    """The file's tensors with its first ``weight_scale_inv`` spelt ``weight_scale``."""
    old = min(n for n, _d, _s in tensors if n.endswith(".weight_scale_inv"))
    new = old.removesuffix("_inv")
    return [(new if n == old else n, d, s) for n, d, s in tensors], new


def _write(path: Path, tensors: list[Tensor], dense: bool, rng: np.random.Generator) -> None:
    head, spans = _header(tensors)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, head)
        os.ftruncate(fd, len(head) + spans[-1][2])
        for name, begin, end in spans:
            if name.endswith((".weight_scale_inv", ".weight_scale")):
                vals = rng.uniform(1e-4, 2e-3, (end - begin) // 4).astype("<f4")
                os.pwrite(fd, vals.tobytes(), len(head) + begin)
            elif dense:
                chunk = np.full(min(end - begin, 16 << 20), FILL, np.uint8).tobytes()
                for pos in range(begin, end, len(chunk)):
                    os.pwrite(fd, chunk[: end - pos], len(head) + pos)
    finally:
        os.close(fd)


def build(
    root: Path, config: dict[str, Any], n_files: int, k_max: int, dense: bool
) -> dict[str, Any]:
    """Write the exported files and the misnamed copies of the first ``k_max`` files."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "files").mkdir(parents=True)
    shards = shard(build_tensors(config), n_files)
    rng = np.random.default_rng(0)
    n = len(shards)
    names = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    misnamed = {}
    for i, (fname, tensors) in enumerate(zip(names, shards, strict=True)):
        _write(root / "files" / fname, tensors, dense, rng)
        if i < k_max:
            renamed, new = _misnamed(tensors)
            _write(root / "files" / ("misnamed-" + fname), renamed, dense, rng)
            misnamed[fname] = (new + "_inv", new)
        print(f"  {fname}: {len(tensors)} tensors", flush=True)
    (root / "config.json").write_text(json.dumps(config, indent=2))
    weight_map = {t[0]: f for f, ts in zip(names, shards, strict=True) for t in ts}
    total = sum(_nbytes(d, s) for ts in shards for _n, d, s in ts)
    stamp = {"files": names, "misnamed": misnamed, "weight_map": weight_map, "total": total}
    (root / "layout.json").write_text(json.dumps(stamp))
    return stamp


def variant(root: Path, stamp: dict[str, Any], k: int) -> Path:
    """A checkpoint folder of hard links with files 1..K misnamed."""
    d = root / f"k{k}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    shutil.copyfile(root / "config.json", d / "config.json")
    weight_map = dict(stamp["weight_map"])
    for i, fname in enumerate(stamp["files"]):
        src = root / "files" / (("misnamed-" if i < k else "") + fname)
        os.link(src, d / fname)
        if i < k:
            old, new = stamp["misnamed"][fname]
            weight_map[new] = weight_map.pop(old)
    index = {"metadata": {"total_size": stamp["total"]}, "weight_map": weight_map}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    return d


def measure(ckpt: Path, k: int) -> dict[str, Any]:
    """Time the three phases of one fix: plan (the check and the fixers), write (links,
    rewrites, configs, index, manifest, fsync, rename), and the re-check of the output."""
    out = ckpt.with_name(ckpt.name + "-fixed")
    shutil.rmtree(out, ignore_errors=True)
    source = read_checkpoint(ckpt)
    t0 = time.perf_counter()
    plan = plan_fix(source)
    t1 = time.perf_counter()
    written = write_output(source, plan.applied, out, rebuild_index=plan.rebuild_index)
    finish(written, {"bench": True})
    commit(written, out, force=False)
    t2 = time.perf_counter()
    after = check(read_checkpoint(out), CheckOptions())
    t3 = time.perf_counter()
    assert len(plan.applied) == k and not plan.blocked, [c.title for c in plan.applied]
    assert not after.fails(Severity.ERROR), after.findings
    rewritten = [a for a in plan.files if a.action == "rewrite"]
    data = sum(os.stat(out / a.file).st_blocks * 512 for a in rewritten)
    shutil.rmtree(out)
    return {
        "k": k,
        "files_rewritten": len(rewritten),
        "bytes_rewritten": sum(a.bytes for a in rewritten),
        "bytes_allocated": data,
        "plan_s": t1 - t0,
        "write_s": t2 - t1,
        "recheck_s": t3 - t2,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", choices=("dense", "sparse"), default="dense")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--files", type=int, default=None, help="dense 8, sparse 94")
    ap.add_argument("--layers", type=int, default=4, help="dense layout only")
    ap.add_argument("--experts", type=int, default=8, help="dense layout only")
    ap.add_argument("--vocab", type=int, default=4096, help="dense layout only")
    ap.add_argument("--changed", default="0,1,2,4", help="values of K (files changed)")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    ks = sorted({int(k) for k in args.changed.split(",")})
    config = json.loads(args.config.read_text())
    dense = args.layout == "dense"
    if dense:
        config = scaled_config(config, args.layers, args.experts, args.vocab)
    n_files = args.files or (8 if dense else 94)
    root = OUT / f"fix-{args.layout}"
    stamp_path = root / "layout.json"
    want = {"files": n_files, "k_max": max(ks), "config": config}
    old = json.loads((root / "want.json").read_text()) if (root / "want.json").exists() else None
    if args.rebuild or old != want or not stamp_path.exists():
        print(f"building {args.layout} layout in {root} ...", flush=True)
        stamp = build(root, config, n_files, max(ks), dense)
        (root / "want.json").write_text(json.dumps(want))
    stamp = json.loads(stamp_path.read_text())
    print(f"{args.layout}: {len(stamp['files'])} files, {stamp['total'] / 1e9:.2f} GB logical")
    print(
        f"{'K':>3} {'files':>5} {'rewritten':>11} {'allocated':>11} {'plan':>7} {'write':>8}"
        f" {'re-check':>8} {'write s/GB':>10}"
    )
    rows = []
    for k in ks:
        r = measure(variant(root, stamp, k), k)
        rows.append(r)
        gb = r["bytes_allocated"] / 1e9
        per_gb = f"{r['write_s'] / gb:.2f}" if gb else "-"
        print(
            f"{k:>3} {r['files_rewritten']:>5} {r['bytes_rewritten'] / 1e6:>9.1f}MB"
            f" {r['bytes_allocated'] / 1e6:>9.1f}MB {r['plan_s']:>6.2f}s {r['write_s']:>7.3f}s"
            f" {r['recheck_s']:>7.2f}s {per_gb:>10}",
            flush=True,
        )
    (OUT / f"fix-{args.layout}-result.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
