"""Instructions each phase of `qscale check` executes, counted by valgrind (deterministic).

    .venv/bin/python bench/instructions.py /tmp/qscale-bench/deepseek-r1      # this tree
    .venv/bin/python bench/instructions.py DIR --base /tmp/qscale-base        # and another

CPU time on a shared VM moves by 30 % from one hour to the next, and a change worth 2 % is lost
in it; instruction counts do not move. For each tree this runs one fresh interpreter per
phase under ``valgrind --tool=callgrind`` (the child stops after phase N with ``os._exit``)
and prints each phase's count as the difference from the one before: start-up and the imports
a check makes, read (``read_checkpoint``: headers, index, deep scan), resolve
(``resolve_quantization``), plan (``plan_load``), rules (``run_rules``, which makes its own
plan: the rules alone are this row less the plan row) and render (console; within the
counts' noise of a few M). The GC is off in every child, as the console script keeps it
during a check. Counts are not time (a page fault or a cache miss costs no instruction):
quote CPU time from ``bench_check.py`` / ``back_to_back.py``, use this to see where a change
moved work. Each child runs ~50× slower than natively (a full 397B layout: ~1 min per phase).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHASES = ("imports", "read", "resolve", "plan", "rules", "render")

_CHILD = r"""
import gc, os, sys
gc.disable()
tree, folder, upto, engine = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in type(f).__name__.lower()]
sys.path.insert(0, tree)
import qscale
assert qscale.__file__.startswith(tree), (qscale.__file__, tree)
from qscale.engines import parse_engine
from qscale.engines.loader import plan_load
from qscale.formats import resolve_quantization
from qscale.report import render
from qscale.runner import CheckOptions, run_rules
from qscale.source import read_checkpoint
import qscale.report.console
spec = parse_engine(engine)
if upto >= 1:
    ckpt = read_checkpoint(folder)
if upto >= 2:
    quant = resolve_quantization(ckpt, spec)
if upto >= 3:
    plan = plan_load(ckpt, spec, quant)
if upto >= 4:
    report = run_rules(ckpt, quant, CheckOptions(engine=engine))
if upto >= 5:
    render(report, "console")
os._exit(0)
"""


def count(tree: Path, folder: Path, upto: int, engine: str) -> int:
    """Instructions of one child that stops after phase ``upto``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
        p = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             "-c", _CHILD, str(tree), str(folder), str(upto), engine],
            capture_output=True, text=True, env=env, check=False)
        for line in p.stderr.splitlines():
            if "Collected :" in line:
                return int(line.split()[-1])
    raise SystemExit(f"valgrind gave no count for {tree} phase {upto}:\n{p.stderr[-2000:]}")


def phases(tree: Path, folder: Path, engine: str) -> list[int]:
    totals = [count(tree, folder, n, engine) for n in range(len(PHASES))]
    return [t - (totals[i - 1] if i else 0) for i, t in enumerate(totals)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, help="another tree (git archive REV | tar -x -C DIR)")
    ap.add_argument("--engine", default="vllm==0.33.0")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    trees = [("this", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    for _, tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "qscale")],
                       check=True, stdout=subprocess.DEVNULL)
    for folder in args.folders:
        got = {label: phases(tree, folder.resolve(), args.engine) for label, tree in trees}
        print(f"{folder}:")
        for i, phase in enumerate(PHASES):
            row = "  ".join(f"{label} {got[label][i] / 1e6:9.1f} M" for label, _ in trees)
            ratio = ""
            if "base" in got and got["base"][i]:
                ratio = f"  this/base {got['this'][i] / got['base'][i]:.3f}"
            print(f"  {phase:8s} {row}{ratio}")
        row = "  ".join(f"{label} {sum(got[label]) / 1e6:9.1f} M" for label, _ in trees)
        ratio = f"  this/base {sum(got['this']) / sum(got['base']):.3f}" if "base" in got else ""
        print(f"  {'total':8s} {row}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
