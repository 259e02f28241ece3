"""Regenerate the engine catalogue from released wheels (not used by ``qscale check``).

    python -m qscale.engines.generate vllm                 # every release 0.18.0 … newest
    python -m qscale.engines.generate vllm --versions 0.33.0,0.34.0 --wheels ~/wheels
    python -m qscale.engines.generate vllm --formats-only --check --wheels ~/wheels

Each release's wheel is fetched with ``pip download --no-deps vllm==X`` (kept in
``--wheels`` when given, else deleted after reading), its model registry and model files are
read with :mod:`qscale.engines.extract`, and ``qscale/engines/data/vllm.json`` is rewritten:
per architecture, the releases over which its facts stay the same, and per quantization-format
fact (``extract.FORMAT_READERS``, ``extract.HAND_FORMAT_FACTS``) the same.
``--formats-only`` reads and rewrites only the format facts; ``--check`` writes nothing and
exits 1 when the committed file is not what a regeneration gives. A new release is a
regenerate and a commit; nothing else changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qscale.engines.extract import (
    SourceTree,
    causal_lm_names,
    extract_formats,
    extract_vllm,
    format_rows,
    registry_notes,
    requirement,
    transformers_classes,
)

DATA = Path(__file__).resolve().parent / "data"
SCHEMA = 1
#: releases read; the newest first-checked release of each minor line and every patch
VLLM_RELEASES = (
    "0.18.0", "0.18.1", "0.19.0", "0.19.1", "0.20.0", "0.20.1", "0.20.2", "0.21.0",
    "0.22.0", "0.22.1", "0.23.0", "0.24.0", "0.25.0", "0.25.1", "0.26.0", "0.27.0",
    "0.27.1", "0.28.0", "0.29.0", "0.30.0", "0.31.0", "0.32.0", "0.33.0",
)


def fetch_wheel(engine: str, version: str, folder: Path) -> Path:
    """The release's wheel in ``folder`` (``pip download --no-deps`` when absent)."""
    found = sorted(folder.glob(f"{engine}-{version}-*.whl"))
    if found:
        return found[0]
    return _download(f"{engine}=={version}", folder, f"{engine}-{version}-*.whl")


def _download(requirement: str, folder: Path, pattern: str | None = None) -> Path:
    """``pip download --no-deps`` one requirement; the wheel it saved (or already had)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-d", str(folder), requirement],
        check=True, capture_output=True, text=True,
    ).stdout
    names = re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", out)
    if not names:
        raise FileNotFoundError(f"pip downloaded no wheel for {requirement}")
    return folder / Path(names[-1]).name


def facts_id(facts: dict[str, Any]) -> str:
    """A short content hash: equal facts in two releases share one entry."""
    blob = json.dumps(facts, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def build(engine: str, extracted: dict[str, dict[str, dict[str, Any]]],
          per_release: dict[str, dict[str, Any]] | None = None,
          transformers: dict[str, dict[str, Any]] | None = None,
          formats: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The data file's content from each release's extracted facts (releases in order) and,
    per release what its registry says of others (transformers' classes and causal-LM class
    per model type, of the transformers version it requires; architectures it dropped) and
    its quantization-format facts (:func:`~qscale.engines.extract.extract_formats`)."""
    releases = list(extracted)
    facts: dict[str, dict[str, Any]] = {}
    ranges: dict[str, list[list[str]]] = {}
    for release, archs in extracted.items():
        for arch, f in archs.items():
            fid = facts_id(f)
            facts[fid] = f
            rows = ranges.setdefault(arch, [])
            prev = releases[releases.index(release) - 1] if releases.index(release) else None
            if rows and rows[-1][2] == fid and rows[-1][1] == prev:
                rows[-1][1] = release
            else:
                rows.append([release, release, fid])
    return {
        "schema": SCHEMA,
        "engine": engine,
        "generator": "python -m qscale.engines.generate",
        "releases": releases,
        "architectures": dict(sorted(ranges.items())),
        "facts": dict(sorted(facts.items())),
        "per_release": per_release or {},
        "formats": format_rows(formats or {}, releases),
        "transformers": transformers or {},
    }


