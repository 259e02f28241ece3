"""Build every replica of tests/replicas.py at full scale and run ``qscale check`` on it.

    /work/venv/bin/python bench/bench_replicas.py                 # all of them
    /work/venv/bin/python bench/bench_replicas.py deepseek-r1 kimi-k2.5 --engine vllm==0.33.0

For each published checkpoint: the build (sparse files, next to no disk), the read
(``read_checkpoint``) and the check (``check()``, every rule) times, the tensor and file
counts, the real disk the files take, and the findings by code and severity. A replica is
*clean* when no finding is an error and no rule was skipped for want of a load plan.
Results go to ``bench/out/replicas.json``; the exit code is 1 when a replica is not clean.
Folders are removed after each check unless ``--keep``. This is a benchmark, not a test
(tests/test_replicas.py checks the same replicas cut to a few layers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import replicas  # noqa: E402

from qscale import CheckOptions, QscaleError, Severity, check, read_checkpoint  # noqa: E402

OUT = HERE / "out"
DEFAULT_ENGINE = "vllm==0.33.0"


def run_one(name: str, root: Path, engine: str, keep: bool) -> dict[str, Any]:
    out = root / name
    if engine == DEFAULT_ENGINE:  # a replica 0.33 does not load: the newest release that does
        engine = replicas.REPLICAS[name].loads_on or engine
    t0 = time.perf_counter()
    replicas.build(name, out)
    t1 = time.perf_counter()
    files = list(out.glob("*.safetensors"))
    disk = sum(p.stat().st_blocks * 512 for p in files)
    logical = sum(p.stat().st_size for p in files)
    row: dict[str, Any] = {"name": name, "engine": engine, "build_s": round(t1 - t0, 2),
                           "files": len(files),
                           "logical_gb": round(logical / 1e9, 1), "disk_mb": round(disk / 1e6, 1)}
    try:
        ckpt = read_checkpoint(out)
        t2 = time.perf_counter()
        report = check(ckpt, CheckOptions(engine=engine))
        t3 = time.perf_counter()
    except QscaleError as exc:
        row.update(error=f"{exc.code}: {exc.message}", clean=False)
        return row
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
    counts = Counter(f"{f.code} {f.severity.label}" for f in report.findings)
    errors = [f"{f.code}: {f.message}" for f in report.findings if f.severity >= Severity.ERROR]
    row.update(
        tensors=len(ckpt.tensors), read_s=round(t2 - t1, 2), check_s=round(t3 - t2, 2),
        findings=dict(sorted(counts.items())), skipped=[c for c, _ in report.skipped],
        skipped_why=report.skipped[0][1] if report.skipped else None,
        crashed=[c for c, _ in report.crashed], first_errors=errors[:5],
        clean=not errors and not report.skipped and not report.crashed,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("names", nargs="*",
                    help=f"replicas (default: all): {', '.join(replicas.REPLICAS)}")
    ap.add_argument("--engine", default=DEFAULT_ENGINE)
    ap.add_argument("--dir", type=Path, default=OUT / "replicas")
    ap.add_argument("--keep", action="store_true", help="keep the built folders")
    ap.add_argument("--result", type=Path, default=OUT / "replicas.json")
    args = ap.parse_args(argv)
    names = args.names or list(replicas.REPLICAS)
    rows = []
    for name in names:
        row = run_one(name, args.dir, args.engine, args.keep)
        rows.append(row)
        what = row.get("error") or ", ".join(f"{k} ×{v}" for k, v in row["findings"].items())
        skipped = f"  skipped {len(row['skipped'])} rules: {row['skipped_why']}" if row.get(
            "skipped") else ""
        print(f"{'clean' if row['clean'] else 'NOT CLEAN':9s} {name:34s} "
              f"{row.get('tensors', '?'):>7} tensors {row['files']:>4} files "
              f"{row['logical_gb']:>6} GB ({row['disk_mb']} MB on disk)  build {row['build_s']} s"
              f"  read {row.get('read_s', '?')} s  check {row.get('check_s', '?')} s"
              f"  {what or 'no findings'}{skipped}", flush=True)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps({"engine": args.engine, "replicas": rows}, indent=2) + "\n")
    print(f"wrote {args.result}")
    return 0 if all(r["clean"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
