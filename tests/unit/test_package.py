"""The import package: the collection loads on first use, nothing else is exported, and a task
loads its work only when it runs."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import compose_tasks


def test_the_collection_is_the_package_s_ns() -> None:
    from compose_tasks import ns  # what a project's tasks.py writes

    assert {"build", "clear-caches", "deploy", "rollback", "history"} <= set(ns.task_names)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = compose_tasks.nope


def test_each_task_s_work_takes_exactly_its_declared_flags() -> None:
    from compose_tasks import ns

    for name in ns.task_names:
        declared = ns[name].body
        package, _, module = declared.__module__.rpartition(".")
        work = getattr(importlib.import_module(f"{package}._{module}"), declared.__name__)
        assert inspect.signature(work) == inspect.signature(declared), name


def test_the_collection_loads_no_task_s_work() -> None:
    """``invoke --list`` and ``--help`` load the declarations: no plan, engine or rollout code."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; from compose_tasks import ns; print(*sys.modules)"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2],
    ).stdout.split()  # fmt: skip
    ours = {name for name in loaded if name.startswith("compose_tasks.")}
    assert "compose_tasks.build" in ours
    work = ("_", "buildplan", "docker", "dockerfile", "rollout", "report")
    assert not [name for name in ours if name.startswith(tuple(f"compose_tasks.{w}" for w in work))]
