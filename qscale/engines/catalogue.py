"""The engine catalogue: every architecture each engine release serves, and how its loader
names checkpoint tensors — committed data generated from the engines' own released code
(``python -m qscale.engines.generate``; see docs/catalogue.md). Read here, never imported
from an engine: the check path stays offline and fast.

``qscale/engines/data/<engine>.json`` holds, per architecture, the releases over which its
loader facts stay the same (``[first, last, facts-id]``) and the facts themselves
(:mod:`qscale.engines.extract` says what they are). :func:`family` turns one architecture's
facts into a :class:`~qscale.engines.families.Family`, the load plan's input; the hand-written
families in :mod:`qscale.engines.families` are the overrides (small, cited, checked against real
vLLM) and take precedence where they exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qscale.engines.families import FAMILIES, NOT_PLANNED, ExpertNames, Family, Stacked
from qscale.errors import UnknownFormat

if TYPE_CHECKING:
    from qscale.checkpoint import Checkpoint
    from qscale.engines import EngineSpec, Version

PLANNED = "planned"
NOT_PLANNABLE = "not-plannable"
#: the engine's own sentence for an architecture it does not serve
#: (vLLM ``ModelRegistry._raise_for_unsupported``)
VLLM_NOT_SERVED = "Model architectures {archs} are not supported for now"


@dataclass(frozen=True, slots=True)
class Architecture:
    """One architecture an engine release serves, and whether qscale can plan its load."""

    name: str
    status: str  #: ``planned`` | ``not-plannable``
    why: str  #: "" when planned; else why qscale cannot plan it
    source: str  #: the model file and release the facts were read from
    kind: str  #: the registry group: ``text`` | ``multimodal``
    facts: Mapping[str, Any]

    @property
    def planned(self) -> bool:
        return self.status == PLANNED


@dataclass(frozen=True, slots=True)
class Catalogue:
    """One engine's generated data."""

    engine: str
    releases: tuple[str, ...]
    ranges: Mapping[str, tuple[tuple[str, str, str], ...]]
    facts: Mapping[str, Mapping[str, Any]]
    #: release -> {"transformers": the version its requirement resolves to,
    #: "previously": {arch: last release}, "plugin": {arch: url}}
    per_release: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: transformers version -> {"map": {model_type: causal-LM class}, "classes": [...]}
    transformers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: quantization-format fact -> its ranges ``(first, last, value, source, how)``
    formats: Mapping[str, tuple[FormatRange, ...]] = field(default_factory=dict)

    def info(self, release: str | None) -> dict[str, Any]:
        """What a release's registry says of other classes, with the transformers it takes."""
        rel = dict(self.per_release.get(release or "", {}))
        rel.update(self.transformers.get(str(rel.get("transformers", "")), {}))
        return rel

    def release_for(self, version: Version | None) -> str | None:
        """The newest release read at or before ``version`` (None: before the first)."""
        if version is None:
            return self.releases[-1]
        best = None
        for r in self.releases:
            if _ver(r) <= tuple(version):
                best = r
        return best


