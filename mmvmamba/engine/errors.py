"""Which exceptions of a tool run are configuration mistakes, and their one-line report.

A mistake in the config or on the command line (missing file, unknown ``type``, unknown
argument, bad value, a checkpoint that does not fit) is reported as one ``error:`` line and
exit status 2. Everything else keeps its traceback: a ``RuntimeError`` (or any exception)
raised inside a model's ``forward`` or by torch, and every exception after the run has started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from mmengine.hooks import Hook
from torch import nn

from ..checkpoint.io import CheckpointError

# what mmengine / the registries / our own checks raise for a bad config or argument; a plain
# RuntimeError is not among them: it comes from inside torch or a model
CONFIG_MISTAKES = (
    FileNotFoundError,
    KeyError,
    TypeError,
    ValueError,
    AssertionError,
    SyntaxError,
    ImportError,
    AttributeError,
    CheckpointError,
)


class SetupDoneHook(Hook):
    """Marks the moment the runner finished building (loops, data, weights, resume state).

    Errors raised before it may be configuration mistakes (shown as one line by
    :func:`config_errors`); errors after it are run-time failures (full traceback).
    """

    priority = "HIGHEST"

    def __init__(self) -> None:
        self.done = False

    def before_train(self, runner) -> None:  # noqa: D102
        self.done = True

    def before_test(self, runner) -> None:  # noqa: D102
        self.done = True

    def before_val(self, runner) -> None:  # noqa: D102
        self.done = True


def _raised_in_forward(exc: BaseException) -> bool:
    """Whether ``exc`` (or the exception it was re-raised from) passed through a module call."""
    module_call = nn.Module._call_impl.__code__
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code is module_call:
                return True
            tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def is_config_mistake(exc: BaseException) -> bool:
    """Whether ``exc``, raised while a run is set up, is a mistake in the config or arguments.

    ``True`` for the types in :data:`CONFIG_MISTAKES` unless the exception was raised during a
    module's forward; a ``RuntimeError`` is never one (except :class:`CheckpointError`).
    """
    return isinstance(exc, CONFIG_MISTAKES) and not _raised_in_forward(exc)


@contextmanager
def config_errors(debug: bool = False, setup_hook: SetupDoneHook | None = None) -> Iterator[None]:
    """Turn configuration mistakes raised while a run is set up into a one-line ``error:``.

    Covers a missing config or base file, an unknown ``type`` (registry ``KeyError``), an
    unknown argument (``TypeError``), bad values, a missing dataset file and a checkpoint that
    does not fit (:func:`is_config_mistake`). Other exceptions, and every exception once
    ``setup_hook`` has fired (training/testing started), propagate with their traceback.
    ``debug=True`` (``--debug`` or ``MMVMAMBA_DEBUG=1``) always re-raises. Exits with status 2
    after printing.
    """
    try:
        yield
    except CONFIG_MISTAKES as exc:
        if debug or os.environ.get("MMVMAMBA_DEBUG") == "1":
            raise
        if (setup_hook is not None and setup_hook.done) or not is_config_mistake(exc):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        msg = " ".join(str(msg).split())
        print(
            f"error: {type(exc).__name__}: {msg}\n"
            "(rerun with --debug or MMVMAMBA_DEBUG=1 for the full traceback)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
