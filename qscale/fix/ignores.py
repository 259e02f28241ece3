"""find_ignore_mismatches(): ignore/exclude entries the engine matches differently (class 1).

An ignore list is written in one naming space and matched in two: the quantizer (and qscale's
resolution) matches checkpoint module names (``model.language_model.layers.0.mlp.gate``); vLLM
matches its own layer names (``language_model.model.layers.0.mlp.gate``, fused
``…self_attn.qkv_proj``), after renaming *exact* entries through the model's name mapper but
not ``re:`` entries (engine-loader-facts §5.1, §6.1, §6.3). For every entry this module
computes the checkpoint modules it covers in each space and reports the entries where the two
disagree or that cover nothing, with the exact checkpoint names that cover the same modules in
both spaces (vLLM maps exact names, so checkpoint spelling works for it too).

Public so that the class-1 check rule can reuse it; `qscale fix` rewrites the entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from qscale.checkpoint import Checkpoint
from qscale.engines import EngineSpec, parse_engine
from qscale.engines.catalogue import family_for
from qscale.engines.families import Family
from qscale.engines.loader import engine_name, map_tensor
from qscale.formats import QuantMap, resolve_quantization
from qscale.formats._api import equal_or_regex, wildcard
from qscale.formats.compressed_tensors import CompressedTensorsConfig
from qscale.formats.fp8 import Fp8Config
from qscale.formats.modelopt import ModelOptConfig
from qscale.formats.quark import QuarkConfig


class MismatchKind(str, Enum):
    """How an entry misses."""

    UNMATCHED = "unmatched"  #: covers no module in either space (and no rewrite finds one)
    PREFIX_DRIFT = "prefix-drift"  #: covers nothing; the same path under another prefix exists
    FUSED_NAME = "fused-name"  #: names the engine's fused layer; the checkpoint has its shards
    NAME_SPACE = "name-space"  #: covers different modules in the two spaces


@dataclass(frozen=True, slots=True)
class IgnoreMismatch:
    """One entry of the ignore/exclude list that the engine and the checkpoint read apart."""

    file: str  #: the config file holding the list
    key: str  #: the list's key, e.g. "ignore", "exclude", "modules_to_not_convert"
    entry: str
    kind: MismatchKind
    checkpoint_matches: tuple[str, ...]  #: modules it covers, matched on checkpoint names
    engine_matches: tuple[str, ...]  #: modules it covers, matched as the engine matches
    replacement: tuple[str, ...]  #: exact checkpoint names covering the intended modules

    @property
    def message(self) -> str:
        """One line for reports."""
        if self.kind == MismatchKind.UNMATCHED:
            return f"`{self.entry}` in `{self.key}` matches no module"
        new = ", ".join(f"`{r}`" for r in self.replacement[:3])
        more = f" and {len(self.replacement) - 3} more" if len(self.replacement) > 3 else ""
        return (
            f"`{self.entry}` in `{self.key}` covers {len(self.checkpoint_matches)} module(s) by"
            f" checkpoint names and {len(self.engine_matches)} as the engine matches"
            f" ({self.kind.value}); {new}{more} cover them in both"
        )


Matcher = Callable[[str, str], bool]


def _matchers(fmt: object) -> tuple[str, Matcher] | None:
    """The list key and the entry matcher of a format (None: the format has no such list)."""
    if isinstance(fmt, CompressedTensorsConfig):
        return "ignore", equal_or_regex
    if isinstance(fmt, QuarkConfig):
        return "exclude", equal_or_regex
    if isinstance(fmt, Fp8Config):
        return "modules_to_not_convert", lambda n, p: n == p
    if isinstance(fmt, ModelOptConfig):
        return "exclude_modules", wildcard
    return None


def _entries(fmt: object) -> tuple[str, ...]:
    if isinstance(fmt, CompressedTensorsConfig):
        return fmt.ignore
    if isinstance(fmt, QuarkConfig | ModelOptConfig):
        return fmt.exclude
    if isinstance(fmt, Fp8Config):
        return tuple(sorted(fmt.ignored))
    return ()


def _engine_names(fam: Family, spec: EngineSpec, modules: Iterable[str]) -> dict[str, set[str]]:
    """Checkpoint module -> the layer names the engine may match it by (own, fused)."""
    out: dict[str, set[str]] = {}
    for m in modules:
        names = {engine_name(fam, m)}
        if ".experts." not in m:
            names.add(map_tensor(fam, spec, m + ".weight")[0].rpartition(".")[0])
        out[m] = names
    return out


def _drift(entry: str, modules: Iterable[str], fam: Family) -> tuple[str, ...]:
    """Modules with the entry's path under another prefix (the shortest prefix cut that finds
    some; ambiguous hits are narrowed to the family's known checkpoint prefixes)."""
    parts = entry.split(".")
    names = list(modules)
    for k in range(1, len(parts)):
        tail = "." + ".".join(parts[k:])
        hits = [m for m in names if m.endswith(tail)]
        if not hits:
            continue
        known = [m for m in hits if any(m.startswith(p) for p, _ in fam.prefix_map)]
        hits = known or hits
        heads = {m[: -len(tail)] for m in hits}
        return tuple(sorted(hits)) if len(heads) == 1 else ()
    return ()


