"""`qscale check` of two source trees on the same folders, in fresh interpreters taking turns.

    .venv/bin/python bench/back_to_back.py --base /tmp/qscale-base DIR [DIR ...] -n 5

``--base`` is another checkout (``git archive <commit> | tar -x -C DIR``); the other tree is
this script's own. Each run is ``qscale.cli.main`` as the console script runs it (``qscale._exit``
on, stdout to /dev/null) and reports its process CPU time (user + system, start-up included).
Runs alternate between the trees, so load on a shared machine falls on both alike; it prints
the best of ``-n`` per tree and folder and their ratio. Build the folders with
``bench_check.build`` (e.g. the full ``qwen3.5-397b-fp8-text`` layout).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import os, resource, sys
tree, d, engine = sys.argv[1:4]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in type(f).__name__.lower()]
sys.path.insert(0, tree)
import qscale
assert qscale.__file__.startswith(tree), (qscale.__file__, tree)
from qscale import _exit
from qscale.cli import main
_exit.ENABLED = True
sys.argv = ["qscale", "check", d, "--engine", engine]
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(ru.ru_utime + ru.ru_stime, file=sys.stderr)
sys.stderr.flush()
os._exit(0)
"""


def _cpu(tree: Path, folder: Path, engine: str) -> float:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(folder), engine],
                       capture_output=True, text=True, check=True)
    return float(r.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--engine", default="vllm==0.33.0")
    ap.add_argument("--repeat", "-n", type=int, default=5)
    args = ap.parse_args()
    trees = {"base": args.base.resolve(), "this": ROOT}
    out = {}
    for folder in args.folders:
        best = {k: float("inf") for k in trees}
        for _ in range(args.repeat):
            for k, tree in trees.items():
                best[k] = min(best[k], _cpu(tree, folder, args.engine))
        out[str(folder)] = best
        print(f"{folder}: base {best['base']:.3f} s, this {best['this']:.3f} s,"
              f" this/base {best['this'] / best['base']:.3f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
