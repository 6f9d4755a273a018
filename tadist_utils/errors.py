"""The two errors a user sees as one line, not a traceback: imported by every module, importing none."""
from __future__ import annotations


class ConfigError(ValueError):
    """Bad user input, reported as one line before anything trains."""

    def _render_traceback_(self):  # IPython/Jupyter/papermill: one line in any cell, not a traceback wall
        return [f"{type(self).__name__}: {self}"]


class RunError(ConfigError):
    """Something found while running that the user has to fix (a full disk, a diverged loss): one line too."""
