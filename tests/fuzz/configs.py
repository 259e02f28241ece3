"""A seeded, bounded fuzzer of ``config.json``: a valid checkpoint's config with one to three
values swapped for other JSON (other types, huge or negative numbers, deep nesting, keys
dropped), read and checked through the library as every command does.

The property: reading raises nothing but a :class:`~qscale.errors.QscaleError` (one
``error:`` line at the CLI), and no rule crashes on a config that reads. ``python -m
tests.fuzz.configs [COUNT] [SEED]`` runs it by hand; pytest runs a small count
(``tests/test_fuzz.py``; ``QSCALE_FUZZ_CASES`` raises it).
"""

from __future__ import annotations

import copy
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2, 7, 2**24, 2**24 + 1, 10**12, 2**64, -(2**63), 1.5, float("inf"),
    "", "x", "fp8", "compressed-tensors", [], [1], ["Qwen3_5MoeForConditionalGeneration"], {},
    {"a": 1}, [[[[[[]]]]]],
]  # fmt: skip


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every JSON pointer (as a tuple) of ``obj``'s values."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*at, k)
            yield from _paths(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*at, i)
            yield from _paths(v, (*at, i))


def mutate(config: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    cfg = copy.deepcopy(config)
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(cfg))
        if not paths:
            break
        path = rng.choice(paths)
        parent: Any = cfg
        for p in path[:-1]:
            parent = parent[p]
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
    return cfg


def run_case(root: Path, config: dict[str, Any]) -> str:
    """``"checked"``, ``"refused"`` (a QscaleError), or what went wrong."""
    from qscale import CheckOptions, check, read_checkpoint
    from qscale.errors import QscaleError

    (root / "config.json").write_text(json.dumps(config))
    try:
        report = check(read_checkpoint(root), CheckOptions())
    except QscaleError:
        return "refused"
    except Exception as exc:  # the bug the fuzzer looks for
        return f"{type(exc).__name__}: {exc}"
    if report.crashed:
        return f"rule crashed: {report.crashed[0]}"
    return "checked"


def cases(config: dict[str, Any], count: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate(config, rng)


def main(argv: list[str]) -> int:
    import tempfile

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from builders import qwen3_5_moe

    count = int(argv[0]) if argv else 5000
    seed = int(argv[1]) if len(argv) > 1 else 0
    with tempfile.TemporaryDirectory() as d:
        root = qwen3_5_moe("ct-fp8").write(Path(d))
        base = json.loads((root / "config.json").read_text())
        bad = 0
        for i, cfg in enumerate(cases(base, count, seed)):
            problem = run_case(root, cfg)
            if problem not in ("checked", "refused"):
                bad += 1
                print(f"case {i}: {problem[:200]}")
    print(f"{count} cases, {bad} failures")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
