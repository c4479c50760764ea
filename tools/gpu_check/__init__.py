"""The one-command GPU check (``make gpu-check``); see ``run.py`` and ``README.md``."""
