"""``.dockerignore`` matching: which context paths a build leaves out."""

from __future__ import annotations

import re
from collections.abc import Sequence


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


def ignored(patterns: Sequence[str], path: str) -> bool:
    """Whether a context path is excluded by .dockerignore lines (the last match wins)."""
    result = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        cleaned = line[1:].strip() if negate else line
        cleaned = cleaned.strip("/")
        while cleaned.startswith("./"):
            cleaned = cleaned[2:]
        if cleaned and _ignore_pattern(cleaned).match(path):
            result = not negate
    return result
