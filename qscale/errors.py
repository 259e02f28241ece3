"""Every exception qscale raises.

Each error subclasses :class:`QscaleError` and the builtin it resembles, so callers can catch
either. An error names the object and the problem in one line; ``hint`` says what to do next.
Errors about the checkpoint itself carry the code of the input rule (``QS0xx``) they break, so
that ``qscale rule QS003`` explains them like any other rule.

This module imports nothing from qscale, so that every other module can import it. The load
guard's :class:`~qscale.guard.LoadGuardError` lives in :mod:`qscale.guard`, next to the report
it carries (that module imports torch).
"""

from __future__ import annotations


class QscaleError(Exception):
    """Base class: qscale could not finish (exit code 2)."""

    default_hint: str = ""
    default_code: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.code = code if code is not None else self.default_code

    def __str__(self) -> str:
        return self.message


class CheckpointNotFound(QscaleError, FileNotFoundError):
    """The path does not exist or holds no safetensors file."""

    default_hint = "pass a checkpoint folder, a .safetensors file, or a Hub repo id (org/name)"


class HeaderError(QscaleError, ValueError):
    """A safetensors file is truncated or its header is malformed."""

    default_hint = "the file is damaged or was not fully downloaded; fetch it again"


class ShardIndexError(QscaleError, ValueError):
    """``model.safetensors.index.json`` disagrees with the files in the folder."""

    default_hint = "re-download the checkpoint, or rebuild the index with `qscale fix`"


class UnsafePathError(QscaleError, PermissionError):
    """An index entry or a link points outside the checkpoint folder."""

    default_hint = "refusing to read outside the checkpoint folder; inspect the index by hand"


class ConfigError(QscaleError, ValueError):
    """``config.json`` or a quantization config file is missing or malformed."""

    default_hint = "check the quantization_config block against the quantizer's documentation"
    default_code = "QS101"


class UnknownFormat(QscaleError, LookupError):
    """The quantization method is not one qscale models."""

    default_code = "QS102"


class UnknownEngine(QscaleError, LookupError):
    """The ``--engine`` spec names no known engine."""

    default_hint = "use e.g. --engine vllm==0.19.1 or --engine sglang==0.5.12"


class UsageError(QscaleError, ValueError):
    """Options that contradict each other or name nothing."""


class BaselineError(QscaleError, ValueError):
    """A ``--baseline`` file is missing, unreadable, or not a qscale baseline."""

    default_hint = "regenerate it with `qscale check PATH --write-baseline FILE`"


class NumericsError(QscaleError, ValueError):
    """Tensors ``qscale fix`` must requantize or dequantize do not fit the format."""

    default_hint = (
        "run `qscale check` on the checkpoint: the tensors named above are missing, misshapen"
        " or hold non-finite values, so this unsafe fix cannot be applied"
    )


class HubError(QscaleError, ConnectionError):
    """The Hugging Face Hub (or the endpoint ``HF_ENDPOINT`` names) could not be read."""

    default_hint = (
        "check the network and HF_ENDPOINT; with HF_HUB_OFFLINE=1 qscale reads a repo from the"
        " local Hugging Face cache"
    )


class HubNotFound(HubError, FileNotFoundError):
    """A Hub repo or revision does not exist (or is private and no valid token was sent)."""

    default_hint = (
        "check the repo id and revision; for a private repo run `hf auth login` or set HF_TOKEN"
    )


class HubAccessDenied(HubError, PermissionError):
    """A Hub repo exists but the token in use may not read it (gated, or not permitted)."""

    default_hint = (
        "request access on the repo's Hub page, then run `hf auth login` or set HF_TOKEN"
    )
