"""The import package: the collection loads on first use, and nothing else is exported."""

from __future__ import annotations

import pytest

import compose_tasks


def test_the_collection_is_the_package_s_ns() -> None:
    from compose_tasks import ns  # what a project's tasks.py writes

    assert {"build", "clear-caches", "deploy", "rollback", "history"} <= set(ns.task_names)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = compose_tasks.nope
