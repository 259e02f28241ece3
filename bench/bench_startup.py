"""CLI start-up: the wall time of the commands that read no checkpoint (issue #14: ≤ 0.3 s).

Each command runs ``--repeat`` times in a fresh process (``.venv/bin/qscale`` by default, the
console script a user runs); the best run is its figure, as the other runs measure the load
of a shared machine, not qscale. The CPU column (user + system of the process, the least of
the runs) is the figure to compare across machines and loads. ``check /nonexistent`` stops
with exit 2 before it reads a file: it times the imports of the check command. Exits 1 when a
command's best wall time is above ``--limit`` seconds.

    .venv/bin/python bench/bench_startup.py [--repeat 10] [--limit 0.3] [--qscale PATH]
"""

from __future__ import annotations

import argparse
import resource
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


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def best_of(argv: list[str], expect: int, repeat: int) -> tuple[float, float]:
    """The fastest wall time of ``repeat`` runs of ``argv``, and the least CPU time (user +
    system) of one, in seconds: on a loaded machine the CPU time says more of qscale."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        p = subprocess.run(argv, capture_output=True, check=False)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, _cpu() - c0)
        if p.returncode != expect:
            raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}, expected {expect}\n"
                             f"{p.stderr.decode(errors='replace')}")
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs per command (best is kept)")
    ap.add_argument("--limit", type=float, default=0.3, help="seconds a command may take")
    ap.add_argument("--qscale", default=default_qscale(), help="the qscale executable")
    args = ap.parse_args()
    print(f"{'command':28} {'wall s':>7} {'cpu s':>7}")
    wall, cpu = best_of([sys.executable, "-c", "pass"], 0, args.repeat)
    print(f"{'python -c pass':28} {wall:7.3f} {cpu:7.3f}  (the interpreter alone)")
    over = []
    for cmd, expect in COMMANDS:
        wall, cpu = best_of([args.qscale, *cmd], expect, args.repeat)
        label = "qscale " + " ".join(cmd)
        print(f"{label:28} {wall:7.3f} {cpu:7.3f}{'  OVER' if wall > args.limit else ''}")
        if wall > args.limit:
            over.append(label)
    print(f"best of {args.repeat}; wall limit {args.limit:.3f} s: "
          + (f"{len(over)} over ({', '.join(over)})" if over else "all within"))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
