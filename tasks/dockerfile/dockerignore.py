"""``.dockerignore`` matching: which context paths a build leaves out."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence


@functools.lru_cache(maxsize=1024)
def _ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated context paths."""
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(f"^{out}(?:/.*)?$")


@functools.lru_cache(maxsize=64)
def _rules(patterns: tuple[str, ...]) -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """The lines that match something, in order: (negated, pattern)."""
    rules = []
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        cleaned = line[1:].strip() if negate else line
        cleaned = cleaned.strip("/")
        while cleaned.startswith("./"):
            cleaned = cleaned[2:]
        if cleaned:
            rules.append((negate, _ignore_pattern(cleaned)))
    return tuple(rules)


def ignored(patterns: Sequence[str], path: str) -> bool:
    """Whether a context path is excluded by .dockerignore lines (the last match wins)."""
    result = False
    for negate, pattern in _rules(tuple(patterns)):
        if pattern.match(path):
            result = not negate
    return result
