"""`qscale check` end to end against the I/O floor, and how both scale, on full-scale layouts.

    .venv/bin/python bench/bench_check.py                    # every layout and variant
    .venv/bin/python bench/bench_check.py qwen3.5-397b-fp8-text -n 1 --variants base

For each layout (full-scale sparse replicas of published checkpoints, built by tests/replicas.py
under ``--dir``, /tmp by default) and each variant (``base``; ``ignores10``: the skip list with
ten entries for each of its entries; ``experts10``: ten times the routed experts, on a tenth of
the MoE layers), at 1/8, 1/4, 1/2 and all of the decoder layers:

- **floor**: in a fresh interpreter, read every safetensors header (8-byte length, header,
  ``json.loads``), parse ``model.safetensors.index.json``, and read every byte of every scale
  tensor (each tensor whose last name component contains ``scale``): the least any tool that
  checks every scale value must do (``bench/floor.py``, which imports the standard library
  only; until 2026-12-03 the child imported this module, and through ``tests/replicas.py``
  numpy, whose import and BLAS threads added 0.13-0.18 s to every floor);
- **check**: in a fresh interpreter, ``qscale check DIR --engine E`` through the CLI entry point
  (read, resolve, plan, every rule, console render to /dev/null).

Both are process CPU times (user + system, interpreter start-up included), best of ``-n`` runs;
peak RSS is the child's ``VmHWM``. It prints check/floor per point, fits ``time ∝ tensors^k``
(least squares on logs) per layout and variant, draws time against tensors as a PNG
(matplotlib, the ``bench`` extra), writes ``bench/out/check.json``, and exits with 1 when a
full layout's check/floor is above ``--max-ratio`` (1.5), a fitted exponent above
``--max-exponent`` (1.1), a peak RSS above 500 MB, or CLI start-up above 0.3 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
import replicas  # noqa: E402
from floor import floor  # noqa: E402,F401  (bench_check.floor, as before)

OUT = HERE / "out"
FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)
VARIANTS = ("base", "ignores10", "experts10")
SKIP_KEYS = ("modules_to_not_convert", "ignore", "exclude_modules", "ignored_layers")


def _text_only(lay: replicas.Layout) -> None:
    """The issue's layout: Qwen3.5-397B-FP8 without its vision tower and MTP block (115 entries
    of its ``modules_to_not_convert`` then name nothing)."""
    lay.tensors = [t for t in lay.tensors if not t[0].startswith(("model.visual.", "mtp."))]
    lay.files = replicas.named(replicas.hf_shards(lay.tensors))


#: name -> (replica, layout edit)
LAYOUTS: dict[str, tuple[str, Callable[[replicas.Layout], None] | None]] = {
    "qwen3.5-397b-fp8-text": ("qwen3.5-397b-a17b-fp8", _text_only),
    "qwen3.5-397b-nvfp4": ("nvidia-qwen3.5-397b-a17b-nvfp4", None),
    "deepseek-r1-fp8-mtp": ("deepseek-r1", None),
    "kimi-k2.5-int4": ("kimi-k2.5", None),
}


def _text(config: dict[str, Any]) -> dict[str, Any]:
    tc: dict[str, Any] = config.get("text_config", config)
    return tc


def _quant_configs(config: dict[str, Any], extra: dict[str, Any]) -> list[dict[str, Any]]:
    out = [config.get("quantization_config"), _text(config).get("quantization_config")]
    out += [e.get("quantization", e) for e in extra.values()]
    return [q for q in out if isinstance(q, dict)]


def _ten_fold(entries: list[str]) -> list[str]:
    """Each entry plus nine near-copies that name no module."""
    out = list(entries)
    for e in entries:
        out += [f"{e}_v{k}" for k in range(1, 10)]
    return out


def configs_for(replica: str, variant: str, fraction: float) -> tuple[dict, dict, int]:
    """(config, extra configs, layers) of one point."""
    config, extra = replicas.configs(replicas.REPLICAS[replica])
    tc = _text(config)
    n = tc["num_hidden_layers"]
    dense = int(tc.get("first_k_dense_replace", 0) or 0)
    if variant == "experts10":
        key = "n_routed_experts" if "n_routed_experts" in tc else "num_experts"
        layers = dense + max(1, round((n - dense) * fraction / 10))
    else:
        layers = max(dense + 1, round(n * fraction))
    if layers < n:
        config, extra = replicas.truncate(config, extra, layers)
        tc = _text(config)
    else:
        config, extra = copy.deepcopy(config), copy.deepcopy(extra)
        tc = _text(config)
    if variant == "experts10":
        tc[key] = tc[key] * 10
    if variant == "ignores10":
        for qc in _quant_configs(config, extra):
            for k in SKIP_KEYS:
                if isinstance(qc.get(k), list):
                    qc[k] = _ten_fold(qc[k])
    return config, extra, layers


def build(name: str, variant: str, fraction: float, out: Path) -> dict[str, Any]:
    replica, edit = LAYOUTS[name]
    config, extra, layers = configs_for(replica, variant, fraction)
    lay = replicas.REPLICAS[replica].make(config, extra)
    if edit is not None:
        edit(lay)
    files: dict[str, Any] = dict(extra)
    files["config.json"] = config
    stats = replicas.write_layout(lay, out, files)
    skip = sum(len(qc[k]) for qc in _quant_configs(config, extra) for k in SKIP_KEYS
               if isinstance(qc.get(k), list))
    return {"layers": layers, "tensors": stats["tensors"], "files": stats["files"],
            "skip_entries": skip}


# --------------------------------------------------------------------------- measured children

_CHILD = r"""
import json, os, resource, sys
mode, d, engine = sys.argv[1:4]
if mode == "floor":
    sys.path.insert(0, {bench!r})
    from floor import floor  # the standard library only (bench/floor.py)
    floor(d)
