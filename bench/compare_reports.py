"""Compare ``qscale check -f json`` of two source trees, case by case, byte for byte.

    .venv/bin/python bench/compare_reports.py --base /tmp/qscale-base      # every case
    .venv/bin/python bench/compare_reports.py --base /tmp/qscale-base --only fixtures
    .venv/bin/python bench/compare_reports.py --base /tmp/qscale-base --only mutations

``--base`` is another checkout of qscale (``git archive <commit> | tar -x -C DIR``); the tree
compared with it is this script's own. Each case is a checkpoint folder and an engine:

- ``fixtures``: every checkpoint folder under ``tests/fixtures`` (one with a ``config.json``);
- ``replicas``: every replica of ``tests/replicas.py`` at full scale;
- ``mutations``: the full-scale FP8-block layouts of bench_check.py with one routed expert
  broken (a scale dropped, a weight of another dtype, a scale of another shape, an extra
  tensor, a whole expert missing), and one such layout unbroken;

each checked on ``--engines`` (default ``vllm==0.33.0,vllm==0.19.1,sglang==0.5.13``). Both
trees run in fresh interpreters of this Python (``qscale.cli.main``, the editable install's
finder taken out of ``sys.meta_path`` so that the tree named is the one imported), on the same
folder, so the reports' ``source`` agree. A case differs when the exit code, stdout or stderr
differ; the report holds no timing. The base tree's outputs are kept under ``--out`` and reused
(``--fresh`` reruns them). Exits 1 when a case differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))
import bench_check  # noqa: E402
import replicas  # noqa: E402

ENGINES = "vllm==0.33.0,vllm==0.19.1,sglang==0.5.13"

_CHILD = r"""
import sys
tree, argv = sys.argv[1], sys.argv[2:]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                    and "editable" not in type(f).__name__.lower()]
sys.path.insert(0, tree)
import qscale
assert qscale.__file__.startswith(tree), (qscale.__file__, tree)
from qscale.cli import main
sys.argv = ["qscale", *argv]
main()
"""


def run_tree(tree: Path, argv: list[str]) -> dict[str, Any]:
    p = subprocess.run([sys.executable, "-c", _CHILD, str(tree), *argv], capture_output=True,
                       text=True, check=False, cwd=ROOT)
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}


# --------------------------------------------------------------------------- cases

Edit = Callable[[replicas.Layout, dict, dict], None]


def _drop(lay: replicas.Layout, names: set[str]) -> None:
    assert names <= {t[0] for t in lay.tensors}, names - {t[0] for t in lay.tensors}
    lay.tensors = [t for t in lay.tensors if t[0] not in names]
    lay.files = [(f, [n for n in ns if n not in names]) for f, ns in lay.files]


def _change(lay: replicas.Layout, name: str, dtype: str | None = None,
            shape: tuple[int, ...] | None = None) -> None:
    for k, t in enumerate(lay.tensors):
        if t[0] == name:
            lay.tensors[k] = (name, dtype or t[1], shape or t[2])
            return
    raise KeyError(name)


def _add(lay: replicas.Layout, next_to: str, tensor: replicas.Tensor) -> None:
    lay.tensors.append(tensor)
    for _file, ns in lay.files:
        if next_to in ns:
            ns.append(tensor[0])
            return
    raise KeyError(next_to)


def _shape(lay: replicas.Layout, name: str) -> tuple[int, ...]:
    return next(t[2] for t in lay.tensors if t[0] == name)


QWEN_EXPERT = "model.language_model.layers.{l}.mlp.experts.{e}"
DS_EXPERT = "model.layers.{l}.mlp.experts.{e}"


def _mutations(expert: str) -> dict[str, Edit]:
    def scale(lay: replicas.Layout, c: dict, x: dict) -> None:
        _drop(lay, {expert.format(l=7, e=250) + ".up_proj.weight_scale_inv"})

    def dtype(lay: replicas.Layout, c: dict, x: dict) -> None:
        _change(lay, expert.format(l=11, e=5) + ".down_proj.weight", dtype="BF16")

    def shape(lay: replicas.Layout, c: dict, x: dict) -> None:
        n = expert.format(l=20, e=200) + ".gate_proj.weight_scale_inv"
        rows, cols = _shape(lay, n)
        _change(lay, n, shape=(rows + 1, cols))

    def extra(lay: replicas.Layout, c: dict, x: dict) -> None:
        m = expert.format(l=30, e=9) + ".gate_proj"
        _add(lay, m + ".weight", (m + ".input_scale", "F32", (1,)))

    def whole(lay: replicas.Layout, c: dict, x: dict) -> None:
        m = expert.format(l=40, e=100) + "."
        _drop(lay, {t[0] for t in lay.tensors if t[0].startswith(m)})

    def wshape(lay: replicas.Layout, c: dict, x: dict) -> None:
        n = expert.format(l=50, e=0) + ".up_proj.weight"
        rows, cols = _shape(lay, n)
        _change(lay, n, shape=(rows, cols * 2))

    return {"none": lambda lay, c, x: None, "drop-scale": scale, "weight-dtype": dtype,
            "scale-shape": shape, "extra-tensor": extra, "missing-expert": whole,
            "weight-shape": wshape}


def _build_mutation(layout: str, edit: Edit, out: Path) -> None:
    replica, base_edit = bench_check.LAYOUTS[layout]

    def both(lay: replicas.Layout, config: dict, extra: dict) -> None:
        if base_edit is not None:
            base_edit(lay)
        edit(lay, config, extra)

    replicas.build(replica, out, edit=both)


def cases(only: set[str]) -> Iterator[tuple[str, Callable[[Path], Path]]]:
    """(case name, a function that returns the folder to check, building it under a scratch
    folder when it is built)."""
    if "fixtures" in only:
        for cfg in sorted((ROOT / "tests" / "fixtures").rglob("config.json")):
            d = cfg.parent
            if any(d.glob("*.safetensors")):
                rel = d.relative_to(ROOT)
                yield f"fixture/{rel}", lambda _s, rel=rel: rel
    if "replicas" in only:
        for name in replicas.REPLICAS:
            yield f"replica/{name}", lambda s, name=name: replicas.build(name, s)
    if "mutations" in only:
        for layout, expert in (("qwen3.5-397b-fp8-text", QWEN_EXPERT),
                               ("deepseek-r1-fp8-mtp", DS_EXPERT)):
            for what, edit in _mutations(expert).items():
                yield (f"mutation/{layout}/{what}",
                       lambda s, layout=layout, edit=edit: (_build_mutation(layout, edit, s), s)[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--base", type=Path, required=True, help="the other qscale tree")
    ap.add_argument("--engines", default=ENGINES)
    ap.add_argument("--only", default="fixtures,replicas,mutations")
    ap.add_argument("--match", default="", help="only the cases whose name contains this")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "compare")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/qscale-compare"))
    ap.add_argument("--fresh", action="store_true", help="rerun the base tree's cases")
    ap.add_argument("--base-only", action="store_true",
                    help="only run (and keep) the base tree's outputs")
    args = ap.parse_args(argv)
    base = args.base.resolve()
    engines = args.engines.split(",")
    differ: list[str] = []
    n = 0
    for case, folder in cases(set(args.only.split(","))):
        if args.match not in case:
            continue
        built: Path | None = None
        for engine in engines:
            key = hashlib.sha1(f"{case}@{engine}".encode()).hexdigest()[:16]
            cached = args.out / "base" / f"{key}.json"
            if built is None:
                built = folder(args.scratch / "ckpt")
            argv_ = ["check", str(built), "--engine", engine, "-f", "json"]
            if cached.is_file() and not args.fresh:
                old = json.loads(cached.read_text())
            else:
                old = run_tree(base, argv_)
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps(old))
            n += 1
            if args.base_only:
                print(f"base   rc {old['rc']}  {case} @ {engine}", flush=True)
                continue
            new = run_tree(ROOT, argv_)
            same = old == new
            if not same:
                differ.append(f"{case} @ {engine}")
                where = args.out / "differ" / key
                where.mkdir(parents=True, exist_ok=True)
                for label, r in (("base", old), ("new", new)):
                    (where / f"{label}.json").write_text(json.dumps(r, indent=1))
            try:
                nf = len(json.loads(new["stdout"])["findings"])
            except (ValueError, KeyError):
                nf = -1
            print(f"{'same  ' if same else 'DIFFER'} rc {new['rc']} findings {nf:>6}  "
                  f"{case} @ {engine}", flush=True)
        if built is not None and built.is_relative_to(args.scratch):
            shutil.rmtree(built, ignore_errors=True)
    print(f"{n} case(s), {len(differ)} differ")
    for d in differ:
        print(f"DIFFER {d}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
