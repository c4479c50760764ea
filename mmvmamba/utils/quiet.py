"""Silence the frameworks' known deprecation noise in our entry points; genuine warnings show.

mmengine checks installed packages through ``pkg_resources``, whose import (repeated on every
check) warns that ``pkg_resources is deprecated``; that and the other notes listed in
:data:`KNOWN_NOISE` say nothing to a user of our tools. Each filter names one message (and the
module it comes from where that is stable), so any other warning still reaches the user.
This module imports only the standard library, so a tool can call
:func:`quiet_known_warnings` before it imports a framework.
"""

from __future__ import annotations

import contextlib
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

    Call it at the top of an entry point, before the frameworks are imported. Idempotent.
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
