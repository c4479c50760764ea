"""Small helpers without framework imports (safe to import before mmengine and friends)."""

from .quiet import known_warnings_quieted, quiet_known_log_records, quiet_known_warnings

__all__ = ["known_warnings_quieted", "quiet_known_log_records", "quiet_known_warnings"]
