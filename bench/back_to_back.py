"""`qscale check` of two source trees on the same folders, in fresh interpreters taking turns.

    .venv/bin/python bench/back_to_back.py --base /tmp/qscale-base DIR [DIR ...] -n 5

``--base`` is another checkout (``git archive <commit> | tar -x -C DIR``); the other tree is
this script's own. Each run is bench_check's measured child (``qscale.cli.main`` as the
console script runs it, stdout to /dev/null), reporting its process CPU time (user + system,
start-up included).
Runs alternate between the trees, so load on a shared machine falls on both alike; it prints
the best of ``-n`` per tree and folder and their ratio. Build the folders with
``bench_check.build`` (e.g. the full ``qwen3.5-397b-fp8-text`` layout).
"""

from __future__ import annotations

import argparse
import compileall
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))
import bench_check  # noqa: E402

#: picks the tree to import, then runs bench_check's measured child (mode ``check``)
_PRELUDE = r"""
import sys
tree = sys.argv.pop(1)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in type(f).__name__.lower()]
sys.path.insert(0, tree)
import qscale
assert qscale.__file__.startswith(tree), (qscale.__file__, tree)
"""
_CHILD = _PRELUDE + bench_check._CHILD.format(bench=str(HERE))


def _cpu(tree: Path, folder: Path, engine: str) -> float:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tree), "check", str(folder), engine],
                       capture_output=True, text=True, check=True)
    return float(json.loads(r.stderr.strip().splitlines()[-1])["cpu"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--engine", default="vllm==0.33.0")
    ap.add_argument("--repeat", "-n", type=int, default=5)
    args = ap.parse_args()
    trees = {"base": args.base.resolve(), "this": ROOT}
    for tree in trees.values():  # as `pip install` does (see bench_check._compile_bytecode)
        if not compileall.compile_dir(tree / "qscale", quiet=1):
            raise SystemExit(f"could not compile {tree / 'qscale'}")
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
