"""Where a run's time goes: every command it runs and every engine call it makes, timed.

``invoke build --json`` reports them as ``calls`` (what, when it started, how long, both in
seconds from the start of the run); commands appear masked, as they are displayed."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

_START = time.perf_counter()


@dataclass(frozen=True)
class Call:
    """One command or engine call: what it was, when it started and how long it took."""

    what: str
    at: float
    seconds: float


_calls: list[Call] = []


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Record the block as one call named ``what`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        end = time.perf_counter()
        _calls.append(Call(what, round(start - _START, 4), round(end - start, 4)))


def calls() -> list[Call]:
    """Every call recorded so far, in the order they ended."""
    return list(_calls)
