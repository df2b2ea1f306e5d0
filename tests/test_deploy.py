"""The deploy lock and history on the target, against an in-memory stand-in for the engine."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tasks.compose import project_name
from tasks.errors import UserError
from tasks.sdk import Sdk
from tasks.settings import load
from tasks.state import LABEL_ENTRY, EngineState, Target, deploy_lock
from tests.fakes import FakeDocker

TARGET = Target("ssh://deploy@prod", "shop")


def fresh() -> EngineState:
    return EngineState(Sdk(FakeDocker()), TARGET)


def test_history_is_append_only_and_last_good_skips_failures() -> None:
    state = fresh()
    state.record({"action": "deploy", "sha": "aaa", "result": "ok"})
    state.record({"action": "deploy", "sha": "bbb", "result": "failed", "detail": "x" * 900})
    state.record({"action": "rollback", "sha": "aaa", "result": "ok"})
    entries = state.history()
    assert [e["sha"] for e in entries] == ["aaa", "bbb", "aaa"]
    assert {"time", "user", "machine", "host", "project"} <= set(entries[0])
    assert len(entries[1]["detail"]) == 300
    assert state.last_good() == "aaa"
    assert state.last_good(other_than="aaa") == ""
    other = EngineState(state.api, Target("local", "blog"))
    assert other.history() == []  # per project


def test_a_second_lock_is_refused_with_the_holder() -> None:
    state = fresh()
    with deploy_lock(state, break_lock=False):
        assert (
            json.loads(
                state.api.client.networks.items[state.lock_name].attrs["Labels"][LABEL_ENTRY]
            )["pid"]
            == os.getpid()
        )
        with pytest.raises(UserError, match="is locked by"), deploy_lock(state, break_lock=True):
            pass
    assert state.holder() is None


def held_by(state: EngineState, holder: dict[str, object]) -> None:
    assert state.acquire(holder)


def test_a_dead_holder_is_stale_and_only_break_lock_removes_it() -> None:
    state = fresh()
    held_by(state, {"pid": 2**22 + 7, "user": "bob", "machine": socket.gethostname(), "since": "t"})
    with pytest.raises(UserError, match="stale deploy lock: bob@"), deploy_lock(state, False):
        pass
    with deploy_lock(state, break_lock=True):
        assert (state.holder() or {})["pid"] == os.getpid()


@pytest.mark.parametrize(
    "holder",
    [
        {"pid": 1, "user": "ann", "machine": socket.gethostname(), "since": "then"},  # alive
        {"pid": 123, "user": "ann", "machine": "other-host", "since": "then"},  # cannot tell
        {"user": "ann"},  # no pid
    ],
)
def test_break_lock_refuses_a_holder_not_proven_gone(holder: dict[str, object]) -> None:
    state = fresh()
    held_by(state, holder)
    with pytest.raises(UserError, match="is locked by ann@"), deploy_lock(state, True):
        pass
    assert state.holder() == holder


def test_a_history_object_without_an_entry_is_one_clear_error() -> None:
    state = fresh()
    state.record({"action": "deploy", "sha": "aaa", "result": "ok"})
    labels = {"org.compose-tasks.state": "history", "org.compose-tasks.project": "shop"}
    state.api.client.volumes.create(
        "compose-tasks-history-shop-bad", labels={**labels, LABEL_ENTRY: "{"}
    )
    with pytest.raises(UserError, match="corrupt deploy history on the target"):
        state.history()


@pytest.mark.parametrize(
    ("text", "environ", "name"),
    [
        ("services: {}\n", {}, "myshop_1"),  # the folder, normalised as compose does
        ("name: shop\nservices: [broken\n", {}, "shop"),
        ("name: 'quoted-x'  # a comment\n", {}, "quoted-x"),
        ("services:\n  a:\n    name: nested\n", {}, "myshop_1"),
        ("name: shop\n", {"COMPOSE_PROJECT_NAME": "fromenv"}, "fromenv"),
        ("name: ${NAME:-x}\n", {}, ""),  # needs compose
    ],
)
def test_project_name_without_compose(
    tmp_path: Path, text: str, environ: dict[str, str], name: str
) -> None:
    folder = tmp_path / "My.Shop_1"
    folder.mkdir()
    (folder / "compose.yaml").write_text(text)
    assert project_name(load({}, environ=environ, cwd=folder)) == name
