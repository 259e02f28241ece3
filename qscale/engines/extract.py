"""Read an engine release's own source and extract, per architecture, how its loader names
checkpoint tensors: the catalogue's generator (``python -m qscale.engines.generate``).

The source is read as a tree of Python files (a wheel, a folder) with :mod:`ast`; nothing of
the engine is imported, so every release can be read on any machine in seconds. What is
extracted, per registry architecture, following the model class's bases and the children its
``__init__`` builds:

- ``hf_to_vllm_mapper`` (``WeightsMapper``: regex / substring / stacked / prefix / suffix
  renames and drops, in their order);
- every ``stacked_params_mapping``-style list a ``load_weights`` builds (``(param, weight,
  shard_id)`` tuples, with the ``if`` that guards an ``extend``/``append``);
- the expert mapping (``make_expert_params_mapping(ckpt_gate_proj_name=…, …)``);
- what a ``load_weights`` loop skips by name (``if "…" in name: continue``,
  ``name.startswith(…)``, draft/MTP layers through ``get_spec_layer_idx_from_weight_name``);
- modules built with ``quant_config=None`` (routers), and the inner language model that a
  multimodal wrapper builds (``init_vllm_registered_model(architectures=[…])``).

Anything the reader cannot evaluate (a mapping computed at run time, a ``load_weights`` that
rewrites names in code) is recorded as a reason, so the catalogue says *not plannable, because
…* rather than guessing.
"""

from __future__ import annotations

import ast
import contextlib
import io
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

#: registry dicts of vLLM's ``model_executor/models/registry.py`` and the kind they hold
VLLM_REGISTRY_GROUPS = {
    "_TEXT_GENERATION_MODELS": "text",
    "_MULTIMODAL_MODELS": "multimodal",
    "_EMBEDDING_MODELS": "pooling",
    "_LATE_INTERACTION_MODELS": "pooling",
    "_REWARD_MODELS": "pooling",
    "_TOKEN_CLASSIFICATION_MODELS": "pooling",
    "_SEQUENCE_CLASSIFICATION_MODELS": "pooling",
    "_SPECULATIVE_DECODING_MODELS": "draft",
    "_TRANSFORMERS_SUPPORTED_MODELS": "transformers-backend",
    "_TRANSFORMERS_BACKEND_MODELS": "transformers-backend",
}
_VLLM_MODELS_PKG = "vllm.model_executor.models"
_MAPPER_FIELDS = ("regex", "substr", "stacked", "prefix", "suffix")
_EXPERT_KWARGS = {
    "ckpt_gate_proj_name": "gate",
    "ckpt_down_proj_name": "down",
    "ckpt_up_proj_name": "up",
}
_MAX_DEPTH = 4


class SourceTree:
    """The ``.py`` files of a release: a wheel (zip) or a folder holding the package."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._zip = zipfile.ZipFile(root) if root.is_file() else None
        names = (
            self._zip.namelist()
            if self._zip is not None
            else [p.relative_to(root).as_posix() for p in root.rglob("*.py")]
        )
        self._names = names
        self.files = {n for n in names if n.endswith(".py")}
        self._parsed: dict[str, ast.Module | None] = {}

    def all_names(self) -> list[str]:
        """Every file name in the tree (not only ``.py``)."""
        return list(self._names)

    def read(self, path: str) -> str:
        """One file's text."""
        if self._zip is not None:
            with self._zip.open(path) as fh:
                return io.TextIOWrapper(fh, encoding="utf-8").read()
        return (self.root / path).read_text(encoding="utf-8")

    def module_path(self, module: str) -> str | None:
        """``a.b.c`` -> ``a/b/c.py`` or ``a/b/c/__init__.py``."""
        base = module.replace(".", "/")
        for cand in (f"{base}.py", f"{base}/__init__.py"):
            if cand in self.files:
                return cand
        return None

    def parse(self, module: str) -> ast.Module | None:
        """The module's tree (None when it is not in the release or does not parse)."""
        if module not in self._parsed:
            path = self.module_path(module)
            tree = None
            if path is not None:
                try:
                    tree = ast.parse(self.read(path))
                except SyntaxError:
                    tree = None
            self._parsed[module] = tree
        return self._parsed[module]


@dataclass(frozen=True, slots=True)
class ClassRef:
    """A class definition found in a module."""

    module: str
    node: ast.ClassDef

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def where(self) -> str:
        return f"{self.module.replace('.', '/')}.py:{self.node.name}"