@cache  # a handful of release strings, compared once per release_for call
def _ver(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


@dataclass(frozen=True, slots=True)
class FormatRange:
    """One quantization-format fact over the catalogued releases ``first`` … ``last``."""

    first: str
    last: str
    value: Any
    source: str  #: the file (``path:Symbol``) of the release wheels it was read from
    #: ``extracted`` (read by the generator) or ``hand-written: <why>`` (cited, by hand)
    how: str


@dataclass(frozen=True, slots=True)
class FormatFact:
    """A quantization-format fact as one release has it."""

    name: str
    value: Any
    release: str  #: the catalogued release it was read in
    source: str
    how: str

    @property
    def cite(self) -> str:
        """``vllm==0.33.0 vllm/…/quark.py:QuarkConfig``."""
        return f"vllm=={self.release} {self.source}"


#: the folder ``load`` reads ``<engine>.json`` from instead of the committed data (a
#: regenerated catalogue tried before it is committed: ``generate --out DIR/vllm.json``)
DATA_ENV = "QSCALE_ENGINE_DATA"


#: the committed catalogues (package data)
_DATA = Path(__file__).parent / "data"


@cache
def load(engine: str) -> Catalogue | None:
    """The committed catalogue of ``engine`` (None when there is none), or the one in the
    folder ``$QSCALE_ENGINE_DATA`` names."""
    folder = os.environ.get(DATA_ENV)
    try:
        if folder:
            text = Path(folder, f"{engine}.json").read_text(encoding="utf-8")
        else:
            # next to this module, as package data (importlib.resources costs ~10 ms of
            # imports, tempfile and zipfile, on every check)
            text = (_DATA / f"{engine}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return parse(json.loads(text))


def parse(raw: Mapping[str, Any]) -> Catalogue:
    """A catalogue from its data file's content."""
    ranges = {a: tuple((r[0], r[1], r[2]) for r in rows)
              for a, rows in raw["architectures"].items()}
    formats = {name: tuple(FormatRange(*r) for r in rows)
               for name, rows in raw.get("formats", {}).items()}
    return Catalogue(raw["engine"], tuple(raw["releases"]), ranges, raw["facts"],
                     raw.get("per_release", {}), raw.get("transformers", {}), formats)


def format_fact(engine: str, name: str, version: Version | None) -> FormatFact | None:
    """A quantization-format fact at the catalogued release that models ``version`` (None:
    the newest; before the first release: the first, which QS010 calls partial). None when
    the catalogue has no entry for that release: the fact was not read there (a gap, which
    :func:`format_gaps` reports), so no neighbouring release stands in for it."""
    cat = load(engine)
    if cat is None:
        return None
    release = cat.release_for(version) or cat.releases[0]
    for r in cat.formats.get(name, ()):
        if _ver(r.first) <= _ver(release) <= _ver(r.last):
            return FormatFact(name, r.value, release, r.source, r.how)
    return None


def format_facts(engine: str, prefix: str) -> tuple[str, ...]:
    """The names of the catalogued format facts that start with ``prefix`` (``wna16.``)."""
    cat = load(engine)
    return tuple(n for n in (cat.formats if cat else ()) if n.startswith(prefix))


def format_gaps(engine: str, version: Version | None) -> tuple[str, ...]:
    """The format facts with no entry for the release that models ``version``: not read in
    it (a source the generator did not find, a hand-written fact not yet checked there)."""
    cat = load(engine)
    if cat is None or not cat.formats:
        return ()
    return tuple(n for n in cat.formats if format_fact(engine, n, version) is None)


def format_since(engine: str, name: str, holds: Callable[[Any], bool]) -> Version:
    """The first catalogued release from which ``holds(value)`` is true in every release
    after it (``(0, 22)`` for 0.22.0: trailing zeros dropped, so ``version < since``
    compares as a hand-written ``(0, 22)`` did). Raises when it never holds, or stops
    holding again (a threshold cannot say that)."""
    cat = load(engine)
    if cat is None:
        raise LookupError(f"no {engine} catalogue")
    seen = [(r, f.value) for r in cat.releases
            if (f := format_fact(engine, name, _ver(r))) is not None]
    first = next((i for i, (_, v) in enumerate(seen) if holds(v)), None)
    if first is None or not all(holds(v) for _, v in seen[first:]):
        raise LookupError(f"{engine} format fact {name!r} is not a release threshold")
    since = list(_ver(seen[first][0]))
    while len(since) > 2 and since[-1] == 0:
        since.pop()
    return tuple(since)


@dataclass(frozen=True, slots=True)
class Change:
    """What one release changed in the catalogue against the release before it."""

    release: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]  #: architectures whose loader facts differ


def changes(engine: str) -> tuple[Change, ...]:
    """Per release after the first: the architectures it added, removed or loads differently
    (derived from the ranges; the releases at which some model's loading changed are those
    with anything in them)."""
    cat = load(engine)
    if cat is None:
        return ()
    out = []
    for prev, cur in zip(cat.releases, cat.releases[1:], strict=False):
        before = {a: f for a in cat.ranges if (f := _fid_at(cat, prev, a))}
        after = {a: f for a in cat.ranges if (f := _fid_at(cat, cur, a))}
        out.append(Change(
            cur,
            tuple(sorted(after.keys() - before.keys())),
            tuple(sorted(before.keys() - after.keys())),
            tuple(sorted(a for a in after.keys() & before.keys() if after[a] != before[a])),
        ))
    return tuple(out)


def _fid_at(cat: Catalogue, release: str, arch: str) -> str | None:
    for first, last, fid in cat.ranges.get(arch, ()):
        if _ver(first) <= _ver(release) <= _ver(last):
            return fid
    return None


def served(spec: EngineSpec) -> bool:
    """Whether the catalogue covers this engine version (False: no data; behave as before)."""
    cat = load(spec.engine)
    return cat is not None and cat.release_for(spec.version) is not None


def lookup(spec: EngineSpec, arch: str) -> Architecture | None:
    """The architecture as that engine release serves it; None when the release does not
    serve it (or when the catalogue does not cover the engine version: see :func:`served`)."""
    cat = load(spec.engine)
    if cat is None:
        return None
    release = cat.release_for(spec.version)
    if release is None:
        return None
    fid = _fid_at(cat, release, arch)
    return _architecture(cat, arch, release, cat.facts[fid]) if fid is not None else None


def architectures(spec: EngineSpec) -> tuple[Architecture, ...]:
    """Every architecture that engine release serves, sorted by name."""
    cat = load(spec.engine)
    if cat is None or cat.release_for(spec.version) is None:
        return ()
    out = (lookup(spec, a) for a in sorted(cat.ranges))
    return tuple(a for a in out if a is not None)


def _architecture(cat: Catalogue, arch: str, release: str, facts: Mapping[str, Any]
                  ) -> Architecture:
    why = not_plannable_why(cat, release, arch, facts)
    source = f"{facts['module']}.py@{cat.engine}=={release}"
    return Architecture(arch, NOT_PLANNABLE if why else PLANNED, why, source,
                        str(facts.get("kind", "")), facts)


def not_plannable_why(cat: Catalogue, release: str, arch: str, facts: Mapping[str, Any],
                      depth: int = 0) -> str:
    """Why qscale cannot plan this architecture from its facts ("" when it can)."""
    if arch in NOT_PLANNED:
        return NOT_PLANNED[arch]
    if arch in FAMILIES:
        return ""
    unresolved = facts.get("unresolved") or ()
    if unresolved:
        return "; ".join(unresolved)
    if not facts.get("sources"):
        return f"no load_weights found for {facts.get('class')} in {facts.get('module')}.py"
    missing = _unfused_packed(facts)
    if missing and facts.get("language_model") is None:
        return (
            f"{facts.get('class')} fuses {missing} (its packed_modules_mapping), but no"
            " stacked mapping for it was found in its loader code"
        )
    lm = facts.get("language_model")
    if lm is not None:
        inner = lm.get("architectures")
        if not inner:
            if _config_key(lm) is None:
                return (
                    f"its language model ({lm.get('attr')}) is built from"
                    f" `{lm.get('hf_config', 'a config')}`, which qscale does not read"
                )
            return ""  # chosen from the checkpoint's config at check time
        inner_facts = _facts_at(cat, release, inner[0])
        if inner_facts is None:
            return f"its language model {inner[0]} is not in the {cat.engine} registry"
        if depth < 2:
            sub = not_plannable_why(cat, release, inner[0], inner_facts, depth + 1)
            if sub:
                return f"its language model {inner[0]}: {sub}"
    return ""


def _unfused_packed(facts: Mapping[str, Any]) -> str:
    """A fused module the class declares whose parts no extracted stacked entry maps."""
    params = {str(e["param"]).strip(".").rsplit(".", 1)[-1] for e in facts.get("stacked", ())}
    params |= {str(r[1][0]).strip(".").rsplit(".", 1)[-1]
               for r in facts.get("mapper", {}).get("stacked", ())}
    if params:
        return ""  # the loader maps some parts; others may be fused on disk or absent
    for fused, parts in facts.get("packed", {}).items():
        leaf = fused.rsplit(".", 1)[-1]
        if len(parts) > 1 and leaf not in params and leaf not in _FUSED_ON_DISK:
            return f"`{fused}` from {parts}"
    return ""


#: fused modules whose checkpoints store them fused (no stacked entry needed): vLLM's
#: ``packed_modules_mapping`` lists their parts for LoRA only
_FUSED_ON_DISK = frozenset({"experts", "w13", "in_proj", "c_attn", "query_key_value", "Wqkv"})


def _facts_at(cat: Catalogue, release: str, arch: str) -> Mapping[str, Any] | None:
    fid = _fid_at(cat, release, arch)
    return cat.facts[fid] if fid is not None else None


def _config_key(lm: Mapping[str, Any]) -> str | None:
    """The config.json key of the inner text config (``config.text_config`` ->
    ``text_config``; the root config when the wrapper passes none)."""
    expr = str(lm.get("hf_config", "config"))
    if expr.isidentifier() and expr not in ("config", "hf_config"):
        return expr  # a local named after the key: text_config = config.text_config
    if expr.endswith("get_text_config()"):
        return "text_config"  # transformers PretrainedConfig.get_text_config
    for head in ("config.", "self.config.", "self.", "vllm_config.model_config.hf_config."):
        if expr.startswith(head) and expr[len(head):].isidentifier():
            return expr[len(head):]
    if expr in ("config", "hf_config", "self.config"):
        return ""
    return None


def inner_architecture(spec: EngineSpec, arch: Architecture, raw: Mapping[str, Any]
                       ) -> str | None:
    """The language model class a multimodal wrapper builds for this config.json: the
    class the wrapper names, else the text config's ``architectures``, else transformers'
    causal-LM class of its ``model_type`` (vLLM ``VllmConfig.with_hf_config``)."""
    lm = arch.facts.get("language_model")
    if lm is None:
        return None
    if lm.get("architectures"):
        return str(lm["architectures"][0])
    key = _config_key(lm)
    sub = raw if not key else raw.get(key)
    if not isinstance(sub, Mapping):
        return None
    archs = sub.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str) and key:
        return archs[0]
    cat = load(spec.engine)
    release = cat.release_for(spec.version) if cat else None
    mapping = cat.info(release).get("map", {}) if cat else {}
    mt = sub.get("model_type")
    return mapping.get(mt) if isinstance(mt, str) else None


