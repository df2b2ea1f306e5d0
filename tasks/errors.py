"""The one error type the tasks show to users as a single line."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unusable environment: shown as one line, exit code 1, nothing changed."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An error's first non-empty line (its type name when it has no text), cut to ``limit``."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]