@dataclass
class Facts:
    """What one architecture's loader does with names (JSON-ready through :meth:`as_json`)."""

    module: str
    cls: str
    kind: str
    mapper: dict[str, list[list[Any]]] = field(default_factory=dict)
    stacked: list[dict[str, Any]] = field(default_factory=list)
    experts: dict[str, str] | None = None
    skip_substrings: list[str] = field(default_factory=list)
    skip_prefixes: list[str] = field(default_factory=list)
    skip_spec_layers: bool = False
    unquantized: list[str] = field(default_factory=list)
    children: dict[str, str] = field(default_factory=dict)  #: attribute -> class where
    language_model: dict[str, Any] | None = None
    unresolved: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    moe: bool = False
    modules: set[str] = field(default_factory=set)  #: modules whose classes were visited
    #: ``packed_modules_mapping`` of the classes visited: fused module -> its parts
    packed: dict[str, list[str]] = field(default_factory=dict)
    #: child module (engine name) -> quant methods under which it is built unquantized
    unquantized_children: dict[str, list[str]] = field(default_factory=dict)
    #: literal ``name.replace`` renames in loader code: [old, new, guard]
    renames: list[list[str]] = field(default_factory=list)
    #: fused linear layer leaf -> its logical shards (``QKVParallelLinear`` 3, …)
    fused_layers: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"module": self.module, "class": self.cls, "kind": self.kind}
        for key in ("mapper", "stacked", "experts", "skip_substrings", "skip_prefixes",
                    "unquantized", "children", "language_model", "unresolved", "sources",
                    "packed", "unquantized_children", "renames", "fused_layers"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.skip_spec_layers:
            out["skip_spec_layers"] = True
        if self.moe:
            out["moe"] = True
        return out


class Unevaluable(Exception):
    """An expression the reader does not evaluate."""


class Reader:
    """Resolves names, classes and literal values across a release's modules."""

    def __init__(self, tree: SourceTree) -> None:
        self.tree = tree
        #: config class name -> the ``quant_method`` names vLLM maps to it
        self.quant_methods: dict[str, list[str]] = quant_methods(tree)

    # -- names and classes ----------------------------------------------------------------
    def resolve(self, module: str, name: str, depth: int = 0) -> tuple[str, ast.AST] | None:
        """Where ``name`` (as seen in ``module``) is defined: (module, node)."""
        if depth > 8:
            return None
        tree = self.tree.parse(module)
        if tree is None:
            return None
        for node in _top_level(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
                return module, node
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                if isinstance(node.value, ast.Name) and node.value.id != name:
                    return self.resolve(module, node.value.id, depth + 1)
                return module, node
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        target = _absolute(module, node, self.tree)
                        if target is None:
                            return None
                        sub = f"{target}.{alias.name}"
                        if self.tree.module_path(sub) is not None:
                            return sub, self.tree.parse(sub) or ast.Module(body=[], type_ignores=[])
                        return self.resolve(target, alias.name, depth + 1)
        return None

    def class_ref(self, module: str, name: str) -> ClassRef | None:
        found = self.resolve(module, name)
        if found is not None and isinstance(found[1], ast.ClassDef):
            return ClassRef(found[0], found[1])
        return None

    def bases(self, ref: ClassRef) -> list[ClassRef]:
        out = []
        for b in ref.node.bases:
            name = _dotted(b)
            if name is None:
                continue
            head, _, tail = name.rpartition(".")
            found = self.class_ref(ref.module, tail) if not head else None
            if found is None and head:
                mod = self.resolve(ref.module, head.split(".")[0])
                if mod is not None and isinstance(mod[1], ast.Module):
                    found = self.class_ref(mod[0], tail)
            if found is not None:
                out.append(found)
        return out

    def mro(self, ref: ClassRef) -> list[ClassRef]:
        """The class and its resolvable bases, depth first, left to right, each once."""
        seen: list[ClassRef] = []
        stack = [ref]
        while stack:
            cur = stack.pop(0)
            if any(c.module == cur.module and c.name == cur.name for c in seen):
                continue
            seen.append(cur)
            stack = self.bases(cur) + stack
        return seen

    def attribute(self, ref: ClassRef, attr: str) -> tuple[ClassRef, ast.AST] | None:
        """The first class in the MRO that defines ``attr`` (method or class attribute)."""
        for cls in self.mro(ref):
            for node in cls.node.body:
                if isinstance(node, ast.FunctionDef) and node.name == attr:
                    return cls, node
                if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
                        return cls, node.value
        return None

    def function_env(self, module: str, fn: ast.FunctionDef,
                     args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The literal locals of a function body, run top to bottom (``x = …``, ``x |= …``,
        ``x.update(…)``); a local that is not literal keeps its expression, for mappers."""
        env: dict[str, Any] = dict(args or {})
        for node in self._run_ifs(module, fn.body, env):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        try:
                            env[t.id] = self.literal(module, node.value, env)
                        except (Unevaluable, TypeError, ValueError):
                            env[t.id] = node.value
            elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
                  and isinstance(node.op, ast.BitOr | ast.Add)):
                cur = env.get(node.target.id)
                try:
                    extra = self.literal(module, node.value, env)
                    if isinstance(cur, dict) and isinstance(extra, dict):
                        env[node.target.id] = {**cur, **extra}
                    elif isinstance(cur, list) and isinstance(extra, list):
                        env[node.target.id] = cur + extra
                except (Unevaluable, TypeError, ValueError):
                    env[node.target.id] = node
        return env

    def _run_ifs(self, module: str, body: list[ast.stmt], env: dict[str, Any]
                 ) -> Iterator[ast.stmt]:
        """``body``'s statements, each ``if`` whose test compares literals (a function's
        literal argument: ``if expert_dtype == "fp4":``) replaced by the branch it takes;
        ``env`` is read as the caller fills it, statement by statement."""
        for node in body:
            if isinstance(node, ast.If):
                taken = self._test(module, node.test, env)
                if taken is not None:
                    yield from self._run_ifs(module, node.body if taken else node.orelse, env)
                    continue
            yield node

    def _test(self, module: str, test: ast.expr, env: Mapping[str, Any]) -> bool | None:
        """A comparison of two literals (``==``, ``!=``, ``in``, ``not in``), or None."""
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            return None
        try:
            left = self.literal(module, test.left, env)
            right = self.literal(module, test.comparators[0], env)
        except Unevaluable:
            return None
        op = test.ops[0]
        try:
            if isinstance(op, ast.Eq):
                return bool(left == right)
            if isinstance(op, ast.NotEq):
                return bool(left != right)
            if isinstance(op, ast.In):
                return left in right
            if isinstance(op, ast.NotIn):
                return left not in right
        except TypeError:
            return None
        return None

    def _call_mapper(self, ref: ClassRef, call: ast.Call, depth: int,
                     env: Mapping[str, Any]) -> dict[str, list[list[Any]]]:
        """A module function that returns a ``WeightsMapper``, run on literal arguments."""
        assert isinstance(call.func, ast.Name)
        found = self.resolve(ref.module, call.func.id)
        if found is None or not isinstance(found[1], ast.FunctionDef):
            raise Unevaluable(ast.unparse(call)[:80])
        module, fn = found[0], found[1]
        params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
        args: dict[str, Any] = {}
        for name, value in _param_defaults(fn).items():
            with contextlib.suppress(Unevaluable):
                args[name] = self.literal(module, value)
        for name, value in zip(params, call.args, strict=False):
            args[name] = self.literal(ref.module, value, env)  # Unevaluable: config-dependent
        for kw in call.keywords:
            if kw.arg:
                args[kw.arg] = self.literal(ref.module, kw.value, env)
        local = self.function_env(module, fn, args)
        returns = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value]
        if len(returns) != 1:
            raise Unevaluable(f"{fn.name}() has {len(returns)} return statements")
        return self.mapper(ClassRef(module, ref.node), returns[0], depth + 1, local)

    def instance_attribute(self, ref: ClassRef, attr: str
                           ) -> tuple[ClassRef, ast.expr, ast.FunctionDef] | None:
        """``self.<attr> = …`` in the first ``__init__`` of the MRO that assigns it."""
        for cls in self.mro(ref):
            for fn in cls.node.body:
                if not (isinstance(fn, ast.FunctionDef) and fn.name == "__init__"):
                    continue
                for node in ast.walk(fn):
                    if (isinstance(node, ast.Assign) and len(node.targets) == 1
                            and isinstance(node.targets[0], ast.Attribute)
                            and _dotted(node.targets[0].value) == "self"
                            and node.targets[0].attr == attr):
                        return cls, node.value, fn
        return None

    # -- values ---------------------------------------------------------------------------
    def literal(self, module: str, node: ast.AST, env: Mapping[str, Any] | None = None) -> Any:
        """A literal value (str, number, None, list, dict) of an expression: constants,
        displays, names bound to literals (module constants, ``env``), f-strings, ``+``,
        comprehensions over literals, ``re.compile``, ``dict.fromkeys``, ``range``, ``.items()``.
        Anything else raises :class:`Unevaluable`."""
        env = env or {}
        handler = _LITERAL.get(type(node))
        if handler is None:
            raise Unevaluable(ast.unparse(node)[:80])
        return handler(self, module, node, env)

    def _lit_constant(self, module: str, node: ast.Constant, env: Mapping[str, Any]) -> Any:
        return node.value

    def _lit_sequence(self, module: str, node: ast.Tuple | ast.List,
                      env: Mapping[str, Any]) -> Any:
        return [self.literal(module, e, env) for e in node.elts]

    def _lit_dict(self, module: str, node: ast.Dict, env: Mapping[str, Any]) -> Any:
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                out.update(self.literal(module, v, env))
            else:
                out[self.literal(module, k, env)] = self.literal(module, v, env)
        return out

    def _lit_name(self, module: str, node: ast.Name, env: Mapping[str, Any]) -> Any:
        if node.id in env:
            if isinstance(env[node.id], ast.AST):
                raise Unevaluable(node.id)
            return env[node.id]
        found = self.resolve(module, node.id)
        if found is not None and isinstance(found[1], ast.Assign):
            return self.literal(found[0], found[1].value)
        raise Unevaluable(node.id)

    def _lit_binop(self, module: str, node: ast.BinOp, env: Mapping[str, Any]) -> Any:
        if not isinstance(node.op, ast.Add):
            raise Unevaluable(ast.unparse(node)[:80])
        return self.literal(module, node.left, env) + self.literal(module, node.right, env)

    def _lit_fstring(self, module: str, node: ast.JoinedStr, env: Mapping[str, Any]) -> Any:
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and v.format_spec is None:
                parts.append(str(self.literal(module, v.value, env)))
            else:
                raise Unevaluable(ast.unparse(node)[:80])
        return "".join(parts)

    def _lit_call(self, module: str, node: ast.Call, env: Mapping[str, Any]) -> Any:
        name = _dotted(node.func)
        args = node.args
        if name in ("re.compile", "regex.compile") and args:
            return self.literal(module, args[0], env)
        if name == "dict.fromkeys" and args:
            value = self.literal(module, args[1], env) if len(args) > 1 else None
            return dict.fromkeys(self.literal(module, args[0], env), value)
        if name == "range":
            return list(range(*(self.literal(module, a, env) for a in args)))
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("items", "keys", "values"):
            src = self.literal(module, func.value, env)
            if isinstance(src, dict) and not args:
                if func.attr == "items":
                    return [list(kv) for kv in src.items()]
                return list(src.keys() if func.attr == "keys" else src.values())
        raise Unevaluable(ast.unparse(node)[:80])

    def _comprehension(self, module: str, node: ast.DictComp | ast.ListComp,
                       env: Mapping[str, Any]) -> Any:
        """``{k: v for a, b in X}`` / ``[e for a in X]`` over a literal iterable."""
        if len(node.generators) != 1 or node.generators[0].ifs:
            raise Unevaluable(ast.unparse(node)[:80])
        gen = node.generators[0]
        items = self.literal(module, gen.iter, env)
        out_d: dict[Any, Any] = {}
        out_l: list[Any] = []
        for item in items:
            local = dict(env)
            if isinstance(gen.target, ast.Name):
                local[gen.target.id] = item
            elif isinstance(gen.target, ast.Tuple) and all(
                    isinstance(e, ast.Name) for e in gen.target.elts):
                for e, v in zip(gen.target.elts, item, strict=True):
                    local[e.id] = v  # type: ignore[attr-defined]
            else:
                raise Unevaluable(ast.unparse(node)[:80])
            if isinstance(node, ast.DictComp):
                out_d[self.literal(module, node.key, local)] = self.literal(
                    module, node.value, local)
            else:
                out_l.append(self.literal(module, node.elt, local))
        return out_d if isinstance(node, ast.DictComp) else out_l

    def mapper(self, ref: ClassRef, node: ast.AST, depth: int = 0,
               env: Mapping[str, Any] | None = None) -> dict[str, list[list[Any]]]:
        """A ``WeightsMapper`` expression as ordered ``[old, new]`` lists per field; ``env``
        holds the literal locals of the function the expression stands in."""
        env = env or {}
        if depth > 6:
            raise Unevaluable("mapper chain too deep")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left = self.mapper(ref, node.left, depth + 1, env)
            right = self.mapper(ref, node.right, depth + 1, env)
            return _merge_mappers(left, right)
        if isinstance(node, ast.Constant) and node.value is None:
            return {}
        if isinstance(node, ast.Call):
            if (_dotted(node.func) or "").endswith("WeightsMapper"):
                return self._mapper_call(ref, node, env)
            if isinstance(node.func, ast.Name):
                return self._call_mapper(ref, node, depth, env)
        if isinstance(node, ast.Attribute) and node.attr == "hf_to_vllm_mapper":
            return self._mapper_attribute(ref, node, depth)
        if isinstance(node, ast.Name):
            if isinstance(env.get(node.id), ast.AST):
                return self.mapper(ref, env[node.id], depth + 1, env)
            found = self.resolve(ref.module, node.id)
            if found is not None and isinstance(found[1], ast.Assign):
                return self.mapper(ClassRef(found[0], ref.node), found[1].value, depth + 1)
        raise Unevaluable(ast.unparse(node)[:80])

    def _mapper_call(self, ref: ClassRef, node: ast.Call, env: Mapping[str, Any]
                     ) -> dict[str, list[list[Any]]]:
        """``WeightsMapper(orig_to_new_<field>={…}, …)``."""
        out: dict[str, list[list[Any]]] = {}
        for kw in node.keywords:
            if kw.arg is None or not kw.arg.startswith("orig_to_new_"):
                continue
            key = kw.arg[len("orig_to_new_"):]
            if key == "renaming":
                raise Unevaluable("WeightsMapper(orig_to_new_renaming=…)")
            if _drops_draft_layers(kw.value):
                out["drop_layers_from"] = [["num_hidden_layers", None]]
                continue
            value = self.literal(ref.module, kw.value, env)
            if not isinstance(value, dict):
                raise Unevaluable(kw.arg)
            out[key] = [[k, v] for k, v in value.items()]
        return out

    def _mapper_attribute(self, ref: ClassRef, node: ast.Attribute, depth: int
                          ) -> dict[str, list[list[Any]]]:
        """``self.hf_to_vllm_mapper`` / ``Other.hf_to_vllm_mapper``: the class attribute, else
        the one ``__init__`` assigns; none at all is the empty mapper."""
        owner = _dotted(node.value)
        target: ClassRef | None = ref
        if owner and owner not in ("self", "cls"):
            target = self.class_ref(ref.module, owner.split(".")[-1])
        if target is None:
            raise Unevaluable(f"{owner}.hf_to_vllm_mapper")
        found = self.attribute(target, "hf_to_vllm_mapper")
        if found is not None:
            return self.mapper(found[0], found[1], depth + 1)
        assigned = self.instance_attribute(target, "hf_to_vllm_mapper")
        if assigned is not None:
            cls, value, fn = assigned
            return self.mapper(cls, value, depth + 1, self.function_env(cls.module, fn))
        return {}


_LITERAL: dict[type, Any] = {
    ast.Constant: Reader._lit_constant,
    ast.Tuple: Reader._lit_sequence,
    ast.List: Reader._lit_sequence,
    ast.Dict: Reader._lit_dict,
    ast.Name: Reader._lit_name,
    ast.BinOp: Reader._lit_binop,
    ast.JoinedStr: Reader._lit_fstring,
    ast.Call: Reader._lit_call,
    ast.DictComp: lambda r, m, n, e: r._comprehension(m, n, e),
    ast.ListComp: lambda r, m, n, e: r._comprehension(m, n, e),
}


def _drops_draft_layers(node: ast.expr) -> bool:
    """``{f"model.layers.{config.num_hidden_layers + i}.": None for i in …}``: the mapper
    drops the draft (MTP) layers past ``num_hidden_layers``."""
    return (
        isinstance(node, ast.DictComp)
        and isinstance(node.value, ast.Constant) and node.value.value is None
        and "num_hidden_layers" in ast.unparse(node.key)
        and "layers." in ast.unparse(node.key)
    )


def _merge_mappers(a: dict[str, list[list[Any]]], b: dict[str, list[list[Any]]]
                   ) -> dict[str, list[list[Any]]]:
    """``a | b``: dict union per field (b's value wins, a's order kept)."""
    out: dict[str, list[list[Any]]] = {}
    for key in (*_MAPPER_FIELDS, "drop_layers_from"):
        merged = dict(a.get(key, []))
        merged.update(dict(b.get(key, [])))
        if merged:
            out[key] = [[k, v] for k, v in merged.items()]
    return out


def _top_level(tree: ast.Module) -> Iterator[ast.stmt]:
    """Top-level statements, including those under ``if``/``elif``/``else`` (TYPE_CHECKING
    guards) and ``try``. A platform dispatch (``if current_platform.is_rocm(): … else: …``)
    yields its final ``else`` first: the CUDA default, the class a CUDA user gets
    (``vllm/models/deepseek_v4/__init__.py``: "The NVIDIA branch is the static default")."""
    for node in tree.body:
        yield node
        if isinstance(node, ast.If):
            yield from _branches(node)
        elif isinstance(node, ast.Try):
            yield from node.body
            for h in node.handlers:
                yield from h.body


def _branches(node: ast.If) -> Iterator[ast.stmt]:
    """The statements of an ``if``/``elif``/``else`` chain; for a platform dispatch, the
    branch CUDA takes first."""
    bodies: list[list[ast.stmt]] = []
    tests: list[ast.expr] = []
    cur = node
    while True:
        tests.append(cur.test)
        bodies.append(cur.body)
        if len(cur.orelse) == 1 and isinstance(cur.orelse[0], ast.If):
            cur = cur.orelse[0]
            continue
        bodies.append(cur.orelse)
        break
    if any("current_platform" in ast.unparse(t) for t in tests):
        taken = len(tests)  # the else, unless a test holds on CUDA
        for i, t in enumerate(tests):
            on_cuda = _on_cuda(t)
            if on_cuda is None:
                taken = -1  # a test qscale cannot decide: keep the source order
                break
            if on_cuda:
                taken = i
                break
        if taken >= 0:
            bodies = [bodies[taken], *bodies[:taken], *bodies[taken + 1:]]
    for body in bodies:
        yield from body


#: ``current_platform`` predicates that hold on CUDA
_CUDA_PREDICATES = frozenset({"is_cuda", "is_cuda_alike"})


def _on_cuda(test: ast.expr) -> bool | None:
    """Whether a platform test holds on CUDA (``TYPE_CHECKING`` false), or None."""
    if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
        return False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        inner = _on_cuda(test.operand)
        return None if inner is None else not inner
    if isinstance(test, ast.BoolOp):
        values = [_on_cuda(v) for v in test.values]
        if None in values:
            return None
        return any(values) if isinstance(test.op, ast.Or) else all(values)
    if (isinstance(test, ast.Call) and not test.args and isinstance(test.func, ast.Attribute)
            and _dotted(test.func.value) == "current_platform"
            and test.func.attr.startswith("is_")):
        return test.func.attr in _CUDA_PREDICATES
    return None


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    if isinstance(node, ast.Subscript):
        return _dotted(node.value)
    return None


def _absolute(module: str, node: ast.ImportFrom, tree: SourceTree) -> str | None:
    if node.level == 0:
        return node.module
    is_pkg = (tree.module_path(module) or "").endswith("__init__.py")
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_pkg else 0)
    if keep <= 0:
        return None
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


# -- load_weights ---------------------------------------------------------------------------


def _walk_with_guard(body: list[ast.stmt], guard: str | None = None
                     ) -> Iterator[tuple[ast.stmt, str | None]]:
    """Statements of a function, each with the ``if`` test that guards it (innermost)."""
    for node in body:
        yield node, guard
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            yield from _walk_with_guard(node.body, test)
            yield from _walk_with_guard(node.orelse, f"not ({test})")
        elif isinstance(node, ast.For | ast.While | ast.With | ast.Try):
            inner = list(node.body)
            if isinstance(node, ast.Try):
                for h in node.handlers:
                    inner += h.body
                inner += node.finalbody
            if isinstance(node, ast.For | ast.While):
                inner += node.orelse
            yield from _walk_with_guard(inner, guard)


def _own_nodes(node: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of one statement without the statements nested in it (those are visited on
    their own): an ``if``'s test, a ``for``'s iterable, a simple statement whole."""
    if isinstance(node, ast.If | ast.While):
        yield from ast.walk(node.test)
    elif isinstance(node, ast.For):
        yield from ast.walk(node.iter)
    elif isinstance(node, ast.With):
        for item in node.items:
            yield from ast.walk(item.context_expr)
    elif not isinstance(node, ast.Try | ast.FunctionDef | ast.ClassDef):
        yield from ast.walk(node)


_STACKED_NAMES = ("stacked", "params_mapping", "mla_", "mha_", "fused_mapping", "_mapping")


def _is_mapping_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(t, list) and len(t) == 3 and isinstance(t[0], str)
            and isinstance(t[1], str) and isinstance(t[2], int | str | list)
            for t in value
        )
    )


