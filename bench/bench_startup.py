"""CLI start-up: the wall time of the commands that read no checkpoint (issue #14: ≤ 0.3 s).

Each command runs ``--repeat`` times in a fresh process (``.venv/bin/qscale`` by default, the
console script a user runs); the best run is its figure, as the other runs measure the load
of a shared machine, not qscale. ``check /nonexistent`` stops with exit 2 before it reads a
file: it times the imports of the check command. Exits 1 when a command's best run is above
``--limit`` seconds.

    .venv/bin/python bench/bench_startup.py [--repeat 10] [--limit 0.3] [--qscale PATH]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: the command line after `qscale`, and the exit code it must end with
COMMANDS: list[tuple[list[str], int]] = [
    (["--version"], 0),
    (["--help"], 0),
    (["rule", "QS204"], 0),
    (["rule", "--all"], 0),
    (["models", "--help"], 0),
    (["check", "--help"], 0),
    (["check", "/nonexistent"], 2),
]


def default_qscale() -> str:
    here = Path(sys.executable).parent / "qscale"
    return str(here) if here.exists() else (shutil.which("qscale") or "qscale")


def best_wall(argv: list[str], expect: int, repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``argv``, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, check=False)
        wall = time.perf_counter() - t0
        if p.returncode != expect:
            raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}, expected {expect}\n"
                             f"{p.stderr.decode(errors='replace')}")
        best = min(best, wall)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs per command (best is kept)")
    ap.add_argument("--limit", type=float, default=0.3, help="seconds a command may take")
    ap.add_argument("--qscale", default=default_qscale(), help="the qscale executable")
    args = ap.parse_args()
    python = best_wall([sys.executable, "-c", "pass"], 0, args.repeat)
    print(f"{'python -c pass':24} {python:6.3f} s  (the interpreter alone)")
    over = []
    for cmd, expect in COMMANDS:
        wall = best_wall([args.qscale, *cmd], expect, args.repeat)
        label = "qscale " + " ".join(cmd)
        print(f"{label:24} {wall:6.3f} s{'  OVER' if wall > args.limit else ''}")
        if wall > args.limit:
            over.append(label)
    print(f"best of {args.repeat}; limit {args.limit:.3f} s: "
          + (f"{len(over)} over ({', '.join(over)})" if over else "all within"))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
