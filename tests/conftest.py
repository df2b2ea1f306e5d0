"""Fixtures and the engine gate: engine tests skip with the reason, or fail under CI=true.

The gate asks the engine only when the first engine test is about to run: a unit run
(``-m "not engine"``) makes no docker call at all.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, engine_problem, new_stack


@functools.cache
def _problem() -> str:
    return engine_problem()


@pytest.fixture(autouse=True)
def _engine_gate(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip an engine test with the reason (fail it under CI=true) when no engine can run it;
    a unit test runs as if no engine were named (what it says of one is the default socket)."""
    if request.node.get_closest_marker("engine") is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        return
    problem = _problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but engine tests cannot run: {problem}")
    if problem:
        pytest.skip(f"engine test skipped: {problem}")


_engine_passed: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "engine" in report.keywords:
        _engine_passed.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true, an engine pass in which no engine test passed proved nothing: a failure."""
    selected = [item for item in session.items if item.get_closest_marker("engine")]
    if os.environ.get("CI") == "true" and selected and not _engine_passed and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI=true: none of the {len(selected)} engine tests selected passed "
                "(every one skipped): this pass proved nothing"
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A git-committed compose project with one service ``app`` (not yet built)."""
    project = new_stack(tmp_path / "proj")
    yield project
    project.cleanup()