def family(spec: EngineSpec, arch: Architecture, raw: Mapping[str, Any] | None = None
           ) -> Family:
    """The load plan's family for a planned architecture, from its generated facts; for a
    multimodal wrapper, its inner language model's family (the hand-written override where
    one exists, else its facts) composed under the attribute that holds it. Raises QS103
    when the inner language model cannot be told from ``raw`` (config.json)."""
    cat = load(spec.engine)
    assert cat is not None
    release = cat.release_for(spec.version) or cat.releases[-1]
    outer = _family_from(arch.name, arch.facts)
    lm = arch.facts.get("language_model")
    if lm is None:
        return outer
    inner_arch, at = inner_architecture(spec, arch, raw or {}), f"{lm['attr']}."
    if inner_arch is None:
        raise UnknownFormat(
            f"config.json: cannot tell which language model {arch.name} builds: neither"
            f" `{_config_key(lm) or 'the config'}.architectures` nor a known `model_type`",
            hint="vLLM picks it the same way; add the text config's architectures",
            code="QS103",
        )
    if inner_arch != arch.name and lookup(spec, inner_arch) is None:
        raise UnknownFormat(
            f"config.json: {arch.name}'s language model {inner_arch} is not served by"
            f" {spec.label}",
            hint=f"`qscale models --engine {spec.label}` lists what it serves",
            code="QS105",
        )
    inner = FAMILIES.get(inner_arch)
    if inner is None:
        facts = _facts_at(cat, release, inner_arch)
        inner = _family_from(inner_arch, facts) if facts is not None else None
    if inner is None:
        return outer
    return _compose(outer, inner, at)


