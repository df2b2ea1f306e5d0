"""The one error type the tasks show to users as a single line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unusable environment: shown as one line, exit code 1, nothing changed."""
