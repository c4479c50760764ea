"""Silence the frameworks' known deprecation noise in our entry points; genuine warnings show.

mmengine checks installed packages through ``pkg_resources``, whose import (repeated on every
check) warns that ``pkg_resources is deprecated``; that and the other notes listed in
:data:`KNOWN_NOISE` say nothing to a user of our tools. Each filter names one message (and the
module it comes from where that is stable), so any other warning still reaches the user.
mmengine's own deprecation notes go through its logger instead (:data:`KNOWN_LOG_NOISE`,
:func:`quiet_known_log_records`). This module imports only the standard library; importing it
through the package loads the frameworks under :func:`known_warnings_quieted`
(``mmvmamba/__init__.py``), and :func:`quiet_known_warnings` then keeps the same notes quiet for
the rest of the run.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

# (message regex, category, module regex): what the frameworks and their dependencies warn about
# on every run, which the user can do nothing about
KNOWN_NOISE: tuple[tuple[str, type[Warning], str], ...] = (
    # setuptools, on `import pkg_resources` (mmengine.utils.package_utils, mmcv, mmdet, mmseg)
    (r"pkg_resources is deprecated as an API", Warning, ""),
    (r"Deprecated call to `pkg_resources\.declare_namespace", Warning, ""),
    # mmseg's own code and its ADE20K base config (LoadAnnotations(reduce_zero_label=True))
    (r"``build_loss`` would be deprecated soon", UserWarning, r"mmseg\."),
    (r"`reduce_zero_label` will be deprecated", UserWarning, r"mmseg\."),
    # mmseg's default_runtime: a visualization hook that is off says so on every run
    (r"The draw is False, it means that the hook for visualization", UserWarning, r"mmseg\."),
)


def _install() -> None:
    for message, category, module in KNOWN_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def quiet_known_warnings() -> None:
    """Ignore the warnings of :data:`KNOWN_NOISE` for the rest of the process.

    Call it at the top of an entry point. Idempotent.
    """
    _install()


@contextlib.contextmanager
def known_warnings_quieted() -> Iterator[None]:
    """Ignore the warnings of :data:`KNOWN_NOISE` inside the ``with`` block only.

    ``import mmvmamba`` imports the frameworks inside one, so importing the package leaves the
    caller's warning filters as they were.
    """
    with warnings.catch_warnings():
        _install()
        yield


# mmengine 0.10.7's CheckpointHook asks for a FileClient at the start of every training run and
# logs these two deprecation notes about its own API
KNOWN_LOG_NOISE: tuple[str, ...] = (
    r'"FileClient" will be deprecated in future',
    r'"HardDiskBackend" is the alias of "LocalBackend"',
)


class _KnownLogNoise(logging.Filter):
    pattern = re.compile("|".join(KNOWN_LOG_NOISE))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_known_log_records(logger: logging.Logger) -> None:
    """Drop the records of :data:`KNOWN_LOG_NOISE` from ``logger`` (a runner's ``MMLogger``).

    Idempotent; other records, warnings included, pass unchanged.
    """
    if not any(isinstance(f, _KnownLogNoise) for f in logger.filters):
        logger.addFilter(_KnownLogNoise())
