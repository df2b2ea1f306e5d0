"""Deploy lock and history without an engine."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tasks.deploy import Target, deploy_lock, last_good, read_history, record
from tasks.errors import UserError
from tasks.settings import load

TARGET = Target("ssh://deploy@prod", "shop")


def test_history_is_appended_and_last_good_skips_failures(tmp_path: Path) -> None:
    settings = load({}, environ={}, cwd=tmp_path)
    record(settings, TARGET, {"action": "deploy", "sha": "aaa", "result": "ok"})
    record(settings, TARGET, {"action": "deploy", "sha": "bbb", "result": "failed"})
    record(settings, TARGET, {"action": "rollback", "sha": "aaa", "result": "ok"})
    entries = read_history(settings, TARGET)
    assert [e["sha"] for e in entries] == ["aaa", "bbb", "aaa"]
    assert {"time", "user", "host", "project"} <= set(entries[0])
    assert last_good(settings, TARGET) == "aaa"
    assert last_good(settings, TARGET, other_than="aaa") == ""
    assert (tmp_path / ".deploy" / ".gitignore").read_text().endswith("*\n")


def test_lock_refuses_live_holder_and_detects_dead_one(tmp_path: Path) -> None:
    settings = load({}, environ={}, cwd=tmp_path)
    with deploy_lock(settings, TARGET, break_lock=False):
        (lock,) = (tmp_path / ".deploy").glob("lock-*.json")
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with (
            pytest.raises(UserError, match="is locked by"),
            deploy_lock(settings, TARGET, break_lock=False),
        ):
            pass
    assert not lock.exists()
    dead = {"pid": 2**22 + 7, "user": "bob", "machine": socket.gethostname(), "since": "then"}
    lock.write_text(json.dumps(dead))
    with (
        pytest.raises(UserError, match="stale deploy lock: bob@"),
        deploy_lock(settings, TARGET, break_lock=False),
    ):
        pass
    with deploy_lock(settings, TARGET, break_lock=True):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