class LoadWeights:
    """Facts of one ``load_weights`` (and the helpers it calls on ``self``)."""

    def __init__(self, reader: Reader, cls: ClassRef, fn: ast.FunctionDef) -> None:
        self.reader = reader
        self.cls = cls
        self.fn = fn
        # file and qualified name, no line number: equal facts in two releases stay equal
        self.where = f"{cls.module.replace('.', '/')}.py:{cls.name}.{fn.name}"
        self.stacked: list[dict[str, Any]] = []
        self.experts: dict[str, str] | None = None
        self.skip_substrings: list[str] = []
        self.skip_prefixes: list[str] = []
        self.skip_spec_layers = False
        self.auto_loader = False
        self.mapper_expr: ast.AST | None = None
        self.delegates: list[str] = []  #: self.<attr>.load_weights(...)
        self.unresolved: list[str] = []
        #: ``if "<guard>" in name: name = name.replace("<old>", "<new>")`` -> [old, new, guard]
        self.renames: list[list[str]] = []
        self._read()
        for helper in self._weight_helpers():
            self.renames += [r for r in _guarded_renames(helper) if r not in self.renames]

    def _read(self) -> None:
        lists: dict[str, list[Any]] = {}
        used_lists: list[tuple[str, str | None]] = []
        for node, guard in _walk_with_guard(self.fn.body):
            self._assignments(node, guard, lists, used_lists)
            for sub in _own_nodes(node):
                self._calls(sub)
            self._skips(node)
        for name, guard in used_lists:
            for t in lists.get(name, []):
                self._add_stacked(t, guard)
        if not self.stacked:
            # mappings held in class attributes or module constants and iterated directly
            for loop in ast.walk(self.fn):
                if isinstance(loop, ast.For) and isinstance(loop.iter, ast.Name | ast.Attribute):
                    try:
                        value = self._value(loop.iter)
                    except Unevaluable:
                        continue
                    if _is_mapping_list(value):
                        for t in value:
                            self._add_stacked(t, None)

    def _weight_helpers(self) -> list[ast.FunctionDef]:
        """This function and the methods of the class it hands the weights to
        (``self._preprocess(weights)``), one level deep."""
        out = [self.fn]
        for node in ast.walk(self.fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and _dotted(node.func.value) == "self" and node.args
                    and _dotted(node.args[0]) == "weights"):
                found = self.reader.attribute(self.cls, node.func.attr)
                if found is not None and isinstance(found[1], ast.FunctionDef):
                    out.append(found[1])
        return out

    def _local(self, node: ast.expr) -> ast.expr:
        """A name assigned once in this function: the expression assigned to it."""
        if not isinstance(node, ast.Name):
            return node
        values = [
            n.value for n in ast.walk(self.fn)
            if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and n.targets[0].id == node.id
        ]
        return values[0] if len(values) == 1 else node

    def _value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Attribute) and _dotted(node.value) == "self":
            found = self.reader.attribute(self.cls, node.attr)
            if found is None:
                raise Unevaluable(ast.unparse(node))
            return self.reader.literal(found[0].module, found[1])
        return self.reader.literal(self.cls.module, node)

    def _add_stacked(self, t: list[Any], guard: str | None) -> None:
        shard = t[2]
        entry: dict[str, Any] = {"param": t[0], "weight": t[1], "shard": shard}
        if guard:
            entry["if"] = guard
        if entry not in self.stacked:
            self.stacked.append(entry)

    def _assignments(self, node: ast.stmt, guard: str | None, lists: dict[str, list[Any]],
                     used: list[tuple[str, str | None]]) -> None:
        """Mapping lists built in this function: ``x = [...]``, ``x += [...]``,
        ``x.extend([...])`` / ``x.append((...))``, each with its guard."""
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    self._assign(t.id, node.value, guard, lists, used)
        elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
              and node.target.id in lists):
            self._grow(node.target.id, "+=", node.value, guard, lists)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id in lists and func.attr in ("extend", "append")
                    and node.value.args):
                self._grow(func.value.id, func.attr, node.value.args[0], guard, lists)

    def _assign(self, name: str, value_node: ast.expr, guard: str | None,
                lists: dict[str, list[Any]], used: list[tuple[str, str | None]]) -> None:
        try:
            value = self._value(value_node)
        except Unevaluable:
            if isinstance(value_node, ast.List) and "stacked" in name:
                self.unresolved.append(f"`{name}` is built at run time ({self.where})")
            return
        if _is_mapping_list(value) or (value == [] and "stacked" in name):
            lists[name] = value
            if "stacked" in name:
                used.append((name, guard))

    def _grow(self, name: str, how: str, arg: ast.expr, guard: str | None,
              lists: dict[str, list[Any]]) -> None:
        try:
            value = self._value(arg)
        except Unevaluable:
            if isinstance(arg, ast.Name) and arg.id in lists:
                value = lists[arg.id]
            else:
                self.unresolved.append(f"`{name}` {how} a run-time value ({self.where})")
                return
        items = [value] if how == "append" else value
        if _is_mapping_list(items):
            for t in items:
                self._add_stacked(t, guard)

    def _calls(self, node: ast.AST) -> None:
        if not isinstance(node, ast.Call):
            return
        name = _dotted(node.func) or ""
        tail = node.func.attr if isinstance(node.func, ast.Attribute) else name
        handler = _CALLS.get(tail)
        if handler is not None:
            handler(self, node)

    def _auto_loader(self, node: ast.Call) -> None:
        self.auto_loader = True
        for kw in node.keywords:
            if kw.arg not in ("skip_prefixes", "skip_substrs"):
                continue
            try:
                vals = self._value(kw.value)
            except Unevaluable:
                self.unresolved.append(f"AutoWeightsLoader({kw.arg}=run-time value)"
                                       f" ({self.where})")
                continue
            into = self.skip_prefixes if kw.arg == "skip_prefixes" else self.skip_substrings
            into += [v for v in (vals if isinstance(vals, list) else [vals]) if isinstance(v, str)]

    def _load_weights_call(self, node: ast.Call) -> None:
        if not isinstance(node.func, ast.Attribute):
            return
        owner = _dotted(node.func.value) or ""
        for kw in node.keywords:
            if kw.arg == "mapper":
                self.mapper_expr = self._local(kw.value)
        if owner.startswith("self.") and owner.count(".") == 1:
            self.delegates.append(owner[5:])

    def _expert_mapping(self, node: ast.Call) -> None:
        names: dict[str, str] = {}
        for kw in node.keywords:
            role = _EXPERT_KWARGS.get(kw.arg or "")
            if role is None:
                continue
            try:
                names[role] = self._value(kw.value)
            except Unevaluable:
                self.unresolved.append(
                    f"expert names from a run-time value `{ast.unparse(kw.value)}`"
                    f" ({self.where})")
        if len(names) == 3 and all(isinstance(v, str) for v in names.values()):
            self.experts = names

    def _get_expert_mapping(self, node: ast.Call) -> None:
        if _dotted(node.func) != "self.get_expert_mapping":
            return
        found = self.reader.attribute(self.cls, "get_expert_mapping")
        if found is not None and isinstance(found[1], ast.FunctionDef):
            sub = LoadWeights(self.reader, found[0], found[1])
            self.experts = sub.experts
            self.unresolved += sub.unresolved

    def _spec_layers(self, node: ast.Call) -> None:
        self.skip_spec_layers = True

    def _skips(self, node: ast.stmt) -> None:
        for sub in ast.walk(node):
            if not isinstance(sub, ast.If):
                continue
            if not (len(sub.body) == 1 and isinstance(sub.body[0], ast.Continue)):
                continue
            for test in _or_terms(sub.test):
                if (isinstance(test, ast.Compare) and len(test.ops) == 1
                        and isinstance(test.ops[0], ast.In)
                        and isinstance(test.left, ast.Constant)
                        and isinstance(test.left.value, str)
                        and _dotted(test.comparators[0]) == "name"):
                    if test.left.value not in self.skip_substrings:
                        self.skip_substrings.append(test.left.value)
                elif (isinstance(test, ast.Call) and isinstance(test.func, ast.Attribute)
                      and test.func.attr == "startswith" and _dotted(test.func.value) == "name"
                      and test.args):
                    try:
                        v = self._value(test.args[0])
                    except Unevaluable:
                        continue
                    for p in v if isinstance(v, list) else [v]:
                        if isinstance(p, str) and p not in self.skip_prefixes:
                            self.skip_prefixes.append(p)


_CALLS: dict[str, Any] = {
    "AutoWeightsLoader": LoadWeights._auto_loader,
    "load_weights": LoadWeights._load_weights_call,
    "make_expert_params_mapping": LoadWeights._expert_mapping,
    "fused_moe_make_expert_params_mapping": LoadWeights._expert_mapping,
    "get_expert_mapping": LoadWeights._get_expert_mapping,
    "get_spec_layer_idx_from_weight_name": LoadWeights._spec_layers,
    "skip_spec_layers": LoadWeights._spec_layers,
}


def _guarded_renames(fn: ast.FunctionDef) -> list[list[str]]:
    """``name = name.replace("a", "b")`` with literal arguments, each with the ``"g" in name``
    test that guards it ("" when none)."""
    out: list[list[str]] = []

    def visit(body: list[ast.stmt], guard: str) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = node.test
                inner = guard
                if (isinstance(test, ast.Compare) and len(test.ops) == 1
                        and isinstance(test.ops[0], ast.In)
                        and isinstance(test.left, ast.Constant)
                        and isinstance(test.left.value, str)
                        and _dotted(test.comparators[0]) == "name"):
                    inner = test.left.value
                visit(node.body, inner)
            elif isinstance(node, ast.For | ast.While | ast.With):
                visit(node.body, guard)
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1
                  and _dotted(node.targets[0]) == "name" and isinstance(node.value, ast.Call)
                  and isinstance(node.value.func, ast.Attribute)
                  and node.value.func.attr == "replace"
                  and _dotted(node.value.func.value) == "name"
                  and len(node.value.args) == 2
                  and all(isinstance(a, ast.Constant) and isinstance(a.value, str)
                          for a in node.value.args)):
                old, new = (a.value for a in node.value.args)  # type: ignore[attr-defined]
                out.append([old, new, guard])

    visit(fn.body, "")
    return out


def _or_terms(test: ast.expr) -> list[ast.expr]:
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        return [t for v in test.values for t in _or_terms(v)]
    return [test]


# -- composition ----------------------------------------------------------------------------


Child = tuple["ClassRef | None", dict[str, Any]]


