"""Benchmark qscale's header read on a full-scale sparse Qwen3.5-397B-A17B-FP8 layout.

    /work/venv/bin/python bench/bench_read.py [--dir DIR] [--repeat 5] [--rebuild]

The first run builds the layout from the real ``config.json`` (about 188k tensors in 94
files, about 400 GB of *logical* size) into ``--dir``: every file gets its real header, is
then extended to its full size with ``ftruncate`` (no data written, so it takes almost no
disk), and only the ``weight_scale_inv`` tensors get real bytes (small random positive F32),
so that reading scales reads real data. Later runs reuse the layout.

Measured, best of ``--repeat`` after one untimed pass that warms the page cache:

a. floor: per file open, read 8 bytes, read the header, ``json.loads`` it; nothing else;
b. ``qscale.checkpoint.read_local_checkpoint(dir)``: every header parsed and validated, the index
   cross-checked, small tensors decoded;
c. deep: (b) plus ``Checkpoint.read_values`` of every ``weight_scale_inv``;
d. peak RSS of (b) in a fresh interpreter (``ru_maxrss``); it also asserts that (b) did not
   import torch;
e. the check path end to end: (b), then ``resolve_quantization`` and ``plan_load`` (the vLLM
   default profile), the work every ``qscale check`` does before its rules run;
f. (b) on the same files (hard links) with the index written with sorted keys, as
   transformers' ``save_pretrained`` writes it (the layout's own index lists the tensors in
   the files' order);
g. ``qscale.check()`` right after (b), for ``vllm==0.20.0``: resolve, plan and every rule, which
   is what ``qscale check`` adds to the read; process CPU time of the check alone, each run on a
   checkpoint read just before it (untimed), as the CLI runs it.

Results are printed and written to ``bench/out/result.json``. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
import replicas  # noqa: E402  (tests/replicas.py: the replica builder, shared with the tests)

DEFAULT_CONFIG = Path("/work/shared/realworld/qwen3.5-397b-a17b-fp8/config.json")
DEFAULT_DIR = HERE / "out" / "qwen3.5-397b-fp8"
RESULT = HERE / "out" / "result.json"
STAMP = ".bench_layout.json"  #: written last; a layout is reused only if its stamp matches
LAYOUT_VERSION = 2  #: 2: headers ordered as the safetensors writer orders them (dtype, name)

Tensor = replicas.Tensor  # name, dtype, shape

TARGET_RATIO = 1.5
TARGET_SECONDS = 2.0
TARGET_RSS_MB = 500.0


# --------------------------------------------------------------------------- layout
# The tensors and the files are tests/replicas.py's (the Qwen3.5-397B-A17B-FP8 replica): one
# builder for the tests and the benches.


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    return replicas.nbytes(dtype, shape)


def build_tensors(config: dict[str, Any], scale_dtype: str = "F32") -> list[Tensor]:
    """Every tensor of the HF checkpoint, with its real name, dtype and shape
    (``replicas.qwen3_5``). The bench layout keeps the F32 ``weight_scale_inv`` it has been
    measured with (and that bench_fix.py writes values for); the replica itself stores BF16
    scales, as the release is believed to."""
    qc = config["quantization_config"]
    assert qc["quant_method"] == "fp8" and qc["weight_block_size"] == [128, 128], qc
    b = replicas.qwen_fp8_builder(config, scale_dtype)
    replicas.qwen3_5(b, config)
    return b.tensors


def _natural(name: str) -> list[Any]:
    """Sort key: layers.2 before layers.10, as a real export writes them."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def shard(tensors: list[Tensor], n_files: int) -> list[list[Tensor]]:
    """Split tensors, in name order, into ``n_files`` files of about equal logical size."""
    return replicas.even_shards(sorted(tensors, key=lambda t: _natural(t[0])), n_files)


def _header(tensors: list[Tensor]) -> tuple[bytes, list[tuple[str, int, int]]]:
    """The 8-byte length + JSON header as the safetensors writer emits it (``replicas.header``:
    ``__metadata__`` first, tensors by dtype alignment then name, contiguous offsets, space
    padding to 8 bytes), and (name, begin, end) of each tensor in the buffer."""
    head, spans = replicas.header(tensors, {"format": "pt"})
    return head, [(n, b, b + replicas.nbytes(d, s)) for n, d, s, b in spans]