else:
    from qscale import _exit
    from qscale.cli import main
    _exit.ENABLED = True  # as the console script (qscale.cli.run): no teardown of the check
    sys.argv = ["qscale", "check", d, "--engine", engine]
    out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(out, 1)
    try:
        main()
    except SystemExit:
        pass
    sys.stdout.flush()
ru = resource.getrusage(resource.RUSAGE_SELF)
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print(json.dumps({{"cpu": ru.ru_utime + ru.ru_stime, "hwm_mb": hwm / 1024,
                   "torch": "torch" in sys.modules}}), file=sys.stderr)
sys.stderr.flush()
os._exit(0)  # both measured up to here; the console script ends with os._exit too
"""


def _compile_bytecode() -> None:
    """Write the ``.pyc`` of qscale and of what the floor imports, as ``pip install`` does for
    an installed package: with ``PYTHONDONTWRITEBYTECODE`` set and no cache, every measured
    child would compile ~100 modules first (~0.3 s, more than a third of the floor)."""
    import compileall

    for path in (ROOT / "qscale", HERE, ROOT / "tests" / "replicas.py"):
        ok = (compileall.compile_dir(path, quiet=1) if path.is_dir()
              else compileall.compile_file(path, quiet=1))
        if not ok:
            raise SystemExit(f"could not compile {path}")


def measure(mode: str, d: Path, engine: str) -> dict[str, Any]:
    code = _CHILD.format(bench=str(HERE))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, mode, str(d), engine],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - t
    try:
        row: dict[str, Any] = json.loads(p.stderr.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"{mode} on {d} failed:\n{p.stderr[-2000:]}") from None
    row["wall"] = wall
    return row


def best(mode: str, d: Path, engine: str, repeat: int) -> dict[str, Any]:
    runs = [measure(mode, d, engine) for _ in range(repeat)]
    top = min(runs, key=lambda r: r["cpu"])
    return {"cpu": round(top["cpu"], 3), "wall": round(top["wall"], 3),
            "hwm_mb": round(max(r["hwm_mb"] for r in runs), 1), "torch": top["torch"],
            "cpu_runs": [round(r["cpu"], 3) for r in runs]}


def exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) on log(tensors)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def startup(repeat: int) -> dict[str, float]:
    """Best wall time of ``qscale --version``, ``--help`` and ``rule QS204`` (fresh
    interpreters, taking turns: :func:`bench_startup.best_of`)."""
    import bench_startup

    argvs = [["--version"], ["--help"], ["rule", "QS204"]]
    best = bench_startup.best_of([[sys.executable, "-m", "qscale", *a] for a in argvs], 0, repeat)
    return {" ".join(a): round(wall, 3) for a, (wall, _) in zip(argvs, best, strict=True)}


def plot(rows: list[dict[str, Any]], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'): no PNG"
    fig, ax = plt.subplots(figsize=(9, 6))
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["layout"], r["variant"]), []).append(r)
    for (layout, variant), pts in sorted(series.items()):
        pts.sort(key=lambda r: r["tensors"])
        x = [r["tensors"] for r in pts]
        line, = ax.plot(x, [r["check"]["cpu"] for r in pts], marker="o",
                        label=f"check {layout} {variant}")
        ax.plot(x, [r["floor"]["cpu"] for r in pts], ls="--", marker=".",
                color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tensors")
    ax.set_ylabel("CPU seconds (solid: qscale check; dashed: floor)")
    ax.set_title("qscale check vs the I/O floor")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"wrote {path}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("layouts", nargs="*", help=f"default: all of {', '.join(LAYOUTS)}")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--engine", default="vllm==0.33.0")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/qscale-bench"))
    ap.add_argument("--repeat", "-n", type=int, default=3)
    ap.add_argument("--max-ratio", type=float, default=1.5)
    ap.add_argument("--max-exponent", type=float, default=1.1)
    ap.add_argument("--max-rss-mb", type=float, default=500)
    ap.add_argument("--max-startup", type=float, default=0.3)
    ap.add_argument("--result", type=Path, default=OUT / "check.json")
    ap.add_argument("--png", type=Path, default=OUT / "check.png")
    args = ap.parse_args(argv)
    names = args.layouts or list(LAYOUTS)
    _compile_bytecode()
    variants = args.variants.split(",")
    rows: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    failures: list[str] = []
    for name in names:
        for variant in variants:
            pts = []
            for fraction in FRACTIONS:
                d = args.dir / f"{name}-{variant}-{fraction:g}"
                t = time.perf_counter()
                info = build(name, variant, fraction, d)
                built = time.perf_counter() - t
                fl = best("floor", d, args.engine, args.repeat)
                ck = best("check", d, args.engine, args.repeat)
                shutil.rmtree(d, ignore_errors=True)
                ratio = ck["cpu"] / fl["cpu"]
                row = {"layout": name, "variant": variant, "fraction": fraction, **info,
                       "build_s": round(built, 2), "floor": fl, "check": ck,
                       "ratio": round(ratio, 3)}
                rows.append(row)
                args.result.parent.mkdir(parents=True, exist_ok=True)
                args.result.with_suffix(".partial.json").write_text(json.dumps(rows, indent=1))
                pts.append((info["tensors"], ck["cpu"]))
                print(f"{name:24s} {variant:9s} {fraction:5.3f} {info['tensors']:>9,} tensors "
                      f"{info['skip_entries']:>5} skip entries  floor {fl['cpu']:6.2f} s  "
                      f"check {ck['cpu']:6.2f} s  ratio {ratio:5.2f}  rss {ck['hwm_mb']:5.0f} MB",
                      flush=True)
                if ck["torch"]:
                    failures.append(f"{name} {variant}: check imported torch")
                if ck["hwm_mb"] > args.max_rss_mb:
                    failures.append(f"{name} {variant} {fraction:g}: RSS {ck['hwm_mb']} MB")
                if variant == "base" and fraction == 1.0 and ratio > args.max_ratio:
                    failures.append(f"{name}: check/floor {ratio:.2f} > {args.max_ratio}")
            k = exponent(pts)
            fits.append({"layout": name, "variant": variant, "exponent": round(k, 3)})
            print(f"{name:24s} {variant:9s} fitted exponent {k:.3f}", flush=True)
            if k > args.max_exponent:
                failures.append(f"{name} {variant}: exponent {k:.2f} > {args.max_exponent}")
    start = startup(max(3, args.repeat))
    print("start-up (wall, best): " + ", ".join(f"qscale {a}: {t} s" for a, t in start.items()))
    failures += [f"start-up `qscale {a}` {t} s" for a, t in start.items()
                 if a != "--help" and t > args.max_startup]
    result = {
        "engine": args.engine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load": os.getloadavg()},
        "rows": rows, "fits": fits, "startup_s": start, "failures": failures,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.result}")
    print(plot(rows, args.png))
    for f in failures:
        print(f"FAIL {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