def _init_children(reader: Reader, ref: ClassRef) -> dict[str, Child]:
    """``self.<attr> = Cls(…)`` in ``__init__`` (first definition in the MRO and the bases'
    own ``__init__`` that it calls): attribute -> (class, call facts)."""
    out: dict[str, Child] = {}
    for cls in reader.mro(ref):
        init = next((n for n in cls.node.body
                     if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None:
            continue
        defaults = _param_defaults(init)
        for node in ast.walk(init):
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                targets: list[ast.expr] = [node.target]
            elif isinstance(node, ast.Assign):
                targets = node.targets
            else:
                continue
            for t in targets:
                if not (isinstance(t, ast.Attribute) and _dotted(t.value) == "self"):
                    continue
                if t.attr in out:
                    continue
                value = node.value
                if isinstance(value, ast.Call):
                    out[t.attr] = _child_of_call(reader, cls, value, defaults)
    return out


def _param_defaults(fn: ast.FunctionDef) -> dict[str, ast.expr]:
    args = fn.args
    out: dict[str, ast.expr] = {}
    pos = args.posonlyargs + args.args
    for a, d in zip(pos[len(pos) - len(args.defaults):], args.defaults, strict=True):
        out[a.arg] = d
    for a, kd in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if kd is not None:
            out[a.arg] = kd
    return out


def _child_of_call(reader: Reader, cls: ClassRef, call: ast.Call,
                   defaults: Mapping[str, ast.expr]) -> tuple[ClassRef | None, dict[str, Any]]:
    name = _dotted(call.func) or ""
    tail = name.rsplit(".", 1)[-1]
    facts: dict[str, Any] = {}
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    if "quant_config" in kw:
        unq = _unquantized_under(reader, cls, kw["quant_config"])
        if unq is not None:
            facts["unquantized_under"] = unq
    if tail == "init_vllm_registered_model":
        facts["registered"] = True
        if "architectures" in kw:
            try:
                facts["architectures"] = reader.literal(cls.module, kw["architectures"])
            except Unevaluable:
                facts["architectures_expr"] = ast.unparse(kw["architectures"])
        if "hf_config" in kw:
            facts["hf_config"] = ast.unparse(kw["hf_config"])
        return None, facts
    if isinstance(call.func, ast.Attribute) and _dotted(call.func.value) == "self":
        return _child_of_method(reader, cls, call.func.attr, defaults), facts
    if name in defaults:
        target = _dotted(defaults[name])
        if target:
            return reader.class_ref(cls.module, target.split(".")[-1]), facts
    if tail and tail[0].isupper():
        return reader.class_ref(cls.module, tail), facts
    return None, facts


def _unquantized_under(reader: Reader, cls: ClassRef, node: ast.expr) -> list[str] | None:
    """The quantization methods under which a child is built with no quantization config:
    ``["*"]`` for ``quant_config=None``; for ``self._maybe_ignore_quant_config(quant_config)``,
    the methods of the config classes for which that method returns None (vLLM's
    ``method_to_config`` names them)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return ["*"]
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and _dotted(node.func.value) == "self"):
        return None
    found = reader.attribute(cls, node.func.attr)
    if found is None or not isinstance(found[1], ast.FunctionDef):
        return None
    classes: list[str] = []
    for sub in ast.walk(found[1]):
        if (isinstance(sub, ast.If) and isinstance(sub.test, ast.Call)
                and _dotted(sub.test.func) == "isinstance" and len(sub.test.args) == 2
                and any(isinstance(b, ast.Return) and isinstance(b.value, ast.Constant)
                        and b.value.value is None for b in sub.body)):
            kinds = sub.test.args[1]
            elts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
            classes += [(_dotted(e) or "").rsplit(".", 1)[-1] for e in elts]
    methods = sorted({m for c in classes for m in reader.quant_methods.get(c, ())})
    return methods or None


def _child_of_method(reader: Reader, cls: ClassRef, attr: str,
                     defaults: Mapping[str, ast.expr]) -> ClassRef | None:
    """``self.model_cls(…)`` (a class attribute) or ``self._init_model(…)`` (a method that
    returns ``Cls(…)``): the class built."""
    method = reader.attribute(cls, attr)
    if method is not None and isinstance(method[1], ast.Name):
        return reader.class_ref(method[0].module, method[1].id)
    if method is not None and isinstance(method[1], ast.FunctionDef):
        for node in ast.walk(method[1]):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
                return _child_of_call(reader, method[0], node.value,
                                      {**defaults, **_param_defaults(method[1])})[0]
    return None


def _read_packed(reader: Reader, ref: ClassRef, facts: Facts) -> None:
    """The class's ``packed_modules_mapping`` (fused module -> its parts)."""
    packed = reader.attribute(ref, "packed_modules_mapping")
    if packed is None:
        return
    try:
        value = reader.literal(packed[0].module, packed[1])
    except Unevaluable:
        return
    if isinstance(value, dict):
        for fused, parts in value.items():
            if isinstance(fused, str) and isinstance(parts, list):
                facts.packed.setdefault(fused, [p for p in parts if isinstance(p, str)])


def extract_class(reader: Reader, ref: ClassRef, facts: Facts, prefix: str = "",
                  depth: int = 0, seen: set[str] | None = None) -> None:
    """Add the facts of ``ref``'s loader (at engine-name ``prefix``) to ``facts``."""
    seen = seen if seen is not None else set()
    key = f"{ref.module}.{ref.name}@{prefix}"
    if key in seen or depth > _MAX_DEPTH:
        return
    seen.add(key)
    facts.modules.update(c.module for c in reader.mro(ref))
    _read_packed(reader, ref, facts)
    lw = None
    auto = False
    delegates: list[str] = []
    for owner, fn in _load_weights_chain(reader, ref):
        one = LoadWeights(reader, owner, fn)
        lw = lw or one
        auto |= one.auto_loader
        delegates += one.delegates
        _add_load_weights(reader, ref, one, facts, prefix, top=depth <= 1)
    children = _init_children(reader, ref)
    for attr, (child, call) in children.items():
        path = f"{prefix}{attr}."
        if call.get("unquantized_under"):
            facts.unquantized_children.setdefault(f"{prefix}{attr}", call["unquantized_under"])
        if call.get("registered"):
            if depth == 0 and facts.language_model is None:
                facts.language_model = {"attr": attr, **{
                    k: v for k, v in call.items() if k != "registered"}}
            continue
        if child is None:
            continue
        if lw is not None and not auto and attr not in delegates:
            continue  # a hand-written loop: children are not asked to load themselves
        before = len(facts.sources)
        extract_class(reader, child, facts, path, depth + 1, seen)
        if len(facts.sources) > before:
            facts.children.setdefault(f"{prefix}{attr}", child.where)


def _load_weights_chain(reader: Reader, ref: ClassRef
                        ) -> list[tuple[ClassRef, ast.FunctionDef]]:
    """The ``load_weights`` the class runs, then each one it hands on to with
    ``super().load_weights(…)`` or ``Base.load_weights(self, …)`` (``load_weights =
    Other.load_weights`` aliases followed)."""
    out: list[tuple[ClassRef, ast.FunctionDef]] = []
    mro, i = reader.mro(ref), 0
    while i < len(mro) and len(out) < 4:
        cls = mro[i]
        i += 1
        node = _own_load_weights(cls)
        if node is None:
            continue
        owner = cls
        if not isinstance(node, ast.FunctionDef):  # load_weights = Other.load_weights
            other = reader.class_ref(cls.module, (_dotted(node) or "").split(".")[-2:][0])
            fn = _own_load_weights(other) if other is not None else None
            if other is None or not isinstance(fn, ast.FunctionDef):
                break
            owner, node = other, fn
        out.append((owner, node))
        nxt = _handed_on(node)
        if nxt is None:
            break
        if nxt != "super":
            other = reader.class_ref(owner.module, nxt)
            if other is None:
                break
            mro, i = reader.mro(other), 0
    return out


def _own_load_weights(cls: ClassRef) -> ast.FunctionDef | ast.expr | None:
    """The class body's own ``load_weights``: a method, or an alias expression."""
    for node in cls.node.body:
        if isinstance(node, ast.FunctionDef) and node.name == "load_weights":
            return node
        if (isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "load_weights" for t in node.targets)):
            return node.value
    return None


def _handed_on(fn: ast.FunctionDef) -> str | None:
    """``super`` or the base class name a ``load_weights`` passes the weights on to."""
    for node in ast.walk(fn):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load_weights"):
            base = node.func.value
            if isinstance(base, ast.Call) and _dotted(base.func) == "super":
                return "super"
            if isinstance(base, ast.Name) and base.id[:1].isupper() and node.args and (
                    _dotted(node.args[0]) == "self"):
                return base.id
    return None


def _add_load_weights(reader: Reader, ref: ClassRef, lw: LoadWeights, facts: Facts,
                      prefix: str, *, top: bool) -> None:
    """One ``load_weights``'s facts, its stacked entries scoped to ``prefix``."""
    facts.sources.append(lw.where)
    for e in lw.stacked:
        entry = dict(e)
        if prefix:
            entry["scope"] = prefix
        if entry not in facts.stacked:
            facts.stacked.append(entry)
    if lw.experts and facts.experts is None:
        facts.experts = lw.experts
    facts.skip_substrings += [s for s in lw.skip_substrings if s not in facts.skip_substrings]
    facts.skip_prefixes += [prefix + p for p in lw.skip_prefixes
                            if prefix + p not in facts.skip_prefixes]
    facts.skip_spec_layers |= lw.skip_spec_layers and top
    facts.unresolved += [u for u in lw.unresolved if u not in facts.unresolved]
    facts.renames += [r for r in lw.renames if r not in facts.renames]
    if lw.mapper_expr is not None:
        try:
            m = reader.mapper(ref, lw.mapper_expr, 0,
                              reader.function_env(lw.cls.module, lw.fn))
        except Unevaluable as exc:
            facts.unresolved.append(f"hf_to_vllm_mapper not readable: {exc} ({lw.where})")
        else:
            if m.pop("drop_layers_from", None):
                facts.skip_spec_layers = True
            _add_mapper(facts, m, prefix)


def _add_mapper(facts: Facts, m: dict[str, list[list[Any]]], prefix: str) -> None:
    for key, pairs in m.items():
        rows = facts.mapper.setdefault(key, [])
        for old, new in pairs:
            if prefix and key == "prefix":
                row = [prefix + old, None if new is None else prefix + new]
            elif prefix and key == "stacked":
                row = [old, new, prefix]
            else:
                row = [old, new]
            if row not in rows:
                rows.append(row)


def read_registry(tree: SourceTree, groups: Mapping[str, str] = VLLM_REGISTRY_GROUPS
                  ) -> dict[str, tuple[str, str, str]]:
    """vLLM's registry: architecture -> (module, class, kind)."""
    mod = tree.parse(f"{_VLLM_MODELS_PKG}.registry")
    if mod is None:
        raise FileNotFoundError("vllm/model_executor/models/registry.py")
    out: dict[str, tuple[str, str, str]] = {}
    dicts = dict(_module_dicts(mod))
    for name, kind in groups.items():  # the groups' order decides an architecture's kind
        node = dicts.get(name)
        if node is None:
            continue
        for k, v in zip(node.keys, node.values, strict=True):
            try:
                arch = ast.literal_eval(k) if k is not None else None
                module, cls = ast.literal_eval(v)
            except (ValueError, TypeError, SyntaxError):
                continue
            if isinstance(arch, str) and arch not in out:
                full = module if module.startswith("vllm.") else f"{_VLLM_MODELS_PKG}.{module}"
                out[arch] = (full, cls, kind)
    return out


def _module_dicts(mod: ast.Module) -> Iterator[tuple[str, ast.Dict]]:
    """Top-level ``NAME = {…}`` dict displays of a module."""
    for node in mod.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            name = next((t.id for t in targets if isinstance(t, ast.Name)), None)
            if name is not None:
                yield name, node.value


def registry_notes(tree: SourceTree) -> dict[str, dict[str, str]]:
    """What vLLM says of architectures it no longer serves in-tree:
    ``_PREVIOUSLY_SUPPORTED_MODELS`` (arch -> last release) and ``_OOT_SUPPORTED_MODELS``
    (arch -> plugin URL)."""
    mod = tree.parse(f"{_VLLM_MODELS_PKG}.registry")
    out: dict[str, dict[str, str]] = {"previously": {}, "plugin": {}}
    if mod is None:
        return out
    for name, node in _module_dicts(mod):
        key = {"_PREVIOUSLY_SUPPORTED_MODELS": "previously",
               "_OOT_SUPPORTED_MODELS": "plugin"}.get(name)
        if key is None:
            continue
        with contextlib.suppress(ValueError, TypeError, SyntaxError):
            out[key] = {str(k): str(v) for k, v in ast.literal_eval(node).items()}
    return out


def extract_vllm(tree: SourceTree) -> dict[str, dict[str, Any]]:
    """Every registry architecture of one vLLM release -> its facts (JSON-ready)."""
    reader = Reader(tree)
    out: dict[str, dict[str, Any]] = {}
    for arch, (module, cls_name, kind) in sorted(read_registry(tree).items()):
        facts = Facts(str(PurePosixPath(module.replace(".", "/"))), cls_name, kind)
        ref = reader.class_ref(module, cls_name)
        if kind == "transformers-backend":
            facts.unresolved.append(
                f"vLLM loads it with its Transformers backend ({cls_name}), whose weight names"
                " follow the transformers model at run time")
        elif ref is None:
            facts.unresolved.append(f"class {cls_name} not found in {module}")
        else:
            try:
                extract_class(reader, ref, facts)
            except (Unevaluable, RecursionError, TypeError, ValueError, AttributeError) as exc:
                # the reader met code it does not model: say so rather than guess
                facts.unresolved.append(f"not readable: {type(exc).__name__}: {exc}")
            linears: tuple[list[str], set[str]] = ([], set())
            for module in sorted(facts.modules):
                scan_module(reader, module, facts, linears)
            facts.unquantized = [leaf for leaf in dict.fromkeys(linears[0])
                                 if leaf not in linears[1]]
        out[arch] = facts.as_json()
    return out


_MOE_BUILDERS = ("FusedMoE", "FusedMoEFactory", "SharedFusedMoE", "RoutedExperts")
_LINEARS = ("ReplicatedLinear", "ColumnParallelLinear", "RowParallelLinear", "GateLinear",
            "MergedColumnParallelLinear", "QKVParallelLinear", "MergedReplicatedLinear")


def scan_module(reader: Reader, module: str, facts: Facts,
                linears: tuple[list[str], set[str]]) -> None:
    """Module-wide facts: fused-MoE layers and their checkpoint names (``ckpt_names=``),
    and the ``prefix`` leaves of linear layers built with ``quant_config=None`` (or none)
    that no linear layer of the module builds with a quantization config."""
    tree = reader.tree.parse(module)
    if tree is None or not module.startswith("vllm."):
        return
    plain, quantized = linears
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        tail = (_dotted(node.func) or "").rsplit(".", 1)[-1]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if tail in _MOE_BUILDERS:
            facts.moe = True
            _expert_names(reader, module, kw.get("ckpt_names"), facts)
        elif tail in _LINEARS:
            leaf = _prefix_leaf(kw.get("prefix"))
            shards = _logical_shards(tail, node, kw)
            if leaf and shards and shards > 1:
                facts.fused_layers.setdefault(leaf, shards)
            q = kw.get("quant_config")
            none = (q is None and len(node.args) <= 4) or (
                isinstance(q, ast.Constant) and q.value is None)
            if leaf and none:
                plain.append(leaf)
            elif leaf:
                quantized.add(leaf)


def _logical_shards(tail: str, node: ast.Call, kw: Mapping[str, ast.expr]) -> int | None:
    """How many logical shards a fused linear layer is built with: 3 for
    ``QKVParallelLinear``; ``len(output_sizes)`` for ``MergedColumnParallelLinear``."""
    if tail == "QKVParallelLinear":
        return 3
    if tail != "MergedColumnParallelLinear":
        return None
    sizes = kw.get("output_sizes") or (node.args[1] if len(node.args) > 1 else None)
    if isinstance(sizes, ast.List | ast.Tuple):
        return len(sizes.elts)
    if (isinstance(sizes, ast.BinOp) and isinstance(sizes.op, ast.Mult)
            and isinstance(sizes.left, ast.List) and isinstance(sizes.right, ast.Constant)
            and isinstance(sizes.right.value, int)):
        return len(sizes.left.elts) * sizes.right.value
    return None


def _expert_names(reader: Reader, module: str, names: ast.expr | None, facts: Facts) -> None:
    if names is None or facts.experts is not None:
        return
    try:
        gate, down, up = reader.literal(module, names)
    except (Unevaluable, ValueError):
        facts.unresolved.append(f"expert names `{ast.unparse(names)}` ({module})")
        return
    if isinstance(gate, str) and isinstance(down, str) and isinstance(up, str):
        facts.experts = {"gate": gate, "down": down, "up": up}


def _prefix_leaf(node: ast.expr | None) -> str | None:
    """``f"{prefix}.gate"`` / ``maybe_prefix(prefix, "gate")`` -> ``gate``."""
    if isinstance(node, ast.JoinedStr) and node.values:
        last = node.values[-1]
        if isinstance(last, ast.Constant) and isinstance(last.value, str):
            leaf = last.value.rsplit(".", 1)[-1]
            return leaf or None
    if isinstance(node, ast.Call) and node.args:
        last_arg = node.args[-1]
        if isinstance(last_arg, ast.Constant) and isinstance(last_arg.value, str):
            return last_arg.value.rsplit(".", 1)[-1] or None
    return None


def quant_methods(tree: SourceTree) -> dict[str, list[str]]:
    """vLLM's ``get_quantization_config`` ``method_to_config``: config class -> methods."""
    mod = tree.parse("vllm.model_executor.layers.quantization")
    out: dict[str, list[str]] = {}
    if mod is None:
        return out
    for node in ast.walk(mod):
        if (isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict)
                and "method_to_config" in ast.unparse(node)[:40]):
            for k, v in zip(node.value.keys, node.value.values, strict=True):
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    out.setdefault(_dotted(v) or "", []).append(k.value)
    return out