def _compose(outer: Family, inner: Family, at: str) -> Family:
    """``outer`` with ``inner``'s loader facts placed under the engine-name prefix ``at``."""
    return replace(
        inner,
        name=inner.name if not inner.generated else outer.name,
        architectures=outer.architectures,
        stacked=tuple(replace(st, scope=at + st.scope) for st in inner.stacked)
        + outer.stacked,
        prefix_map=outer.prefix_map + tuple((at + o, at + n) for o, n in inner.prefix_map),
        substr_map=outer.substr_map + inner.substr_map,
        regex_map=outer.regex_map + inner.regex_map,
        code_renames=outer.code_renames + inner.code_renames,
        suffix_map=outer.suffix_map + inner.suffix_map,
        skip_prefixes=outer.skip_prefixes + tuple(at + p for p in inner.skip_prefixes),
        skip_substrings=outer.skip_substrings + inner.skip_substrings,
        never_quantized=tuple(dict.fromkeys(inner.never_quantized + outer.never_quantized)),
        experts=inner.experts or outer.experts,
        draft_layers_from=inner.draft_layers_from or outer.draft_layers_from,
        unquantized_prefixes=outer.unquantized_prefixes + tuple(
            (at + p, m) for p, m in inner.unquantized_prefixes),
        packed={**outer.packed, **inner.packed},
        generated=True,
    )


