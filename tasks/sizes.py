"""Sizes in bytes, read and written as people write them (``10GB``, ``512MiB``)."""

from __future__ import annotations

import re

from compose_tasks.errors import UserError

_SIZE = re.compile(r"^(\d{1,15}(?:\.\d{1,6})?)\s*(?:([kmgt])(i)?)?(b)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``10GB``, ``512MiB``, ``2g`` or plain bytes into bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise UserError(f"invalid size {text!r}: expected e.g. 512MB, 10GB, 1GiB")
    unit = (match[2] or "").lower()
    factor = (1024 if match[3] else 1000) ** " kmgt".index(unit) if unit else 1
    return int(float(match[1]) * factor)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}TB"