def requirement(tree: SourceTree, package: str) -> str | None:
    """The wheel's ``Requires-Dist`` specifier for ``package`` (without extras markers)."""
    meta = next((f for f in tree.all_names() if f.endswith(".dist-info/METADATA")), None)
    if meta is None:
        return None
    for line in tree.read(meta).splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            spec = line.split(":", 1)[1].split(";")[0].strip()
            name = spec.split("<")[0].split(">")[0].split("=")[0].split("!")[0].split("[")[0]
            if name.strip().lower() == package:
                return spec.replace(" ", "")
    return None


def transformers_classes(tree: SourceTree) -> list[str]:
    """Every model class transformers' auto mappings name: the architectures vLLM's
    Transformers backend can fall back to (``getattr(transformers, architecture)``)."""
    mod = tree.parse("transformers.models.auto.modeling_auto")
    names: set[str] = set()
    if mod is None:
        return []
    for node in mod.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.endswith("_MAPPING_NAMES")
                and isinstance(node.value, ast.Call) and node.value.args):
            with contextlib.suppress(ValueError, TypeError, SyntaxError):
                for _k, v in ast.literal_eval(node.value.args[0]):
                    names.update([v] if isinstance(v, str) else [x for x in v if x])
    return sorted(names)


def causal_lm_names(tree: SourceTree) -> dict[str, str]:
    """transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` (model_type -> class): what vLLM's
    ``VllmConfig.with_hf_config`` picks for an inner text config without ``architectures``."""
    mod = tree.parse("transformers.models.auto.modeling_auto")
    if mod is None:
        return {}
    for node in mod.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"
                and isinstance(node.value, ast.Call) and node.value.args):
            pairs = ast.literal_eval(node.value.args[0])
            return {k: v for k, v in pairs if isinstance(v, str)}
    return {}


# --- quantization-format facts (per release) ---------------------------------------------
#
# What a release's quantization configs build, read from its ``layers/quantization`` source:
# a release threshold in a format module (``qscale.formats.quark``) or a row of
# ``qscale.engines.wna16`` is a lookup of these. Each reader returns ``(value, source)`` with
# the file (and class or name) it read, or None when the release has no such source: the
# catalogue then has no entry for that release, and a check at it is partial (QS010), not
# modelled by a neighbour in silence.

_QUANT = "vllm/model_executor/layers/quantization/"
#: a fact's value and the file (``path:Symbol``) it was read from
Read = tuple[Any, str]


def _class_node(tree: SourceTree, path: str, cls: str) -> ast.ClassDef | None:
    mod = _parse_path(tree, path)
    if mod is None:
        return None
    return next((n for n in mod.body if isinstance(n, ast.ClassDef) and n.name == cls), None)


def _parse_path(tree: SourceTree, path: str) -> ast.Module | None:
    if path not in tree.files:
        return None
    return tree.parse(path[:-3].replace("/", "."))


def _assigned(body: list[ast.stmt], name: str) -> ast.expr | None:
    """The value of ``name = …`` / ``name: T = …`` among ``body``'s statements."""
    for node in body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return value
    return None


def _json_literal(node: ast.expr) -> Any:
    """A literal as JSON data: sets sorted into lists, a dict its sorted keys (``TYPE_MAP``:
    what it maps from), tuples lists."""
    if isinstance(node, ast.Dict):
        return sorted(_json_literal(k) for k in node.keys if k is not None)
    if isinstance(node, ast.Set):
        return sorted(_json_literal(e) for e in node.elts)
    if isinstance(node, ast.List | ast.Tuple):
        return [_json_literal(e) for e in node.elts]
    value = ast.literal_eval(node)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise ValueError(f"not a JSON literal: {ast.unparse(node)}")


def class_constant(tree: SourceTree, where: tuple[tuple[str, str], ...], attr: str
                   ) -> Read | None:
    """A class attribute's literal (``INCConfig.SUPPORTED_BITS``), from the first
    ``(file, class)`` of ``where`` the release has."""
    for path, cls in where:
        node = _class_node(tree, path, cls)
        value = _assigned(node.body, attr) if node is not None else None
        if value is not None:
            return _json_literal(value), f"{path}:{cls}.{attr}"
    return None


def module_constant(tree: SourceTree, paths: tuple[str, ...], name: str) -> Read | None:
    """A module-level literal (``MARLIN_SUPPORTED_GROUP_SIZES``) from the first file that
    has it."""
    for path in paths:
        mod = _parse_path(tree, path)
        value = _assigned(mod.body, name) if mod is not None else None
        if value is not None:
            return _json_literal(value), f"{path}:{name}"
    return None


def defines(tree: SourceTree, path: str, qualname: str) -> Read | None:
    """Whether the file defines ``name`` or ``Class.method`` (None: no such file)."""
    mod = _parse_path(tree, path)
    if mod is None:
        return None
    cls, _, name = qualname.rpartition(".")
    body: list[ast.stmt] = mod.body
    if cls:
        node = _class_node(tree, path, cls)
        body = node.body if node is not None else []
    found = any(isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name for n in body)
    return found, f"{path}:{qualname}"


def imported_from(tree: SourceTree, path: str, module: str) -> Read | None:
    """The names ``path`` imports from ``module`` (or a submodule of it), sorted."""
    mod = _parse_path(tree, path)
    if mod is None:
        return None
    names = {a.name for n in ast.walk(mod) if isinstance(n, ast.ImportFrom) and n.module
             and (n.module == module or n.module.startswith(module + "."))
             for a in n.names}
    return sorted(names), f"{path}:import {module}"


def _bits_check(tree: SourceTree, path: str, cls: str) -> Read | None:
    """The bit widths a config's ``__init__`` accepts: ``if self.weight_bits not in [2, 3,
    4, 8]`` or ``if self.weight_bits != 4`` (raising otherwise); [] when the release has no
    such class in that file (the config is gone: nothing falls back to it)."""
    node = _class_node(tree, path, cls)
    if node is None:
        return [], f"{path}:{cls} (absent)"
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef)
                 and n.name == "__init__"), None)
    for test in (n.test for n in ast.walk(init) if isinstance(n, ast.If)) if init else ():
        if (isinstance(test, ast.Compare) and len(test.ops) == 1
                and ast.unparse(test.left) == "self.weight_bits"):
            op, right = test.ops[0], test.comparators[0]
            if isinstance(op, ast.NotIn) and isinstance(right, ast.List | ast.Tuple | ast.Set):
                return sorted(_json_literal(right)), f"{path}:{cls}.__init__"
            if isinstance(op, ast.NotEq) and isinstance(right, ast.Constant):
                return [right.value], f"{path}:{cls}.__init__"
    return None


