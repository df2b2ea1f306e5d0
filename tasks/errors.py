"""The errors the tasks show to users as a single line (exit code 1).

- ``UserError``: bad input or an unusable environment, found before anything changed.
- ``Failed``: the task ran and did not succeed; what it changed is in its output.
- ``CacheGate``: a build that succeeded without the cache the gate requires (exit code 3).
- ``EngineError`` (``NotFound``, ``Conflict``, ``Unreachable``): an engine call failed; the SDK's
  failures become these in one place (``compose_tasks.docker.sdk``).
"""

from __future__ import annotations

import re


class UserError(Exception):
    """Bad input or an unusable environment: shown as one line, exit code 1, nothing changed."""


class Failed(Exception):
    """The task ran and did not succeed (a build, a deploy, a removal): one line, exit code 1."""


class CacheGate(Failed):
    """``--require-cache``: the build succeeded but the cache did not serve as predicted
    (exit code 3, so CI can tell it from a failed build)."""


class EngineError(Exception):
    """A Docker engine call failed (``status``: the engine's HTTP answer, None without one)."""

    def __init__(self, text: str, status: int | None = None) -> None:
        super().__init__(text)
        self.status = status


class NotFound(EngineError):
    """The object asked for is not there."""


class Conflict(EngineError):
    """The engine refused because of another object (a name taken, an image in use)."""


class Unreachable(EngineError):
    """The engine (or its transport) did not answer."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An error's first non-empty line (its type name when it has no text), cut to ``limit``."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:limit]


def gist(exc: BaseException) -> str:
    """An error's gist: the OS error inside a connection failure, else its first line."""
    text = str(exc).strip()
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)|\w+Error\(\d+, '([^']+)'\)", text)
    if errno:
        return (errno.group(1) or errno.group(2)).strip()
    return first_line(exc)