def _shard(value: Any) -> int | str | tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else value


#: a mapper field -> how a rename to None (a drop) is kept among the skipped fragments
_DROPS = {"regex": "re:", "substr": "", "suffix": "$:"}


def _renames(mapper: Mapping[str, Any]) -> tuple[dict[str, list[tuple[str, str]]], list[str],
                                                list[str]]:
    """A ``WeightsMapper``'s renames per field, and what it drops (prefixes, fragments)."""
    renames: dict[str, list[tuple[str, str]]] = {k: [] for k in ("regex", "substr", "prefix",
                                                                  "suffix")}
    drop_prefixes: list[str] = []
    drop_fragments: list[str] = []
    for key in renames:
        for old, new in mapper.get(key, ()):
            if new is not None:
                renames[key].append((old, new))
            elif key == "prefix":
                drop_prefixes.append(old)
            else:
                drop_fragments.append(_DROPS[key] + old)
    return renames, drop_prefixes, drop_fragments


def _family_from(name: str, facts: Mapping[str, Any]) -> Family:
    """One architecture's generated facts as the load plan's family."""
    mapper = facts.get("mapper", {})
    renames, drop_prefixes, drop_fragments = _renames(mapper)
    stacked = [Stacked(row[1][0], row[0], _shard(row[1][1]), row[2] if len(row) > 2 else "")
               for row in mapper.get("stacked", ())]
    stacked += [Stacked(e["param"], e["weight"], _shard(e["shard"]), e.get("scope", ""))
                for e in facts.get("stacked", ())]
    ex = facts.get("experts")
    experts = (ExpertNames(gate=ex["gate"], down=ex["down"], up=ex["up"]) if ex
               else ExpertNames() if facts.get("moe") else None)
    draft = bool(facts.get("skip_spec_layers") or mapper.get("drop_layers_from"))
    return Family(
        name=f"generated:{name}",
        architectures=(name,),
        stacked=tuple(stacked),
        prefix_map=tuple(renames["prefix"]),
        substr_map=tuple(renames["substr"]),
        regex_map=tuple(renames["regex"]),
        code_renames=tuple((r[0], r[1], r[2]) for r in facts.get("renames", ())),
        suffix_map=tuple(renames["suffix"]),
        skip_prefixes=tuple(dict.fromkeys(drop_prefixes + list(facts.get("skip_prefixes", ())))),
        skip_substrings=tuple(dict.fromkeys(
            drop_fragments + list(facts.get("skip_substrings", ())))),
        experts=experts,
        never_quantized=tuple(dict.fromkeys(
            f".{u.rsplit('.', 1)[-1]}" for u in facts.get("unquantized", ()))),
        draft_layers_from="num_hidden_layers" if draft else None,
        unquantized_prefixes=tuple(
            (f"{p}.", tuple(m)) for p, m in facts.get("unquantized_children", {}).items()),
        packed={**{k.rsplit(".", 1)[-1]: len(v) for k, v in facts.get("packed", {}).items()
                   if len(v) > 1}, **facts.get("fused_layers", {})},
        generated=True,
    )