def _quark_int8_dynamic(tree: SourceTree) -> Read | None:
    """Whether ``QuarkConfig`` matches int8 with dynamic per-token inputs: one of its int8
    matchers (a method comparing a ``.get("dtype")`` with ``"int8"``) compares
    ``input_quant.get("qscheme")`` with ``"per_channel"`` (``_is_dynamic_per_token_w8a8``
    from 0.20, ``_is_w8a8_int8``'s ``is_dynamic_input`` from 0.30)."""
    path = f"{_QUANT}quark/quark.py"
    node = _class_node(tree, path, "QuarkConfig")
    if node is None:
        return None

    def compares(fn: ast.AST, left: str, value: str) -> bool:
        return any(isinstance(c, ast.Compare) and isinstance(c.ops[0], ast.Eq)
                   and ast.unparse(c.left) == left and isinstance(c.comparators[0], ast.Constant)
                   and c.comparators[0].value == value for c in ast.walk(fn))

    matchers = [f for f in node.body if isinstance(f, ast.FunctionDef)
                and compares(f, "weight_quant.get('dtype')", "int8")]
    hits = [f.name for f in matchers if compares(f, "input_quant.get('qscheme')", "per_channel")]
    return bool(hits), f"{path}:QuarkConfig.{hits[0] if hits else '_is_static_tensor_w8a8'}"


def _quark_int8_channel_scale(tree: SourceTree) -> Read | None:
    """``QuarkW8A8Int8.create_weights``' per-channel ``weight_scale``: the rank of the
    parameter it registers and whether its ``weight_loader`` is a local function that
    ``unsqueeze``s a 1-D checkpoint scale (``{"rank": 2, "unsqueezes_1d": true}`` from 0.22)."""
    path = f"{_QUANT}quark/schemes/quark_w8a8_int8.py"
    node = _class_node(tree, path, "QuarkW8A8Int8")
    fn = next((n for n in node.body if isinstance(n, ast.FunctionDef)
               and n.name == "create_weights"), None) if node is not None else None
    if fn is None:
        return None
    local_fns = {n.name: n for n in ast.walk(fn) if isinstance(n, ast.FunctionDef)}
    for call in ast.walk(fn):
        if not (isinstance(call, ast.Call) and _dotted(call.func) == "ChannelQuantScaleParameter"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        data = kw.get("data")
        if not (isinstance(data, ast.Call) and data.args):
            continue
        shape = data.args[0]
        rank = len(shape.elts) if isinstance(shape, ast.Tuple) else 1
        loader = kw.get("weight_loader")
        helper = local_fns.get(loader.id) if isinstance(loader, ast.Name) else None
        unsqueezes = helper is not None and "unsqueeze" in ast.unparse(helper)
        return ({"rank": rank, "unsqueezes_1d": unsqueezes},
                f"{path}:QuarkW8A8Int8.create_weights")
    return None


_QUARK_MOE = f"{_QUANT}quark/quark_moe.py"


def _quark_moe_methods(tree: SourceTree) -> Read | None:
    """The MoE method classes ``QuarkMoEMethod.get_moe_method`` (and, from 0.30,
    ``get_moe_method_target``) can hand a routed-experts layer: the classes of
    ``quark_moe.py`` those functions name, sorted (``QuarkW8A8Int8MoEMethod`` from 0.20,
    ``QuarkNvfp4MoEMethod`` from 0.22, ``QuarkW4A16Int4MoEMethod`` from 0.31)."""
    node = _class_node(tree, _QUARK_MOE, "QuarkMoEMethod")
    mod = _parse_path(tree, _QUARK_MOE)
    if node is None or mod is None:
        return None
    classes = {n.name for n in mod.body if isinstance(n, ast.ClassDef)} - {"QuarkMoEMethod"}
    fns = [f for f in node.body if isinstance(f, ast.FunctionDef)
           and f.name in ("get_moe_method", "get_moe_method_target")]
    if not fns:
        return None
    named = {n.id for f in fns for n in ast.walk(f) if isinstance(n, ast.Name)}
    return sorted(named & classes), f"{_QUARK_MOE}:QuarkMoEMethod.get_moe_method"


def _quark_moe_fp8_weight_qschemes(tree: SourceTree) -> Read | None:
    """The weight ``qscheme`` values ``QuarkW8A8Fp8MoEMethod.__init__`` accepts: those its
    ``if not (per_tensor or per_channel …): raise ValueError`` guard tests, through the
    locals it assigns from ``self.weight_qscheme == "…"`` (``per_block`` from 0.30)."""
    fn = _method(tree, _QUARK_MOE, "QuarkW8A8Fp8MoEMethod", "__init__")
    if fn is None:
        return None
    assigned = {t.id: n.value for n in ast.walk(fn) if isinstance(n, ast.Assign)
                for t in n.targets if isinstance(t, ast.Name)}
    for guard in (n for n in ast.walk(fn) if isinstance(n, ast.If)):
        test = guard.test
        if not (isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
                and any(isinstance(s, ast.Raise) for s in guard.body)):
            continue
        names = [n.id for n in ast.walk(test.operand) if isinstance(n, ast.Name)]
        found = {c.comparators[0].value for name in names if name in assigned
                 for c in ast.walk(assigned[name]) if isinstance(c, ast.Compare)
                 and isinstance(c.ops[0], ast.Eq) and ast.unparse(c.left) == "self.weight_qscheme"
                 and isinstance(c.comparators[0], ast.Constant)}
        if found:
            return sorted(found), f"{_QUARK_MOE}:QuarkW8A8Fp8MoEMethod.__init__"
    return None


def _quark_exclude_children(tree: SourceTree) -> Read | None:
    """Whether ``QuarkConfig`` calls ``should_ignore_layer`` with ``check_children`` (not a
    literal False): from 0.26 a plain ``exclude`` entry naming part of a fused-MoE layer
    (``….experts.*.down_proj``) excludes the whole layer (``quark/utils.py``)."""
    path = f"{_QUANT}quark/quark.py"
    node = _class_node(tree, path, "QuarkConfig")
    if node is None:
        return None
    for fn in (f for f in node.body if isinstance(f, ast.FunctionDef)):
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and _dotted(call.func) == "should_ignore_layer":
                kw = next((k.value for k in call.keywords if k.arg == "check_children"), None)
                if kw is not None and not (isinstance(kw, ast.Constant) and kw.value is False):
                    return True, f"{path}:QuarkConfig.{fn.name}"
    return False, f"{path}:QuarkConfig"


def _quark_fp8_block_scale(tree: SourceTree) -> Read | None:
    """The name ``QuarkW8A8Fp8PerBlock.create_weights`` registers its
    ``BlockQuantScaleParameter`` under (``weight_scale_inv`` in 0.28-0.29, ``weight_scale``
    from 0.30); None when ``schemes/quark_w8a8_fp8.py`` has no such class (before 0.28)."""
    path = f"{_QUANT}quark/schemes/quark_w8a8_fp8.py"
    if path not in tree.files:
        return None
    if _class_node(tree, path, "QuarkW8A8Fp8PerBlock") is None:
        return None, f"{path}:QuarkW8A8Fp8PerBlock (absent)"
    fn = _method(tree, path, "QuarkW8A8Fp8PerBlock", "create_weights")
    if fn is None:
        return None
    block = {t.id for n in ast.walk(fn) if isinstance(n, ast.Assign)
             and "BlockQuantScaleParameter" in ast.unparse(n.value)
             for t in n.targets if isinstance(t, ast.Name)}
    for call in ast.walk(fn):
        if (isinstance(call, ast.Call) and _dotted(call.func) == "layer.register_parameter"
                and len(call.args) == 2 and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[1], ast.Name) and call.args[1].id in block):
            return call.args[0].value, f"{path}:QuarkW8A8Fp8PerBlock.create_weights"
    return None


def _inc_paths() -> tuple[tuple[str, str], ...]:
    return ((f"{_QUANT}inc/inc.py", "INCConfig"), (f"{_QUANT}inc.py", "INCConfig"))


def _inc_defines(tree: SourceTree, method: str) -> Read | None:
    for path, cls in _inc_paths():
        if path in tree.files:
            return defines(tree, path, f"{cls}.{method}")
    return None


def _inc_imports_gptq(tree: SourceTree) -> Read | None:
    """Whether vLLM's INC (AutoRound) config imports the non-Marlin ``GPTQConfig`` to fall
    back to (``inc.py`` ``apply_gptq_quant_layer`` up to 0.21)."""
    files = sorted(f for f in tree.files
                   if f.startswith(f"{_QUANT}inc/") or f == f"{_QUANT}inc.py")
    if not files:
        return None
    gptq = "vllm.model_executor.layers.quantization.gptq"
    hits = [f for f in files if "GPTQConfig" in (imported_from(tree, f, gptq) or ([], ""))[0]]
    return bool(hits), f"{hits[0] if hits else files[0]}:import GPTQConfig"


_MARLIN_UTILS = (f"{_QUANT}utils/marlin_utils.py",)
#: fact name -> its reader (one release's source -> (value, source) | None)
FORMAT_READERS: dict[str, Any] = {
    "quark.schemes": lambda t: imported_from(
        t, f"{_QUANT}quark/quark.py", "vllm.model_executor.layers.quantization.quark.schemes"),
    "quark.int8_dynamic_input": _quark_int8_dynamic,
    "quark.int8_channel_scale": _quark_int8_channel_scale,
    "quark.moe_methods": _quark_moe_methods,
    "quark.moe_fp8_weight_qschemes": _quark_moe_fp8_weight_qschemes,
    "quark.exclude_children": _quark_exclude_children,
    "quark.fp8_block_scale": _quark_fp8_block_scale,
    "gptq.marlin_types": lambda t: class_constant(
        t, ((f"{_QUANT}auto_gptq.py", "AutoGPTQConfig"),
            (f"{_QUANT}gptq_marlin.py", "GPTQMarlinConfig")), "TYPE_MAP"),
    "gptq.fallback_bits": lambda t: _bits_check(t, f"{_QUANT}gptq.py", "GPTQConfig"),
    "gptq.desc_act_refused": lambda t: defines(
        t, f"{_QUANT}utils/gptq_utils.py", "normalize_and_validate_gptq_desc_act"),
    "marlin.group_sizes": lambda t: module_constant(
        t, _MARLIN_UTILS, "MARLIN_SUPPORTED_GROUP_SIZES"),
    "awq.bits": lambda t: _bits_check(t, f"{_QUANT}awq.py", "AWQConfig") if
    f"{_QUANT}awq.py" in t.files else class_constant(
        t, ((f"{_QUANT}auto_awq.py", "AutoAWQConfig"),), "TYPE_MAP"),
    "awq.marlin_bits": lambda t: class_constant(
        t, ((f"{_QUANT}auto_awq.py", "AutoAWQConfig"),
            (f"{_QUANT}awq_marlin.py", "AWQMarlinConfig")), "TYPE_MAP"),
    "auto_round.bits": lambda t: class_constant(t, _inc_paths(), "SUPPORTED_BITS"),
    "auto_round.data_types": lambda t: class_constant(t, _inc_paths(), "SUPPORTED_DTYPES"),
    "auto_round.formats": lambda t: class_constant(t, _inc_paths(), "SUPPORTED_FORMATS"),
    "auto_round.backends": lambda t: class_constant(t, _inc_paths(), "SUPPORTED_BACKENDS"),
    "auto_round.gptq_fallback": _inc_imports_gptq,
    "auto_round.humming_bits": lambda t: module_constant(
        t, (f"{_QUANT}inc/schemes/inc_wna16_scheme.py",), "CUDA_HUMMING_SUPPORTED_BITS")
    or ([], f"{_QUANT}inc/schemes/inc_wna16_scheme.py:CUDA_HUMMING_SUPPORTED_BITS (absent)")
    if any(f.startswith(f"{_QUANT}inc") for f in t.files) else None,
    "auto_round.int_packing_checked": lambda t: _inc_defines(t, "_validate_int_quantization"),
    "auto_round.float_validated": lambda t: _inc_defines(
        t, "_validate_fp8_block_quantization"),
}


_MODEL_CONFIG = "vllm/config/model.py"


def _deprecated_methods(tree: SourceTree) -> Read | None:
    """The ``quant_method`` names ``ModelConfig._verify_quantization`` refuses unless vLLM is
    started with ``--allow-deprecated-quantization`` (``DEPRECATED_QUANTIZATION_METHODS``);
    None when the release has the list but its model config does not test it."""
    got = module_constant(tree, (f"{_QUANT}__init__.py",), "DEPRECATED_QUANTIZATION_METHODS")
    if got is None or _MODEL_CONFIG not in tree.files:
        return None
    if "DEPRECATED_QUANTIZATION_METHODS" not in tree.read(_MODEL_CONFIG):
        return None
    return got