def write_layout(out: Path, config_path: Path, n_files: int, seed: int) -> dict[str, Any]:
    """The layout (``replicas.write_layout``): real headers, files extended to their full size
    as holes, real random positive values in every ``weight_scale_inv``; the index lists the
    tensors in the files' order."""
    config = json.loads(config_path.read_text())
    shards = shard(build_tensors(config), n_files)
    layout = replicas.Layout([t for s in shards for t in s], replicas.named(shards),
                             index_style="file-order")
    info = replicas.write_layout(layout, out, {"config.json": config_path.read_bytes()}, seed)
    stamp = {"version": LAYOUT_VERSION, "files": info["files"], "tensors": info["tensors"],
             "total_size": info["total_size"], "n_files_arg": n_files, "seed": seed,
             "config": str(config_path)}
    (out / STAMP).write_text(json.dumps(stamp, indent=2))
    return stamp


def ensure_layout(out: Path, config_path: Path, n_files: int, seed: int,
                  rebuild: bool) -> dict[str, Any]:
    stamp_path = out / STAMP
    if not rebuild and stamp_path.is_file():
        stamp: dict[str, Any] = json.loads(stamp_path.read_text())
        if (stamp.get("version"), stamp.get("n_files_arg"), stamp.get("seed")) == (
            LAYOUT_VERSION, n_files, seed
        ):
            print(f"reusing layout in {out}")
            return stamp
    print(f"building layout in {out} ...", flush=True)
    t0 = time.perf_counter()
    stamp = write_layout(out, config_path, n_files, seed)
    print(f"built in {time.perf_counter() - t0:.1f} s")
    return stamp


def sorted_index_twin(d: Path) -> Path:
    """A folder next to ``d`` with hard links to its files and the index rewritten with
    ``sort_keys=True`` and ``indent=2``, as transformers writes it; rebuilt on every run."""
    twin = d.with_name(d.name + "-sorted-index")
    if twin.exists():
        shutil.rmtree(twin)
    twin.mkdir()
    index = "model.safetensors.index.json"
    for p in d.iterdir():
        if p.name.endswith(".safetensors") or p.name == "config.json":
            os.link(p, twin / p.name)
    doc = json.loads((d / index).read_text())
    (twin / index).write_text(json.dumps(doc, indent=2, sort_keys=True))
    return twin


def disk_usage(out: Path) -> tuple[int, int]:
    """(bytes really allocated on disk, logical bytes) of the layout folder."""
    real = logical = 0
    for p in out.iterdir():
        st = p.stat()
        real += st.st_blocks * 512
        logical += st.st_size
    return real, logical


# --------------------------------------------------------------------------- measures