def family_for(ckpt: Checkpoint, engine: str | EngineSpec | None = None) -> Family:
    """The family the engine's loader applies to the checkpoint's architecture: the
    hand-written override where one exists, else the generated catalogue's facts for that
    engine release. Raises QS105 when the release does not serve the architecture, QS103
    when it does but qscale cannot plan it."""
    from qscale.engines import EngineSpec, parse_engine

    spec = engine if isinstance(engine, EngineSpec) else parse_engine(engine)
    archs = ckpt.config.architectures
    arch = archs[0] if archs else ""
    if served(spec):
        # the engine tries each listed class in its registry, in order
        arch = next((a for a in archs if lookup(spec, a) is not None), arch)
        entry = lookup(spec, arch)
        if entry is None and arch in spec.profile.unsupported_architectures and arch in FAMILIES:
            # a refusal seen in real vLLM (profile data): plan it so QS402 reports it in the
            # engine's words (0.19.1/0.20.0 text-only Qwen3.5-MoE: no `vision_config`)
            return FAMILIES[arch]
        if entry is None:
            raise _not_in_registry(spec, archs or (arch,), ckpt.config.raw)
        fam = FAMILIES.get(arch)
        if fam is not None:
            return fam
        if not entry.planned:
            raise UnknownFormat(
                f"config.json: qscale cannot plan how {release_label(spec)} loads {arch!r}:"
                f" {entry.why}",
                hint=f"read from {entry.source}; `qscale models` lists what qscale plans",
                code="QS103",
            )
        return family(spec, entry, ckpt.config.raw)
    fam = FAMILIES.get(arch)
    if fam is not None and fam.read_from and spec.engine not in fam.read_from:
        raise UnknownFormat(
            f"config.json: qscale models {arch!r} as {', '.join(fam.read_from)} loads it;"
            f" how {spec.label} loads it is not modelled",
            hint=f"check it against {fam.read_from[0]}",
            code="QS103",
        )
    if fam is None:
        raise UnknownFormat(
            f"config.json: architecture {arch!r} has no qscale family for {spec.label}",
            hint=f"known: {', '.join(sorted(FAMILIES))}",
            code="QS103",
        )
    return fam


def release_label(spec: EngineSpec) -> str:
    """``vllm==0.33.0``: the spec's label, or for a bare ``--engine vllm`` the catalogued
    release it resolves to (the spec's own label names a profile range there)."""
    cat = load(spec.engine)
    release = cat.release_for(spec.version) if cat is not None else None
    return f"{spec.engine}=={release}" if release and spec.version is None else spec.label


def transformers_backend(spec: EngineSpec, arch: str, raw: Mapping[str, Any]) -> str | None:
    """Why vLLM's Transformers backend would take an architecture its registry does not
    name (``ModelRegistry._try_resolve_transformers``): transformers has the class, or the
    config's ``auto_map`` names remote code; None when it would not."""
    cat = load(spec.engine)
    info = cat.info(cat.release_for(spec.version)) if cat else {}
    if arch in info.get("previously", {}) or arch in info.get("plugin", {}):
        return None
    if arch in info.get("classes", ()):
        return f"transformers {info.get('transformers', '')} has the class"
    auto_map = raw.get("auto_map")
    if isinstance(auto_map, Mapping) and any(str(k).startswith("AutoModel") for k in auto_map):
        return "its config's auto_map names remote code"
    return None


