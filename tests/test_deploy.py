"""Deploy lock and history without an engine."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tasks.errors import UserError
from tasks.settings import Settings, load
from tasks.state import Target, deploy_lock, last_good, read_history, record

TARGET = Target("ssh://deploy@prod", "shop")


def settings_in(tmp_path: Path) -> Settings:
    """Settings of a project in ``tmp_path/proj`` whose user folders are in ``tmp_path/home``."""
    (tmp_path / "proj").mkdir()
    home = {"HOME": str(tmp_path / "home")}
    return load({}, environ=home, cwd=tmp_path / "proj")


def test_history_is_appended_and_last_good_skips_failures(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    record(settings, TARGET, {"action": "deploy", "sha": "aaa", "result": "ok"})
    record(settings, TARGET, {"action": "deploy", "sha": "bbb", "result": "failed"})
    record(settings, TARGET, {"action": "rollback", "sha": "aaa", "result": "ok"})
    entries = read_history(settings, TARGET)
    assert [e["sha"] for e in entries] == ["aaa", "bbb", "aaa"]
    assert {"time", "user", "host", "project"} <= set(entries[0])
    assert last_good(settings, TARGET) == "aaa"
    assert last_good(settings, TARGET, other_than="aaa") == ""
    assert settings.state_dir.is_relative_to(tmp_path / "home" / ".local" / "state")
    assert list((tmp_path / "proj").iterdir()) == []  # nothing written into the project


def test_lock_refuses_live_holder_and_detects_dead_one(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    with deploy_lock(settings, TARGET, break_lock=False):
        (lock,) = settings.state_dir.glob("lock-*.json")
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


@pytest.mark.parametrize(
    "holder",
    [
        {"pid": 1, "user": "ann", "machine": socket.gethostname(), "since": "then"},  # alive
        {"pid": 123, "user": "ann", "machine": "other-host", "since": "then"},  # cannot tell
        {"user": "ann"},  # no pid
    ],
)
def test_break_lock_refuses_a_holder_not_proven_gone(
    tmp_path: Path, holder: dict[str, object]
) -> None:
    settings = settings_in(tmp_path)
    settings.state_dir.mkdir(parents=True)
    lock = settings.state_dir / f"lock-{TARGET.key}.json"
    lock.write_text(json.dumps(holder))
    with (
        pytest.raises(UserError, match="is locked by ann@"),
        deploy_lock(settings, TARGET, break_lock=True),
    ):
        pass
    assert json.loads(lock.read_text()) == holder


def test_corrupt_history_line_is_one_clear_error(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    record(settings, TARGET, {"action": "deploy", "sha": "aaa", "result": "ok"})
    path = next(settings.state_dir.glob("history-*.jsonl"))
    path.write_text(path.read_text() + '{"time": "2026-01-01", "act')
    with pytest.raises(UserError, match=r"corrupt deploy history .* line 2"):
        read_history(settings, TARGET)
