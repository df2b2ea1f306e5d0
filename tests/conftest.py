"""Fixtures and the engine gate: engine tests skip with the reason, or fail under CI=true."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, engine_problem, new_stack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    engine_items = [item for item in items if "engine" in item.keywords]
    if not engine_items:
        return
    problem = engine_problem()
    if not problem:
        return
    if os.environ.get("CI") == "true":
        for item in engine_items:
            item.add_marker(pytest.mark.usefixtures("_engine_required_in_ci"))
        return
    for item in engine_items:
        item.add_marker(pytest.mark.skip(reason=f"engine test skipped: {problem}"))


@pytest.fixture
def _engine_required_in_ci() -> None:
    pytest.fail(f"CI=true but engine tests cannot run: {engine_problem()}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A git-committed compose project with one service ``app`` (not yet built)."""
    project = new_stack(tmp_path / "proj")
    yield project
    project.cleanup()