def refusal(spec: EngineSpec, archs: Sequence[str], raw: Mapping[str, Any]) -> str | None:
    """The engine's own words when it serves none of ``archs`` (it tries each in its
    registry, then its Transformers backend for the first); None when it serves one, or when
    the catalogue does not cover the engine version (qscale cannot tell)."""
    if not archs or not served(spec):
        return None
    if any(lookup(spec, a) is not None for a in archs):
        return None
    if transformers_backend(spec, archs[0], raw) is not None:
        return None
    cat = load(spec.engine)
    info = cat.info(cat.release_for(spec.version)) if cat else {}
    for arch in archs:
        if arch in info.get("previously", {}):
            return (f"Model architecture {arch} was supported in vLLM until"
                    f" v{info['previously'][arch]}, and is not supported anymore.")
        if arch in info.get("plugin", {}):
            return (f"Model architecture {arch} is not supported in-tree anymore. Please"
                    f" install the plugin at {info['plugin'][arch]} if you want to use this"
                    " model architecture.")
    return VLLM_NOT_SERVED.format(archs=list(archs))


def _not_in_registry(spec: EngineSpec, archs: Sequence[str], raw: Mapping[str, Any]
                     ) -> UnknownFormat:
    """No registry class for any of ``archs``: the engine's refusal (QS105), or its
    Transformers backend, which qscale does not plan (QS103)."""
    words = refusal(spec, archs, raw)
    if words is not None:
        return UnknownFormat(
            f"config.json: {release_label(spec)} does not serve architecture"
            f" {archs[0]!r}: {words}",
            hint=f"`qscale models --engine {release_label(spec)}` lists what it serves",
            code="QS105",
        )
    how = transformers_backend(spec, archs[0], raw) or "it has no class of its own"
    return UnknownFormat(
        f"config.json: {release_label(spec)} has no model class of its own for {archs[0]!r}"
        f" and would load it with its Transformers backend ({how}); qscale does not plan"
        " that backend's weight names",
        hint="the checks that need a load plan cannot run (partial check)",
        code="QS103",
    )


def family_or_none(ckpt: Checkpoint, engine: str | EngineSpec | None = None) -> Family | None:
    """:func:`family_for`, or None where it raises (resolution before the plan)."""
    try:
        return family_for(ckpt, engine)
    except UnknownFormat:
        return None




class Since:
    """A release threshold read from the catalogue when first compared (not at import: the
    data file is loaded on the first check that needs it). Compares with version tuples as
    the tuple :func:`format_since` gives: ``version < NVFP4_SINCE``."""

    __slots__ = ("_engine", "_holds", "_name", "_value")

    def __init__(self, engine: str, name: str, holds: Callable[[Any], bool]) -> None:
        self._engine, self._name, self._holds = engine, name, holds
        self._value: Version | None = None

    @property
    def value(self) -> Version:
        """The threshold, ``(0, 22)``."""
        if self._value is None:
            self._value = format_since(self._engine, self._name, self._holds)
        return self._value

    @property
    def fact(self) -> str:
        """The catalogue fact it is read from."""
        return self._name

    def __lt__(self, other: tuple[int, ...]) -> bool:
        return self.value < tuple(other)

    def __le__(self, other: tuple[int, ...]) -> bool:
        return self.value <= tuple(other)

    def __gt__(self, other: tuple[int, ...]) -> bool:
        return self.value > tuple(other)

    def __ge__(self, other: tuple[int, ...]) -> bool:
        return self.value >= tuple(other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple | Since) and self.value == tuple(other)

    def __hash__(self) -> int:
        return hash(self.value)

    def __iter__(self) -> Iterator[int]:
        return iter(self.value)

    def __repr__(self) -> str:
        return f"Since({self._name!r}: {self.value!r})"


def since(engine: str, name: str, holds: Callable[[Any], bool]) -> Since:
    """The first release from which ``holds`` is true of fact ``name`` (:class:`Since`)."""
    return Since(engine, name, holds)