FORMAT_READERS["registry.deprecated"] = _deprecated_methods


def extract_formats(tree: SourceTree) -> dict[str, Read]:
    """One release's quantization-format facts: name -> (value, source); a fact whose
    source the release lacks is left out."""
    out: dict[str, Read] = {}
    for name, reader in FORMAT_READERS.items():
        got = reader(tree)
        if got is not None:
            out[name] = (got[0], got[1])
    return out


_FBGEMM = f"{_QUANT}fbgemm_fp8.py"


def _method(tree: SourceTree, path: str, cls: str, name: str) -> ast.FunctionDef | None:
    node = _class_node(tree, path, cls)
    return next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == name),
                None) if node is not None else None


def _required_keys(tree: SourceTree, path: str, cls: str) -> Read | None:
    """The keys ``cls.from_config`` reads with ``get_from_keys`` (which refuses a config
    without them)."""
    fn = _method(tree, path, cls, "from_config")
    if fn is None:
        return None
    keys = [_json_literal(c.args[1])[0] for c in ast.walk(fn) if isinstance(c, ast.Call)
            and _dotted(c.func) == "cls.get_from_keys" and len(c.args) == 2]
    return keys, f"{path}:{cls}.from_config"


def _quantized_layers(tree: SourceTree, path: str, cls: str) -> Read | None:
    """The layer classes ``cls.get_quant_method`` gives a quantized method (``isinstance(layer,
    …)`` tests that return something other than None)."""
    fn = _method(tree, path, cls, "get_quant_method")
    if fn is None:
        return None
    out = []
    for node in ast.walk(fn):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Call)
                and _dotted(node.test.func) == "isinstance" and len(node.test.args) == 2):
            returns = [r for r in ast.walk(node) if isinstance(r, ast.Return)]
            if any(r.value is not None and not (isinstance(r.value, ast.Constant)
                                                and r.value.value is None) for r in returns):
                out.append(_dotted(node.test.args[1]))
    return out, f"{path}:{cls}.get_quant_method"


def _fbgemm_required_keys(tree: SourceTree) -> Read | None:
    """``FBGEMMFp8Config.from_config``'s required keys."""
    return _required_keys(tree, _FBGEMM, "FBGEMMFp8Config")


def _fbgemm_layers(tree: SourceTree) -> Read | None:
    """The layer classes ``FBGEMMFp8Config.get_quant_method`` quantizes."""
    return _quantized_layers(tree, _FBGEMM, "FBGEMMFp8Config")


def _fbgemm_parameters(tree: SourceTree) -> Read | None:
    """What ``FBGEMMFp8LinearMethod.create_weights`` registers: per parameter class, the
    torch dtype and the rank of its data (``ModelWeightParameter`` float8_e4m3fn rank 2,
    ``ChannelQuantScaleParameter`` float32 rank 2: [out, 1])."""
    fn = _method(tree, _FBGEMM, "FBGEMMFp8LinearMethod", "create_weights")
    if fn is None:
        return None
    out: dict[str, dict[str, Any]] = {}
    for call in ast.walk(fn):
        if not isinstance(call, ast.Call):
            continue
        name = _dotted(call.func)
        if name not in ("ModelWeightParameter", "ChannelQuantScaleParameter"):
            continue
        data = next((k.value for k in call.keywords if k.arg == "data"), None)
        if not isinstance(data, ast.Call):
            continue
        dtype = next((_dotted(k.value) for k in data.keywords if k.arg == "dtype"), None)
        shape: list[ast.expr] = data.args
        if len(shape) == 1 and isinstance(shape[0], ast.Tuple):
            shape = shape[0].elts
        out[str(name)] = {"dtype": str(dtype), "rank": len(shape)}
    return out, f"{_FBGEMM}:FBGEMMFp8LinearMethod.create_weights"


def _tile_padding(tree: SourceTree, where: tuple[tuple[str, str], ...], check: str
                  ) -> Read | None:
    """The ``allow_tile_padding`` a config's ``get_quant_method`` passes to a Marlin shape
    check (``check_marlin_supports_layer`` / ``check_moe_marlin_supports_layer``), as source
    text (``True``, ``not self.desc_act``), or None when it passes none (the check's default,
    False: strict tiles); from the first ``(file, class)`` of ``where`` the release has."""
    for path, cls in where:
        fn = _method(tree, path, cls, "get_quant_method")
        if fn is None:
            continue
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and _dotted(call.func) == check:
                kw = next((k.value for k in call.keywords if k.arg == "allow_tile_padding"),
                          None)
                return (ast.unparse(kw) if kw is not None else None,
                        f"{path}:{cls}.get_quant_method")
    return None


_GPTQ_CONFIGS = ((f"{_QUANT}auto_gptq.py", "AutoGPTQConfig"),
                 (f"{_QUANT}gptq_marlin.py", "GPTQMarlinConfig"))
_AWQ_CONFIGS = ((f"{_QUANT}auto_awq.py", "AutoAWQConfig"),
                (f"{_QUANT}awq_marlin.py", "AWQMarlinConfig"))

FORMAT_READERS.update({
    "fbgemm_fp8.required_keys": _fbgemm_required_keys,
    "gptq.moe_tile_padding": lambda t: _tile_padding(
        t, _GPTQ_CONFIGS, "check_moe_marlin_supports_layer"),
    "awq.tile_padding": lambda t: _tile_padding(t, _AWQ_CONFIGS, "check_marlin_supports_layer"),
    "fbgemm_fp8.layers": _fbgemm_layers,
    "fbgemm_fp8.parameters": _fbgemm_parameters,
})

_FP_QUANT = f"{_QUANT}fp_quant.py"


def _fp_quant_parameters(tree: SourceTree) -> Read | None:
    """What ``FPQuantLinearMethod.create_weights`` registers, in order: parameter name ->
    the ``dtype=`` of its ``torch.empty`` (``torch.uint8``, ``torch.float32``, or
    ``params_dtype``: the model's) and the rank of its shape."""
    fn = _method(tree, _FP_QUANT, "FPQuantLinearMethod", "create_weights")
    if fn is None:
        return None
    made: dict[str, tuple[str | None, int]] = {}
    for node in ast.walk(fn):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call)
                and _dotted(node.value.func) == "Parameter" and node.value.args):
            continue
        empty = node.value.args[0]
        if isinstance(empty, ast.Call) and _dotted(empty.func) == "torch.empty":
            dtype = next((_dotted(k.value) for k in empty.keywords if k.arg == "dtype"), None)
            made[node.targets[0].id] = (dtype, len(empty.args))
    out: dict[str, dict[str, Any]] = {}
    for call in ast.walk(fn):
        if (isinstance(call, ast.Call) and _dotted(call.func) == "layer.register_parameter"
                and len(call.args) == 2 and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[1], ast.Name) and call.args[1].id in made):
            dtype, rank = made[call.args[1].id]
            out[str(call.args[0].value)] = {"dtype": str(dtype), "rank": rank}
    return out, f"{_FP_QUANT}:FPQuantLinearMethod.create_weights"


def _fp_quant_group_sizes(tree: SourceTree) -> Read | None:
    """``forward_dtype`` -> the scale group ``FPQuantLinearMethod.create_weights`` sizes
    ``scales`` with (``if … forward_dtype == "mxfp4": group_size = 32``); a forward dtype
    not in it is refused there."""
    fn = _method(tree, _FP_QUANT, "FPQuantLinearMethod", "create_weights")
    if fn is None:
        return None
    out: dict[str, int] = {}
    for node in ast.walk(fn):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and len(node.test.comparators) == 1
                and isinstance(node.test.ops[0], ast.Eq)
                and (_dotted(node.test.left) or "").endswith("forward_dtype")
                and isinstance(node.test.comparators[0], ast.Constant)):
            continue
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, int)
                    and any(isinstance(t, ast.Name) and t.id == "group_size"
                            for t in stmt.targets)):
                out[str(node.test.comparators[0].value)] = stmt.value.value
    return out, f"{_FP_QUANT}:FPQuantLinearMethod.create_weights"


def _fp_quant_checks(tree: SourceTree) -> Read | None:
    """What vLLM refuses an FP-Quant model for, as data: the one ``params_dtype``
    ``FPQuantLinearMethod.create_weights`` takes (``if params_dtype != torch.bfloat16:
    raise``), the config attribute the per-rank input size must be a multiple of there
    (``input_size_per_partition % … != 0``), and ``FPQuantConfig.get_supported_act_dtypes``
    (``VllmConfig._get_quantization_config`` refuses another model dtype at start-up)."""
    fn = _method(tree, _FP_QUANT, "FPQuantLinearMethod", "create_weights")
    if fn is None:
        return None
    out: dict[str, Any] = {"params_dtype": None, "input_multiple_of": None,
                           "act_dtypes": None}
    acts = _method(tree, _FP_QUANT, "FPQuantConfig", "get_supported_act_dtypes")
    ret = next((n.value for n in ast.walk(acts) if isinstance(n, ast.Return)), None) \
        if acts is not None else None
    if isinstance(ret, ast.List):
        out["act_dtypes"] = [_dotted(e) for e in ret.elts]
    for node in ast.walk(fn):
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and any(isinstance(s, ast.Raise) for s in node.body)):
            continue
        left, right = node.test.left, node.test.comparators[0]
        if _dotted(left) == "params_dtype" and isinstance(node.test.ops[0], ast.NotEq):
            out["params_dtype"] = _dotted(right)
        if (isinstance(left, ast.BinOp) and isinstance(left.op, ast.Mod)
                and _dotted(left.left) == "input_size_per_partition"):
            out["input_multiple_of"] = (_dotted(left.right) or "").rpartition(".")[2]
    return out, f"{_FP_QUANT}:FPQuantLinearMethod.create_weights"


def _fp_quant_refuses_pseudoquantization(tree: SourceTree) -> Read | None:
    """Whether ``FPQuantConfig.__init__`` raises for ``pseudoquantization`` (vLLM runs real
    quantized weights only; later releases no longer read the key)."""
    fn = _method(tree, _FP_QUANT, "FPQuantConfig", "__init__")
    if fn is None:
        return None
    refused = any(isinstance(n, ast.If) and "pseudoquantization" in ast.unparse(n.test)
                  and any(isinstance(s, ast.Raise) for s in n.body) for n in ast.walk(fn))
    return refused, f"{_FP_QUANT}:FPQuantConfig.__init__"


FORMAT_READERS.update({
    "fp_quant.required_keys": lambda t: _required_keys(t, _FP_QUANT, "FPQuantConfig"),
    "fp_quant.layers": lambda t: _quantized_layers(t, _FP_QUANT, "FPQuantConfig"),
    "fp_quant.parameters": _fp_quant_parameters,
    "fp_quant.group_sizes": _fp_quant_group_sizes,
    "fp_quant.checks": _fp_quant_checks,
    "fp_quant.refuses_pseudoquantization": _fp_quant_refuses_pseudoquantization,
})

_MARLIN_KERNEL = "vllm/model_executor/kernels/linear/mixed_precision/marlin.py"
#: facts the generator cannot read from the source: ``name -> ((first, last, value, source,
#: why), …)`` over catalogued releases, each range cited to the releases it was read in by
#: hand. A release past the last range has no entry (partial) until someone reads it.
HAND_FORMAT_FACTS: dict[str, tuple[tuple[str, str, Any, str, str], ...]] = {
    "wna16.marlin_tiles": (
        ("0.18.0", "0.23.0", "strict", f"{_MARLIN_KERNEL}:MarlinLinearKernel.can_implement",
         "read in 0.18.0, 0.20.0-0.23.0: can_implement returns check_marlin_supports_shape's"
         " refusal, and choose_mp_linear_kernel tries the next kernel; the fall-through is"
         " control flow, not a constant"),
        ("0.24.0", "0.29.0", "strict-with-act-order",
         f"{_MARLIN_KERNEL}:MarlinLinearKernel.can_implement",
         "read in 0.24.0-0.29.0: tile misalignment is zero-padded at weight prep unless"
         " has_g_idx (a branch on the config, not a constant)"),
        ("0.30.0", "0.33.0", "padded",
         f"{_MARLIN_KERNEL}:MarlinLinearKernel.process_weights_after_loading",
         "read in 0.30.0-0.33.0: always zero-padded (act order is refused by"
         " utils/gptq_utils.py normalize_and_validate_gptq_desc_act)"),
    ),
    "fbgemm_fp8.ignore_matching": (
        ("0.18.0", "0.33.0", "exact", f"{_QUANT}utils/quant_utils.py:is_layer_skipped",
         "read in 0.20.0 and 0.33.0: FBGEMMFp8Config calls is_layer_skipped in its default"
         " exact mode over packed_modules_mapping (a call's default argument, in another"
         " module)"),
    ),
    "fbgemm_fp8.input_scale_ub": (
        ("0.18.0", "0.33.0", "parameter", f"{_FBGEMM}:FBGEMMFp8LinearMethod.create_weights",
         "read in 0.20.0 and 0.33.0: a plain torch.nn.Parameter from activation_scale_ub, with"
         " no weight_loader (not a checkpoint tensor)"),
    ),
}


