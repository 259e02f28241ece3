"""vLLM general plugin: run :func:`qscale.guard.check_loaded` on every model vLLM loads.

Registered in pyproject.toml under ``[project.entry-points."vllm.general_plugins"]`` as
``qscale_guard``; vLLM calls :func:`register` in every process it starts (front end, engine
core, workers). It does nothing unless ``QSCALE_GUARD=1``. Then it wraps
``DefaultModelLoader.load_weights`` (vllm/model_executor/model_loader/default_loader.py, the
loader of safetensors checkpoints; the same method from 0.19.1 to 0.32.0): vLLM's
``BaseModelLoader.load_model`` calls it and then ``process_weights_after_loading``, so the guard
sees every scale slot exactly as the weight loader left it, before processing collapses them.
A failed check raises :class:`~qscale.guard.LoadGuardError` and vLLM does not start.

``QSCALE_GUARD_PLAN=1`` also builds qscale's load plan for the running vLLM version from the
model's local folder (or its Hugging Face cache snapshot) and compares every per-tensor scale slot
with it. The plan is skipped, with a warning, when it cannot be built (a family or format qscale
does not model, a remote-only model) and under pipeline or expert parallelism (a rank then holds
only some layers or experts). Other loaders (``sharded_state``, ``runai_streamer``, ``gguf``,
``bitsandbytes``, ...) are not guarded.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qscale.engines.loader import LoadPlan

__all__ = ["ENV_GUARD", "ENV_PLAN", "guard_loader_class", "register"]

ENV_GUARD = "QSCALE_GUARD"
ENV_PLAN = "QSCALE_GUARD_PLAN"
_HOOK = ("vllm.model_executor.model_loader.default_loader", "DefaultModelLoader")
_MARK = "__qscale_guard__"
#: A child of vLLM's logger, so that these lines appear in vLLM's own log output.
log = logging.getLogger("vllm.qscale_guard")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def register() -> None:
    """Entry point of ``vllm.general_plugins``. Never raises: vLLM does not catch plugin errors."""
    if not _flag(ENV_GUARD):
        return
    module_name, class_name = _HOOK
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        log.warning("qscale guard is NOT active: no %s.%s (%s)", module_name, class_name, exc)
        return
    if guard_loader_class(cls):
        log.info("qscale guard: checking scale slots after %s.load_weights", class_name)


def guard_loader_class(cls: type) -> bool:
    """Wrap ``cls.load_weights(model, model_config, ...)`` so that the guard checks ``model``
    when it returns. Idempotent; False (and a warning) when ``cls`` has no ``load_weights``."""
    original = getattr(cls, "load_weights", None)
    if not callable(original):
        log.warning("qscale guard is NOT active: %s has no load_weights", cls.__name__)
        return False
    if getattr(original, _MARK, False):
        return True

    @functools.wraps(original)
    def load_weights(self: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, model, *args, **kwargs)
        model_config = args[0] if args else kwargs.get("model_config")
        _check(model, model_config, getattr(self, "load_config", None))
        return result

    setattr(load_weights, _MARK, True)
    setattr(cls, "load_weights", load_weights)  # noqa: B010  (a method of a foreign class)
    return True


def _check(model: Any, model_config: Any, load_config: Any) -> None:
    from qscale.guard import LoadGuardError, check_loaded

    plan = _plan(model_config, load_config) if _flag(ENV_PLAN) else None
    source = getattr(model_config, "model", "?")
    try:
        report = check_loaded(model, plan)
    except LoadGuardError as exc:
        hint = (
            f"do not serve this model; run `qscale check {source} --engine"
            f" vllm=={_vllm_version()}` to see which checkpoint tensors feed these scales"
            f" (unset {ENV_GUARD} to load it anyway)"
        )
        # vLLM logs str(exc) only, so the hint goes into the message too
        raise LoadGuardError(
            f"qscale guard, vLLM {_vllm_version()}, `{source}`: {exc.message}. Hint: {hint}",
            hint=hint,
            report=exc.report,
        ) from None
    log.info(
        "qscale guard: %s ok (%d scale parameters checked, %d compared with the plan,"
        " %d too large to inspect)",
        source,
        len(report.checked),
        len(report.compared),
        len(report.skipped),
    )


def _plan(model_config: Any, load_config: Any) -> LoadPlan | None:
    """qscale's load plan for the running vLLM, or None (with a warning) when it has none."""
    from qscale.checkpoint import read_local_checkpoint
    from qscale.engines.loader import plan_load

    source = getattr(model_config, "model", None)
    why = _parallel_layout()
    if why:
        log.warning("qscale guard: load plan skipped (%s); checking scale values only", why)
        return None
    try:
        folder = _local_folder(str(source), model_config, load_config)
        return plan_load(read_local_checkpoint(folder), f"vllm=={_vllm_version()}")
    except Exception as exc:  # any failure only costs the comparison, never the value checks
        log.warning(
            "qscale guard: no load plan for %s (%s: %s); checking scale values only",
            source,
            type(exc).__name__,
            exc,
        )
        return None


def _parallel_layout() -> str:
    """Why the plan does not describe this rank's model ('' when it does)."""
    try:
        config = importlib.import_module("vllm.config").get_current_vllm_config_or_none()
    except (ImportError, AttributeError):
        return ""
    parallel = getattr(config, "parallel_config", None)
    if getattr(parallel, "pipeline_parallel_size", 1) > 1:
        return "pipeline parallelism: this rank holds only some layers"
    if getattr(parallel, "enable_expert_parallel", False):
        return "expert parallelism: this rank holds only some experts"
    return ""


def _local_folder(source: str, model_config: Any, load_config: Any) -> Path:
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            source,
            revision=getattr(model_config, "revision", None),
            cache_dir=getattr(load_config, "download_dir", None),
            local_files_only=True,
        )
    )


def _vllm_version() -> str:
    try:
        return str(importlib.import_module("vllm").__version__)
    except (ImportError, AttributeError):
        return "unknown"
