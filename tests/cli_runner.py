"""``qscale ARGS`` run the way the tests run it: in process through ``qscale.cli.main`` (the
console script's entry point: argument parsing, the ``error:``/``hint:`` mapping and the exit
code), or in a fresh interpreter for what only a new process shows (start-up imports, the
traceback ``--debug`` lets through, the exit status the OS sees).

In process is some 20x faster: a subprocess pays about a second of interpreter start-up and
imports per call and tests nothing more about the command.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

RunCli = Callable[..., "subprocess.CompletedProcess[str]"]
TIMEOUT = 120  #: seconds a CLI run may take, in process or not


def _env_without_debug(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "QSCALE_DEBUG"}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _chdir(path: Path | str) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


class CliTimeout(BaseException):
    """A CLI run past its time limit (a BaseException: ``main()`` must not catch it)."""


@contextlib.contextmanager
def _time_limit(args: tuple[str, ...], seconds: int) -> Iterator[None]:
    """Stop the run after ``seconds``, as ``subprocess.run(timeout=)`` would."""

    def expired(*_: object) -> None:
        raise CliTimeout(f"qscale {' '.join(args)} ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cli_in_process(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """``qscale ARGS`` through ``qscale.cli.main`` in this process, with what a fresh process
    would have: its own argv, empty stdout and stderr (not terminals), the environment without
    ``QSCALE_DEBUG`` (plus ``env``), the working directory ``cwd``, Python's default warning
    filters printing to stderr, and a root logger without handlers (restored after)."""
    from qscale.cli import main

    # what a fresh process writes to pipes: UTF-8, strict on stdout, backslashreplace on stderr
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="backslashreplace", write_through=True)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    argv = sys.argv
    code: int
    with contextlib.ExitStack() as stack:
        stack.enter_context(_environ(_env_without_debug(env)))
        if cwd is not None:
            stack.enter_context(_chdir(cwd))
        stack.enter_context(warnings.catch_warnings())
        warnings.resetwarnings()
        for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", cat)
        warnings.showwarning = _show_warning
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        stack.enter_context(_time_limit(args, TIMEOUT))
        sys.argv = ["qscale", *args]
        # a fresh process's root logger: no handlers (warnings reach stderr through logging's
        # last-resort handler, not pytest's capture), level WARNING
        root.handlers[:] = []
        root.setLevel(logging.WARNING)
        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except Exception:  # what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
        finally:
            sys.argv = argv
            root.handlers[:] = handlers
            root.setLevel(level)
            sys.stdout.flush()
            sys.stderr.flush()
    return subprocess.CompletedProcess(
        ["qscale", *args], code, _text(out_b.getvalue()), _text(err_b.getvalue())
    )


def _text(raw: bytes) -> str:
    """``raw`` as ``subprocess.run(..., text=True)`` reads a pipe (universal newlines)."""
    return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def cli_subprocess(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m qscale ARGS`` in a fresh interpreter (start-up and the OS exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "qscale", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env_without_debug(env),
        cwd=cwd,
    )


def cli_forked(
    *args: str, env: Mapping[str, str], fresh: tuple[str, ...] = ("huggingface_hub", "qscale.hub")
) -> subprocess.CompletedProcess[str]:
    """``qscale ARGS`` in a child forked from this process, as ``python -m qscale`` with
    exactly the environment ``env``, without a fresh interpreter's start-up and imports.

    The modules named in ``fresh`` (and their submodules) are imported anew in the child, so
    that what they read from the environment at import is the child's: huggingface_hub reads
    HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN then. The child gets
    stdout and stderr of its own (files; read back as ``subprocess.run(text=True)`` reads
    pipes), an empty root logger and the default warning filters, runs ``qscale.cli.main``,
    and leaves with ``os._exit``: it never returns into pytest."""
    from qscale.cli import main  # imported before the fork: the child only runs it

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(  # noqa: SIM115
                    2, "w", encoding="utf-8", errors="backslashreplace", closefd=False
                )
                logging.getLogger().handlers.clear()
                warnings.resetwarnings()
                for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                            ResourceWarning):
                    warnings.simplefilter("ignore", cat)
                warnings.showwarning = _show_warning
                os.environ.clear()
                os.environ.update(env)
                prefixes = tuple(f"{m}." for m in fresh)
                for name in [n for n in sys.modules if n in fresh or n.startswith(prefixes)]:
                    del sys.modules[name]
                sys.argv = ["qscale", *args]
                try:
                    main()
                    code = 0
                except SystemExit as exc:
                    if exc.code is None or isinstance(exc.code, int):
                        code = exc.code or 0
                    else:
                        print(exc.code, file=sys.stderr)
                except BaseException:  # what the interpreter does with an uncaught exception
                    traceback.print_exc()
            finally:
                with contextlib.suppress(BaseException):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        deadline = time.monotonic() + TIMEOUT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise CliTimeout(f"qscale {' '.join(args)} ran past {TIMEOUT} s")
            time.sleep(0.005)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            ["qscale", *args], os.waitstatus_to_exitcode(status), _text(out.read()),
            _text(err.read()),
        )