def find_ignore_mismatches(
    ckpt: Checkpoint, engine: str | EngineSpec | None = None, quant: QuantMap | None = None
) -> list[IgnoreMismatch]:
    """Entries of the quantization config's ignore/exclude list that cover nothing, or that make
    a module ignored in one naming space and not in the other.

    Coverage is compared module by module over the whole list: an entry that covers more in the
    engine's space than by checkpoint names (``in_proj_b`` as a substring of the fused
    ``in_proj_ba``) is reported only when some module ends up ignored in one space only.
    """
    quant = quant or resolve_quantization(ckpt, engine)
    found = _matchers(quant.format)
    if found is None:
        return []
    key, match = found
    key = _list_key(ckpt, quant, key)
    spec = engine if isinstance(engine, EngineSpec) else parse_engine(engine)
    fam = family_for(ckpt)
    modules = list(quant.modules)
    eng = _engine_names(fam, spec, modules)
    by_engine: dict[str, list[str]] = {}
    for m, names in eng.items():
        for n in names:
            by_engine.setdefault(n, []).append(m)
    hits: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    for entry in _entries(quant.format):
        if entry.startswith("re:") or match is wildcard:
            ck = tuple(m for m in modules if match(m, entry))
            en = tuple(m for m in modules if any(match(n, entry) for n in eng[m]))
        else:  # exact entries: vLLM renames them through the model's mapper first
            ck = (entry,) if entry in quant.modules else ()
            en = tuple(sorted(by_engine.get(engine_name(fam, entry), ())))
        hits.append((entry, ck, en))
    by_ckpt = {m for _e, ck, _en in hits for m in ck}
    by_eng = {m for _e, _ck, en in hits for m in en}
    apart = by_ckpt ^ by_eng
    config_key = quant.format.config_key if quant.format else "config.json"
    out = []
    for entry, ck, en in hits:
        if (ck or en) and not (set(ck) ^ set(en)) & apart:
            continue
        kind, new = _classify(entry, ck, en, modules, fam)
        out.append(IgnoreMismatch(config_key, key, entry, kind, ck, en, new))
    return out


def _list_key(ckpt: Checkpoint, quant: QuantMap, key: str) -> str:
    """The spelling the config uses (fp8 and ModelOpt accept two)."""
    qc = ckpt.config.quantization_config or ckpt.extra_configs.get("hf_quant_config.json") or {}
    qc = qc.get("quantization", qc) if isinstance(quant.format, ModelOptConfig) else qc
    for alt in ("ignored_layers", "ignore"):
        if alt in qc and key in ("modules_to_not_convert", "exclude_modules") and key not in qc:
            return alt
    return key


def _classify(
    entry: str, ck: tuple[str, ...], en: tuple[str, ...], modules: list[str], fam: Family
) -> tuple[MismatchKind, tuple[str, ...]]:
    if ck or en:
        own = {engine_name(fam, m) for m in en}
        fused = not ck and not entry.startswith("re:") and engine_name(fam, entry) not in own
        kind = MismatchKind.FUSED_NAME if fused else MismatchKind.NAME_SPACE
        return kind, tuple(sorted(set(ck) | set(en)))
    if entry.startswith("re:"):
        return MismatchKind.UNMATCHED, ()
    drift = _drift(entry, modules, fam)
    return (MismatchKind.PREFIX_DRIFT, drift) if drift else (MismatchKind.UNMATCHED, ())


def ignore_lists(quant: QuantMap) -> Mapping[str, tuple[str, ...]]:
    """The format's ignore/exclude list by key (empty when the format has none)."""
    found = _matchers(quant.format)
    return {found[0]: _entries(quant.format)} if found else {}
