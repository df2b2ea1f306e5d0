"""The run's trace: every command and engine call, named, masked, timed (no docker)."""

from __future__ import annotations

import sys

import pytest

from compose_tasks import mask
from compose_tasks.docker import trace
from compose_tasks.docker.runner import Runner, traced
from compose_tasks.docker.sdk import mapped
from compose_tasks.errors import Unreachable

PY = sys.executable


def recorded(since: int) -> list[trace.Call]:
    return trace.calls()[since:]


def test_every_command_run_or_streamed_is_one_timed_call() -> None:
    since = len(trace.calls())
    Runner().run([PY, "-c", "import time; time.sleep(0.05)", "first"])
    Runner().stream([PY, "-c", "print()", "second"], lambda line: None)
    Runner().run(["no-such-command-here"])  # not installed: still a call
    calls = recorded(since)
    assert [call.what.split()[-1] for call in calls] == ["first", "second", "no-such-command-here"]
    assert calls[0].seconds >= 0.05
    assert calls[1].at >= calls[0].at + calls[0].seconds


def test_a_traced_command_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mask, "_active", mask.Masker(["s3cr3t-value"]))
    assert traced(["docker", "login", "-p", "s3cr3t-value"]) == f"docker login -p {mask.MASK}"


def test_an_engine_call_is_traced_even_when_it_fails() -> None:
    since = len(trace.calls())
    with pytest.raises(Unreachable), mapped("image web:1"):
        raise ConnectionError("refused")
    [call] = recorded(since)
    assert call.what == "engine: image web:1"