def floor_read(d: str) -> int:
    """The minimum any header reader must do: open, 8 bytes, header bytes, json.loads."""
    count = 0
    for name in sorted(n for n in os.listdir(d) if n.endswith(".safetensors")):
        with open(os.path.join(d, name), "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            count += len(json.loads(fh.read(n)))
    return count


def qscale_read(d: str) -> int:
    from qscale.checkpoint import read_local_checkpoint

    return len(read_local_checkpoint(d).tensors)


def qscale_deep(d: str) -> int:
    from qscale.checkpoint import read_local_checkpoint

    ckpt = read_local_checkpoint(d)
    names = [n for n in ckpt.tensors if n.endswith(".weight_scale_inv")]
    return len(ckpt.read_values(names))


def qscale_plan(d: str) -> int:
    """(e): read, resolve every module's quantization, plan the engine's load."""
    from qscale.checkpoint import read_local_checkpoint
    from qscale.engines.loader import plan_load
    from qscale.formats import resolve_quantization

    ckpt = read_local_checkpoint(d)
    return len(plan_load(ckpt, None, resolve_quantization(ckpt)).params)


#: the engine the end-to-end check (g) runs for
CHECK_ENGINE = "vllm==0.20.0"


def measure_check(d: str, repeat: int) -> Timing:
    """(g): ``check()`` on a checkpoint read just before it (the read untimed), best of
    ``repeat`` after one untimed run; the result is the number of findings. A fresh read each
    time leaves the interpreter as the CLI has it (the objects of the read not yet collected)."""
    from qscale.checkpoint import read_local_checkpoint
    from qscale.runner import CheckOptions, check

    options = CheckOptions(engine=CHECK_ENGINE)
    result = len(check(read_local_checkpoint(d), options).findings)  # untimed: imports, first use
    times, cpus = [], []
    for _ in range(repeat):
        ckpt = read_local_checkpoint(d)
        c0, t0 = time.process_time(), time.perf_counter()
        check(ckpt, options)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        del ckpt
    return Timing(min(times), times, min(cpus), result)


def floor_read_nogc(d: str) -> int:
    """The floor with the cyclic GC paused (qscale pauses it while it parses a header)."""
    gc.disable()
    try:
        return floor_read(d)
    finally:
        gc.enable()


class Timing(NamedTuple):
    best: float  #: best wall-clock time, s
    runs: list[float]  #: every timed wall-clock run, s
    cpu: float  #: best process CPU time, s (less sensitive to other load on the machine)
    result: int


def best_of(fn: Callable[[str], int], d: str, repeat: int) -> Timing:
    result = fn(d)  # untimed: warms the page cache and the imports
    times, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn(d)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return Timing(min(times), times, min(cpus), result)


RSS_CODE = """
import json, resource, sys
from qscale.checkpoint import read_local_checkpoint
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ckpt = read_local_checkpoint(sys.argv[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM:"))
print(json.dumps({"base_kb": base, "peak_kb": peak, "hwm_kb": hwm, "tensors": len(ckpt.tensors),
                  "values": len(ckpt.values), "torch": "torch" in sys.modules}))
"""


#: Linux carries a process's ru_maxrss over exec (from the mm it replaces, which for a vfork
#: child is the parent's), so the measuring interpreter is started by a small launcher, not by
#: this process, which has grown by then; VmHWM (/proc) cross-checks the figure.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def fresh_rss(d: str) -> dict[str, Any]:
    cmd = [sys.executable, "-c", LAUNCHER, sys.executable, "-c", RSS_CODE, d]
    env = dict(os.environ)  # qscale importable even when not installed; PYTHONPATH first
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(REPO)) if p)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd="/", env=env)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def sanity(d: str, stamp: dict[str, Any]) -> dict[str, int]:
    """Check, once and untimed, that the layout reads back as intended."""
    from qscale.checkpoint import read_local_checkpoint

    ckpt = read_local_checkpoint(d)
    assert len(ckpt.tensors) == stamp["tensors"], (len(ckpt.tensors), stamp["tensors"])
    scales = [n for n in ckpt.tensors if n.endswith(".weight_scale_inv")]
    sample = scales[:: max(1, len(scales) // 2000)]
    for name, v in ckpt.read_values(sample).items():
        assert v.shape == ckpt.tensors[name].shape and bool(np.all(v > 0)), name
    return {"files": len(ckpt.files), "tensors": len(ckpt.tensors), "scales": len(scales),
            "small_values": len(ckpt.values)}


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem, 1),
            "python": platform.python_version(), "numpy": np.__version__,
            "platform": platform.platform()}