def format_rows(per_release: Mapping[str, Mapping[str, Read]], releases: list[str]
                ) -> dict[str, list[list[Any]]]:
    """The catalogue's ``formats`` section: per fact, ``[first, last, value, source, how]``
    over consecutive releases that agree, from each release's extracted facts and the
    hand-written table (a hand-written range only over releases it names)."""
    def ver(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split("."))

    cells: dict[str, list[tuple[str, Any, str, str]]] = {}
    for release in releases:
        for name, (value, source) in per_release.get(release, {}).items():
            cells.setdefault(name, []).append((release, value, source, "extracted"))
        for name, rows in HAND_FORMAT_FACTS.items():
            for first, last, value, source, why in rows:
                if ver(first) <= ver(release) <= ver(last):
                    cells.setdefault(name, []).append(
                        (release, value, source, f"hand-written: {why}"))
    out: dict[str, list[list[Any]]] = {}
    for name in sorted(cells):
        rows_out: list[list[Any]] = []
        for release, value, source, how in cells[name]:
            prev = releases[releases.index(release) - 1] if releases.index(release) else None
            tail = rows_out[-1] if rows_out else None
            if tail is not None and tail[1] == prev and tail[2:] == [value, source, how]:
                tail[1] = release
            else:
                rows_out.append([release, release, value, source, how])
        out[name] = rows_out
    return out


_TORCHAO = f"{_QUANT}torchao.py"
_DEFAULT_LOADER = "vllm/model_executor/model_loader/default_loader.py"
_WEIGHT_UTILS = "vllm/model_executor/model_loader/weight_utils.py"


def _torchao_quant_type_keys(tree: SourceTree) -> Read | None:
    """The keys ``TorchAOConfig.from_config`` asserts ``quant_type`` has (``assert
    len(hf_config) == 1 and "default" in hf_config``): the ``"…" in`` tests of its asserts."""
    fn = _method(tree, _TORCHAO, "TorchAOConfig", "from_config")
    if fn is None:
        return None
    keys = sorted({c.left.value for a in ast.walk(fn) if isinstance(a, ast.Assert)
                   for c in ast.walk(a.test) if isinstance(c, ast.Compare)
                   and isinstance(c.ops[0], ast.In) and isinstance(c.left, ast.Constant)
                   and isinstance(c.left.value, str)})
    return keys, f"{_TORCHAO}:TorchAOConfig.from_config"


def _torchao_serialized(tree: SourceTree) -> Read | None:
    """When ``TorchAOConfig.from_config`` calls a config torchao-serialized: the source text
    of its ``is_checkpoint_torchao_serialized = …``."""
    fn = _method(tree, _TORCHAO, "TorchAOConfig", "from_config")
    value = _assigned([n for n in ast.walk(fn) if isinstance(n, ast.stmt)],
                      "is_checkpoint_torchao_serialized") if fn is not None else None
    if value is None:
        return None
    return ast.unparse(value), f"{_TORCHAO}:TorchAOConfig.from_config"


def _torchao_layers(tree: SourceTree) -> Read | None:
    """The layer class ``TorchAOConfig.get_quant_method`` builds with torchao (``if not
    isinstance(layer, LinearBase): return None``)."""
    fn = _method(tree, _TORCHAO, "TorchAOConfig", "get_quant_method")
    if fn is None:
        return None
    out = [_dotted(n.test.operand.args[1]) for n in ast.walk(fn)
           if isinstance(n, ast.If) and isinstance(n.test, ast.UnaryOp)
           and isinstance(n.test.op, ast.Not) and isinstance(n.test.operand, ast.Call)
           and _dotted(n.test.operand.func) == "isinstance" and len(n.test.operand.args) == 2
           and any(isinstance(s, ast.Return) for s in n.body)]
    return out, f"{_TORCHAO}:TorchAOConfig.get_quant_method"


def _torchao_load_strategy(tree: SourceTree) -> Read | None:
    """The ``safetensors_load_strategy`` ``DefaultModelLoader`` switches a torchao-serialized
    checkpoint to, and the torchao version that branch needs (``torchao_version_at_least``):
    ``{"strategy": "torchao", "torchao_at_least": "0.15.0"}``."""
    mod = _parse_path(tree, _DEFAULT_LOADER)
    if mod is None:
        return None
    for node in ast.walk(mod):
        if not (isinstance(node, ast.If)
                and "is_checkpoint_torchao_serialized" in ast.unparse(node.test)):
            continue
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant)
                    and any(_dotted(t) == "self.load_config.safetensors_load_strategy"
                            for t in stmt.targets)):
                need = next((c.args[0].value for c in ast.walk(node.test)
                             if isinstance(c, ast.Call)
                             and _dotted(c.func) == "torchao_version_at_least"
                             and c.args and isinstance(c.args[0], ast.Constant)), None)
                fn = next((f.name for f in ast.walk(mod) if isinstance(f, ast.FunctionDef)
                           and node in ast.walk(f)), "")
                return ({"strategy": stmt.value.value, "torchao_at_least": need},
                        f"{_DEFAULT_LOADER}:DefaultModelLoader.{fn}")
    return None


FORMAT_READERS.update({
    "torchao.quant_type_keys": _torchao_quant_type_keys,
    "torchao.serialized": _torchao_serialized,
    "torchao.layers": _torchao_layers,
    "torchao.load_strategy": _torchao_load_strategy,
    "torchao.unflatten": lambda t: imported_from(t, _WEIGHT_UTILS,
                                                 "torchao.prototype.safetensors"),
    "torchao.fp8_activation_check": lambda t: defines(
        t, _TORCHAO, "_check_torchao_fp8_activation_capability"),
})


_DSV4_CLASS = "DeepseekV4FP8Config"
_QUANT_INIT = f"{_QUANT}__init__.py"


def _dsv4_configs(tree: SourceTree) -> list[str]:
    """The files defining the ``DeepseekV4FP8Config`` classes ``quantization/__init__.py``
    imports (the ``deepseek_v4`` one and, from 0.30, the CUDA/ROCm ``deepseek_v41`` one),
    in import order; [] where it imports none (before 0.20)."""
    mod = _parse_path(tree, _QUANT_INIT)
    out: list[str] = []
    for node in ast.walk(mod) if mod is not None else ():
        if not (isinstance(node, ast.ImportFrom) and node.module
                and any(a.name == _DSV4_CLASS for a in node.names)):
            continue
        base = node.module.replace(".", "/")
        for cand in (f"{base}.py", f"{base}/quant_config.py", f"{base}/__init__.py"):
            if _class_node(tree, cand, _DSV4_CLASS) is not None and cand not in out:
                out.append(cand)
                break
    return out


def _dsv4_config_files(tree: SourceTree) -> Read | None:
    """The files of the DeepSeek-V4 fp8 config classes vLLM builds (sorted; [] before the
    release that has one)."""
    if _QUANT_INIT not in tree.files:
        return None
    return sorted(_dsv4_configs(tree)), f"{_QUANT_INIT}:import {_DSV4_CLASS}"


def _dsv4_expert_dtypes(tree: SourceTree) -> Read | None:
    """``_DEEPSEEK_V4_EXPERT_DTYPES``: the hf_config ``expert_dtype`` values the config
    accepts (anything else is a ValueError); [] where it reads no ``expert_dtype`` (0.20.0:
    every expert MXFP4) or there is no such config."""
    if _QUANT_INIT not in tree.files:
        return None
    paths = tuple(_dsv4_configs(tree))
    got = module_constant(tree, paths, "_DEEPSEEK_V4_EXPERT_DTYPES")
    if got is not None:
        return got
    return [], f"{paths[0] if paths else _QUANT_INIT}:{_DSV4_CLASS} (no _DEEPSEEK_V4_EXPERT_DTYPES)"


def _dsv4_any(tree: SourceTree, what: str, test: Any) -> Read | None:
    """Whether one of the DeepSeek-V4 config classes passes ``test(class node)``, citing the
    first that does (or the first class)."""
    if _QUANT_INIT not in tree.files:
        return None
    paths = _dsv4_configs(tree)
    for path in paths:
        node = _class_node(tree, path, _DSV4_CLASS)
        if node is not None and test(node):
            return True, f"{path}:{_DSV4_CLASS}{what}"
    return False, f"{paths[0] if paths else _QUANT_INIT}:{_DSV4_CLASS}"


def _reads_key(key: str) -> Any:
    return lambda node: any(isinstance(c, ast.Call) and _dotted(c.func) is not None
                            and str(_dotted(c.func)).endswith(".get") and c.args
                            and isinstance(c.args[0], ast.Constant) and c.args[0].value == key
                            for c in ast.walk(node))


def _names_in(method: str, name: str) -> Any:
    return lambda node: any(
        isinstance(f, ast.FunctionDef) and f.name == method
        and any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(f))
        for f in node.body)


FORMAT_READERS.update({
    "deepseek_v4.configs": _dsv4_config_files,
    "deepseek_v4.expert_dtypes": _dsv4_expert_dtypes,
    # quantization_config.get("moe_quant_algo"): NVFP4 experts (ModelOpt's re-quantizations)
    "deepseek_v4.moe_quant_algo": lambda t: _dsv4_any(
        t, "._resolved_moe_quant_algo", _reads_key("moe_quant_algo")),
    # _is_nvfp4_expert_layer: the config's `ignore` list keeps fused expert layers MXFP4
    "deepseek_v4.nvfp4_ignore": lambda t: _dsv4_any(
        t, "._is_nvfp4_expert_layer", lambda n: any(
            isinstance(f, ast.FunctionDef) and f.name == "_is_nvfp4_expert_layer"
            for f in n.body)),
    # get_quant_method builds MXFP8 Linear layers with ModelOptLinearMethod
    "deepseek_v4.mxfp8_linear": lambda t: _dsv4_any(
        t, ".get_quant_method", _names_in("get_quant_method", "ModelOptLinearMethod")),
})


def _dsv4_claims(tree: SourceTree) -> Read | None:
    """What the DeepSeek-V4 config classes' ``override_quantization_method`` claim: the
    ``quant_method`` values (``hf_quant_cfg.get("quant_method") in (…)``) and the
    ``model_type`` values (``model_type == …`` / ``model_type in (…)``), each the union over
    the classes, sorted; empty where there is no such class."""
    if _QUANT_INIT not in tree.files:
        return None
    methods: set[str] = set()
    types: set[str] = set()
    paths = _dsv4_configs(tree)
    widest, most = (paths[0] if paths else None), -1
    for path in paths:
        own: set[str] = set()
        fn = _method(tree, path, _DSV4_CLASS, "override_quantization_method")
        for c in ast.walk(fn) if fn is not None else ():
            if not (isinstance(c, ast.Compare) and len(c.ops) == 1):
                continue
            left, right = ast.unparse(c.left), c.comparators[0]
            if isinstance(c.ops[0], ast.Eq) and isinstance(right, ast.Constant):
                values = {str(right.value)}
            elif isinstance(c.ops[0], ast.In) and isinstance(right, ast.Tuple | ast.List):
                values = {str(e.value) for e in right.elts if isinstance(e, ast.Constant)}
            else:
                continue
            if left == "model_type":
                own |= values
            elif left == "hf_quant_cfg.get('quant_method')":
                methods |= values - {"quark"}  # Quark configs are handed back (None)
        types |= own
        if len(own) > most:  # cite the class that claims the most model types
            widest, most = path, len(own)
    cite = f"{widest}:{_DSV4_CLASS}.override_quantization_method" if widest else \
        f"{_QUANT_INIT}:import {_DSV4_CLASS}"
    return {"methods": sorted(methods), "model_types": sorted(types)}, cite


FORMAT_READERS["deepseek_v4.claims"] = _dsv4_claims
