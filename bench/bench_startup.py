"""CLI start-up: the wall time of the commands that read no checkpoint (issue #14: ≤ 0.3 s).

Each command runs ``--repeat`` times in a fresh process (``.venv/bin/qscale`` by default, the
console script a user runs); the best run is its figure, as the other runs measure the load
of a shared machine, not qscale. The CPU column (user + system of the process, the least of
the runs) is the figure to compare across machines and loads. ``check /nonexistent`` stops
with exit 2 before it reads a file: it times the imports of the check command. Exits 1 when a
command's best wall time is above ``--limit`` seconds.

    .venv/bin/python bench/bench_startup.py [--repeat 10] [--limit 0.3] [--qscale PATH ...]
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


def best_of(argvs: list[list[str]], expect: int, repeat: int) -> list[tuple[float, float]]:
    """Per command line of ``argvs``, the fastest wall time of ``repeat`` runs and the least
    CPU time (user + system) of one, in seconds. The command lines take turns, so that each
    sees the same load; on a loaded machine the CPU time says more of qscale."""
    best = [(float("inf"), float("inf")) for _ in argvs]
    for _ in range(repeat):
        for i, argv in enumerate(argvs):
            c0, t0 = _cpu(), time.perf_counter()
            p = subprocess.run(argv, capture_output=True, check=False)
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            if p.returncode != expect:
                raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}, expected {expect}\n"
                                 f"{p.stderr.decode(errors='replace')}")
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="runs per command (best is kept)")
    ap.add_argument("--limit", type=float, default=0.3, help="seconds a command may take")
    ap.add_argument("--qscale", action="append", help="the qscale executable; give it again to"
                    " compare others (runs take turns; the limit applies to the first)")
    args = ap.parse_args()
    exes = args.qscale or [default_qscale()]
    heads = "".join(f" {'wall s':>7} {'cpu s':>7}" for _ in exes)
    print(f"{'command':28}{heads}" + ("  (" + " | ".join(exes) + ")" if len(exes) > 1 else ""))
    ((wall, cpu),) = best_of([[sys.executable, "-c", "pass"]], 0, args.repeat)
    print(f"{'python -c pass':28} {wall:7.3f} {cpu:7.3f}  (the interpreter alone)")
    over = []
    for cmd, expect in COMMANDS:
        got = best_of([[exe, *cmd] for exe in exes], expect, args.repeat)
        label = "qscale " + " ".join(cmd)
        cols = "".join(f" {w:7.3f} {c:7.3f}" for w, c in got)
        print(f"{label:28}{cols}{'  OVER' if got[0][0] > args.limit else ''}")
        if got[0][0] > args.limit:
            over.append(label)
    print(f"best of {args.repeat}; wall limit {args.limit:.3f} s: "
          + (f"{len(over)} over ({', '.join(over)})" if over else "all within"))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