def _fmt(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


def main(argv: Iterator[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="layout folder (cached)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--repeat", "-n", type=int, default=5, help="timed runs; best is kept")
    ap.add_argument("--files", type=int, default=94, help="number of safetensors files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rebuild", action="store_true", help="rebuild the layout")
    ap.add_argument("--no-deep", action="store_true", help="skip the deep (c) measure")
    ap.add_argument("--no-plan", action="store_true", help="skip the check-path (e) measure")
    ap.add_argument("--no-sorted", action="store_true",
                    help="skip the sorted-index (f) measure")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the end-to-end check (g) measure")
    ap.add_argument("--result", type=Path, default=RESULT)
    args = ap.parse_args(list(argv) if argv is not None else None)

    stamp = ensure_layout(args.dir, args.config, args.files, args.seed, args.rebuild)
    real, logical = disk_usage(args.dir)
    print(f"layout: {stamp['files']} files, {stamp['tensors']} tensors, "
          f"{logical / 1e9:.1f} GB logical, {real / 1e6:.1f} MB on disk (du)")
    assert real < 0.01 * logical, "sparse files take real disk space"
    d = str(args.dir)
    info = sanity(d, stamp)

    a = best_of(floor_read, d, args.repeat)
    print(f"(a) floor   best {a.best:.3f} s  cpu {a.cpu:.3f} s  [{_fmt(a.runs)}]")
    a0 = best_of(floor_read_nogc, d, args.repeat)
    print(f"    floor, GC paused: best {a0.best:.3f} s  cpu {a0.cpu:.3f} s  [{_fmt(a0.runs)}]")
    b = best_of(qscale_read, d, args.repeat)
    print(f"(b) qscale  best {b.best:.3f} s  cpu {b.cpu:.3f} s  [{_fmt(b.runs)}]"
          f"   b/a = {b.best / a.best:.2f}  cpu b/a = {b.cpu / a.cpu:.2f}"
          f"  (vs GC-paused floor {b.best / a0.best:.2f})")
    c = None
    if not args.no_deep:
        c = best_of(qscale_deep, d, args.repeat)
        print(f"(c) deep    best {c.best:.3f} s  cpu {c.cpu:.3f} s  [{_fmt(c.runs)}]"
              f"   c/a = {c.best / a.best:.2f}   ({c.result} weight_scale_inv read)")
    e = None
    if not args.no_plan:
        e = best_of(qscale_plan, d, args.repeat)
        print(f"(e) read+resolve+plan  best {e.best:.3f} s  cpu {e.cpu:.3f} s  [{_fmt(e.runs)}]"
              f"   read share {b.best / e.best:.0%}   ({e.result} engine params)")
    f = None
    if not args.no_sorted:
        twin = sorted_index_twin(args.dir)
        f = best_of(qscale_read, str(twin), args.repeat)
        assert f.result == b.result, (f.result, b.result)
        print(f"(f) qscale, sorted index  best {f.best:.3f} s  cpu {f.cpu:.3f} s  "
              f"[{_fmt(f.runs)}]   f/a = {f.best / a.best:.2f}  cpu f/a = {f.cpu / a.cpu:.2f}")
        shutil.rmtree(twin)
    g = None
    if not args.no_check:
        g = measure_check(d, args.repeat)
        print(f"(g) check() after the read ({CHECK_ENGINE})  cpu {g.cpu:.3f} s  "
              f"wall {g.best:.3f} s  [{_fmt(g.runs)}]   ({g.result} findings)")
    rss = fresh_rss(d)
    rss_mb = rss["peak_kb"] / 1024
    print(f"(d) peak RSS of (b) in a fresh interpreter: {rss_mb:.0f} MB "
          f"(VmHWM {rss['hwm_kb'] / 1024:.0f} MB; interpreter + imports: "
          f"{rss['base_kb'] / 1024:.0f} MB); torch imported: {rss['torch']}")
    print(f"counts: {info['files']} files, {info['tensors']} tensors, {info['scales']} "
          f"weight_scale_inv, {info['small_values']} small tensors decoded")

    checks = {
        f"b/a <= {TARGET_RATIO}": b.best / a.best <= TARGET_RATIO,
        f"b < {TARGET_SECONDS} s": b.best < TARGET_SECONDS,
        f"RSS < {TARGET_RSS_MB:.0f} MB": rss_mb < TARGET_RSS_MB,
        "torch not imported": not rss["torch"] and "torch" not in sys.modules,
    }
    for what, ok in checks.items():
        print(f"  [{'ok' if ok else 'MISSED'}] {what}")

    result = {
        "machine": _machine(),
        "layout": {**info, "logical_bytes": logical, "disk_bytes": real, "dir": d},
        "repeat": args.repeat,
        "floor_s": a.best, "floor_cpu_s": a.cpu, "floor_runs_s": a.runs,
        "floor_gc_paused_s": a0.best, "floor_gc_paused_cpu_s": a0.cpu,
        "qscale_s": b.best, "qscale_cpu_s": b.cpu, "qscale_runs_s": b.runs,
        "ratio_b_a": b.best / a.best, "ratio_b_a_cpu": b.cpu / a.cpu,
        "deep_s": c.best if c else None, "deep_cpu_s": c.cpu if c else None,
        "deep_runs_s": c.runs if c else None,
        "ratio_c_a": c.best / a.best if c else None,
        "plan_s": e.best if e else None, "plan_cpu_s": e.cpu if e else None,
        "plan_runs_s": e.runs if e else None,
        "sorted_index_s": f.best if f else None, "sorted_index_cpu_s": f.cpu if f else None,
        "ratio_f_a": f.best / a.best if f else None,
        "check_s": g.cpu if g else None, "check_wall_s": g.best if g else None,
        "check_runs_s": g.runs if g else None,
        "rss_peak_mb": rss_mb, "rss_vmhwm_mb": rss["hwm_kb"] / 1024,
        "rss_base_mb": rss["base_kb"] / 1024,
        "torch_imported": rss["torch"],
        "targets": checks,
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.result}")
    assert not rss["torch"], "read_local_checkpoint imported torch"
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
