"""Small helpers that import only the standard library.

Importing them runs ``mmvmamba/__init__.py`` first, which loads the frameworks inside
:func:`known_warnings_quieted`, so their import-time noise stays quiet either way.
"""

from .quiet import known_warnings_quieted, quiet_known_log_records, quiet_known_warnings

__all__ = ["known_warnings_quieted", "quiet_known_log_records", "quiet_known_warnings"]