def write(data: dict[str, Any], out: Path) -> None:
    """One architecture or fact per line, so a regenerated file diffs by entry."""
    lines = ["{"]
    lines += [f"{json.dumps(k)}: {json.dumps(data[k])}," for k in
              ("schema", "engine", "generator", "releases")]
    for key in ("architectures", "facts", "per_release", "formats", "transformers"):
        lines.append(f"{json.dumps(key)}: {{")
        items = list(data[key].items())
        for i, (k, v) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            lines.append(f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}{comma}")
        lines.append("}" if key == "transformers" else "},")
    lines.append("}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out)


def render(data: dict[str, Any]) -> str:
    """The text :func:`write` writes for ``data``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.json"
        write(data, path)
        return path.read_text(encoding="utf-8")


def read_formats(engine: str, versions: Sequence[str], folder: Path, keep: bool
                 ) -> dict[str, dict[str, Any]]:
    """Each release's quantization-format facts, read from its wheel in ``folder``."""
    out: dict[str, dict[str, Any]] = {}
    for v in versions:
        wheel = fetch_wheel(engine, v, folder)
        out[v] = extract_formats(SourceTree(wheel))
        print(f"{engine} {v}: {len(out[v])} format facts", file=sys.stderr)
        if not keep:
            wheel.unlink()
    return out


def formats_only(engine: str, committed: dict[str, Any], folder: Path, keep: bool
                 ) -> dict[str, Any]:
    """The committed data with its ``formats`` section read again from every catalogued
    release's wheel (the rest of the file kept as it is)."""
    formats = read_formats(engine, committed["releases"], folder, keep)
    return {**committed, "formats": format_rows(formats, list(committed["releases"]))}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qscale.engines.generate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=["vllm"])
    ap.add_argument("--versions", help="comma-separated releases (default: all known)")
    ap.add_argument("--wheels", type=Path, help="folder to keep (and reuse) the wheels in")
    ap.add_argument("--out", type=Path, help="data file (default: qscale/engines/data/)")
    ap.add_argument("--changes", action="store_true",
                    help="print, from the committed data, what each release changed; read nothing")
    ap.add_argument("--formats-only", action="store_true",
                    help="read only the quantization-format facts, of every catalogued release,"
                    " and rewrite only that section")
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and exit 1 when the data file differs (with"
                    " --formats-only: its formats section); write nothing")
    ap.add_argument("--transformers-from", type=Path, help="a data file whose per-release"
                    " transformers versions to read again (what --check does: an open"
                    " requirement would otherwise resolve to whatever PyPI has newest)")
    args = ap.parse_args(argv)
    if args.changes:
        print_changes(args.engine)
        return 0
    versions = args.versions.split(",") if args.versions else list(VLLM_RELEASES)
    out = args.out or DATA / f"{args.engine}.json"
    if args.formats_only or args.check:
        return _formats_or_check(args, versions, out)
    extracted: dict[str, dict[str, dict[str, Any]]] = {}
    info: dict[str, dict[str, Any]] = {}
    pins: dict[str, str] = {}  #: transformers requirement -> the version pip picked
    transformers: dict[str, dict[str, Any]] = {}
    formats: dict[str, dict[str, Any]] = {}
    pinned: dict[str, Any] = {}  #: release -> the transformers version a data file records
    if args.transformers_from is not None:
        pinned = {r: i.get("transformers") for r, i in json.loads(
            args.transformers_from.read_text(encoding="utf-8")).get("per_release", {}).items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for v in versions:
            wheel = fetch_wheel(args.engine, v, folder)
            tree = SourceTree(wheel)
            extracted[v] = extract_vllm(tree)
            spec = requirement(tree, "transformers") or "transformers"
            if pinned.get(v):
                spec = f"transformers=={pinned[v]}"
            if spec not in pins:
                tw = _download(spec, folder)
                tt = SourceTree(tw)
                version = tw.name.split("-")[1]
                pins[spec] = version
                transformers[version] = {"map": causal_lm_names(tt),
                                         "classes": transformers_classes(tt)}
            info[v] = {"transformers": pins[spec], **registry_notes(tree)}
            print(f"{args.engine} {v}: {len(extracted[v])} architectures;"
                  f" {spec} -> {pins[spec]}", file=sys.stderr)
            formats[v] = extract_formats(tree)
            if args.wheels is None:
                wheel.unlink()
    write(build(args.engine, extracted, info, transformers, formats), out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _formats_or_check(args: argparse.Namespace, versions: list[str], out: Path) -> int:
    committed_text = out.read_text(encoding="utf-8") if out.exists() else ""
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.wheels or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.formats_only:
            if not committed_text:
                raise SystemExit(f"--formats-only needs an existing {out}")
            data = formats_only(args.engine, json.loads(committed_text), folder,
                                keep=args.wheels is not None)
        else:  # a full regeneration, compared and not written
            fresh = Path(tmp) / f"{args.engine}.json"
            main([args.engine, "--versions", ",".join(versions), "--out", str(fresh),
                  *(["--wheels", str(args.wheels)] if args.wheels else []),
                  *(["--transformers-from", str(out)] if committed_text else [])])
            data = json.loads(fresh.read_text(encoding="utf-8"))
    text = render(data)
    if not args.check:
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
        return 0
    if text == committed_text:
        print(f"{out}: up to date", file=sys.stderr)
        return 0
    old = json.loads(committed_text) if committed_text else {}
    for key in sorted(set(data) | set(old)):
        if data.get(key) != old.get(key):
            print(f"{out}: `{key}` differs from a regeneration", file=sys.stderr)
    return 1


def print_changes(engine: str) -> None:
    """The releases at which some model's loading changed, from the committed data."""
    from qscale.engines.catalogue import changes

    for c in changes(engine):
        if c.added or c.removed or c.changed:
            print(f"{engine} {c.release}: {len(c.added)} added, {len(c.removed)} removed,"
                  f" {len(c.changed)} loading changed"
                  + (f" ({', '.join(c.changed[:6])}{', …' if len(c.changed) > 6 else ''})"
                     if c.changed else ""))


if __name__ == "__main__":
    raise SystemExit(main())
