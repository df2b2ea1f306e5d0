"""The deploy lock and history on the target, against an in-memory stand-in for the engine."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest

from compose_tasks.docker.compose import project_name
from compose_tasks.docker.sdk import Kind, Sdk
from compose_tasks.errors import UserError
from compose_tasks.rollout import _keeper as keeper
from compose_tasks.rollout.state import (
    LABEL_ENTRY,
    LABEL_RUN,
    EngineState,
    Lease,
    Target,
    deploy_lock,
)
from compose_tasks.settings import load
from tests.fakes import Clock, FakeDocker, api_error

TARGET = Target("ssh://deploy@prod", "shop")


@pytest.fixture(params=["host", "swarm"])
def where(request: pytest.FixtureRequest) -> str:
    """Every lock and history test on both kinds of target: a compose host keeps them in
    running containers, a swarm in configs."""
    return str(request.param)


def fresh(where: str) -> EngineState:
    return EngineState(Sdk(FakeDocker()), TARGET, swarm=where == "swarm")


def plant(state: EngineState, kind: str, name: str, entry: str) -> None:
    """An object of ``kind`` (``lock``, ``history``) as somebody else left it: ``entry`` its
    entry label."""
    labels = {"org.compose-tasks.state": kind, "org.compose-tasks.project": "shop"}
    labels[LABEL_ENTRY] = entry
    client = state.api.client
    if state.swarm:
        client.configs.create(name, labels=labels)
    elif kind == "lock":
        client.containers.create(keeper.image(state.api), name=name, labels=labels)
    else:  # a history entry of an earlier version: a volume
        client.volumes.create(name, labels=labels)


def test_history_is_append_only_and_last_good_skips_failures(where: str) -> None:
    state = fresh(where)
    state.record({"action": "deploy", "sha": "aaa", "result": "ok"})
    state.record({"action": "deploy", "sha": "bbb", "result": "failed", "detail": "x" * 900})
    state.record({"action": "rollback", "sha": "aaa", "result": "ok"})
    entries = state.history()
    assert [e["sha"] for e in entries] == ["aaa", "bbb", "aaa"]
    assert {"time", "user", "machine", "host", "project"} <= set(entries[0])
    assert len(entries[1]["detail"]) == 300
    assert state.last_good() == "aaa"
    assert state.last_good(other_than="aaa") == ""
    other = EngineState(state.api, Target("local", "blog"), swarm=state.swarm)
    assert other.history() == []  # per project


def test_a_second_lock_is_refused_with_the_holder(where: str) -> None:
    state = fresh(where)
    quick = Lease(seconds=3, heartbeat=0.2)  # real renewals, watched by the second
    with deploy_lock(state, False, quick):
        assert (state.holder() or {})["pid"] == os.getpid()
        lock = state.lock()
        assert lock is not None and lock.kind == ("config" if state.swarm else "container")
        with pytest.raises(UserError, match="is locked by"), deploy_lock(state, True, quick):
            pass
    assert state.holder() is None


def held_by(state: EngineState, holder: dict[str, object]) -> None:
    assert state.acquire(holder)


LEASE = Lease(seconds=60, heartbeat=10)


def test_a_dead_holder_on_this_machine_is_taken_without_a_flag(where: str) -> None:
    state = fresh(where)
    gone = {"pid": 2**22 + 7, "user": "bob", "machine": socket.gethostname(), "since": "t"}
    held_by(state, {**gone, "sha": "abc"})
    said: list[str] = []
    with deploy_lock(state, False, LEASE, {"action": "deploy", "sha": "def"}, said.append):
        assert (state.holder() or {})["pid"] == os.getpid()
    assert said == [f"took over the deploy lock of bob@{socket.gethostname()} (pid {2**22 + 7})"
                    " since t: its process ended"]  # fmt: skip
    [entry] = state.history()
    assert (entry["action"], entry["sha"], entry["result"]) == ("deploy", "abc", "interrupted")


@pytest.mark.parametrize(
    "holder",
    [
        {"pid": 1, "user": "ann", "machine": socket.gethostname(), "since": "then"},  # alive
        {"pid": 123, "user": "ann", "machine": "other-host", "since": "then"},  # cannot tell
        {"user": "ann"},  # no pid
    ],
)
def test_a_holder_inside_its_lease_is_never_broken(holder: dict[str, object], where: str) -> None:
    state = fresh(where)
    held_by(state, holder)
    Clock.advance(25)  # a lock from before leases: its creation is its last renewal
    live = r"is locked by ann@.*never breaks a live holder"
    with pytest.raises(UserError, match=live), deploy_lock(state, True, LEASE):
        pass
    assert state.holder() == holder


def test_renewals_keep_a_lock_alive_and_an_expired_one_is_taken(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Runner A renews past its lease; killed, its lease runs out and runner B takes over."""
    state = fresh(where)
    other = {"run": "a" * 32, "user": "ci", "machine": "runner-a", "pid": 7, "since": "t0",
             "lease": 60, "action": "deploy", "sha": "abc123"}  # fmt: skip
    held_by(state, other)
    for count in range(1, 10):  # 90 s of renewals every 10 s: never expired
        Clock.advance(10)
        state.renew("a" * 32, count)
    assert len(state.beats("a" * 32)) == (1 if state.swarm else 0)  # earlier ones removed
    lock = state.lock()
    assert lock is not None
    renewed = state.renewed(lock, "a" * 32)
    assert renewed is not None and (state.api.now() - renewed).total_seconds() < 1
    assert state.renewed(lock, "e" * 32) == lock.created  # another run's renewals: not this one's
    beats = iter(range(10, 100))

    def alive(seconds: float) -> None:  # runner A renews while runner B watches
        Clock.advance(1)
        state.renew("a" * 32, next(beats))

    monkeypatch.setattr("compose_tasks.rollout.state.time.sleep", alive)
    with pytest.raises(UserError, match=r"renewed 0s ago"), deploy_lock(state, True, LEASE):
        pass
    monkeypatch.setattr(
        "compose_tasks.rollout.state.time.sleep", lambda seconds: Clock.advance(int(seconds))
    )
    Clock.advance(61)  # runner A was killed: no renewal for longer than its lease
    said: list[str] = []
    with deploy_lock(state, False, LEASE, {"action": "deploy", "sha": "def456"}, said.append):
        assert (state.holder() or {})["sha"] == "def456"
    assert said[0].startswith("took over the deploy lock of ci@runner-a (pid 7) since t0: its ")
    assert said[0].endswith("lease expired (61s unrenewed)")
    [entry] = state.history()
    assert (entry["sha"], entry["result"]) == ("abc123", "interrupted")
    assert state.beats("a" * 32) == [] and state.holder() is None


def test_a_lock_whose_renewals_stopped_is_waited_for_then_taken(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Runner A killed a moment ago: B waits for the rest of the lease, not for a retry."""
    state = fresh(where)
    held_by(state, {"run": "d" * 32, "user": "ci", "machine": "runner-a", "since": "t",
                    "lease": 60, "heartbeat": 10})  # fmt: skip
    Clock.advance(15)  # killed a moment ago: watched for a renewal, none comes
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        Clock.advance(int(seconds))

    monkeypatch.setattr("compose_tasks.rollout.state.time.sleep", sleep)
    said: list[str] = []
    with deploy_lock(state, False, LEASE, {}, said.append):
        pass
    # two heartbeats' watch for a renewal, then the rest of the lease
    assert [round(w) for w in waited] == [1] * 6 + [40]
    assert said[0].startswith("the deploy lock of ci@runner-a (pid ?) has not been renewed for 21s")
    assert re.search(r"its lease expired \(6[01]s unrenewed\)$", said[1]), said


def test_of_two_runners_taking_an_expired_lock_one_wins(where: str) -> None:
    state = fresh(where)
    held_by(state, {"run": "b" * 32, "user": "ci", "machine": "runner-a", "since": "t"})
    assert state.take("b" * 32, "c" * 32) is True  # runner C claims the takeover of run b
    assert state.take("b" * 32, "d" * 32) is False  # runner D, a moment later: C has it
    assert state.holder() is None
    held_by(state, {"run": "c" * 32, "user": "ci", "machine": "runner-c", "since": "t"})
    assert not state.acquire({"run": "d" * 32})  # a claimed lock is C's
    assert state.take("b" * 32, "c" * 32) is False  # the lock is no longer run b's
    state.release("c" * 32)
    assert state.holder() is None
    kinds = [Kind.CONFIG, Kind.CONTAINER, Kind.VOLUME]
    assert all(state.api.records(kind, {LABEL_RUN: "c" * 32}) == [] for kind in kinds)


def test_a_lock_edited_into_nonsense_is_one_clear_line(where: str) -> None:
    state = fresh(where)
    plant(state, "lock", state.lock_name, "{oops")
    nonsense = r"holds no holder \(edited by hand\?\): remove it"
    with pytest.raises(UserError, match=nonsense), deploy_lock(state, False, LEASE):
        pass


def test_a_history_object_without_an_entry_is_one_clear_error(where: str) -> None:
    state = fresh(where)
    state.record({"action": "deploy", "sha": "aaa", "result": "ok"})
    plant(state, "history", "compose-tasks-history-shop-bad", "{")
    with pytest.raises(UserError, match="corrupt deploy history on the target"):
        state.history()


def test_a_compose_host_keeps_history_in_a_running_container_and_reads_old_volumes() -> None:
    state = fresh("host")
    earlier = {
        "time": "2020-01-01T00:00:00+00:00",
        "action": "deploy",
        "sha": "old",
        "result": "ok",
    }
    plant(state, "history", "compose-tasks-history-shop-0", json.dumps(earlier))
    state.record({"action": "deploy", "sha": "new", "result": "ok"})
    assert [e["sha"] for e in state.history()] == ["old", "new"]  # an earlier version's first
    kept = state.api.container(state.keeper_name)
    assert kept.status == "running" and kept.restart == "unless-stopped"
    files = state.api.read_files(state.keeper_name, keeper.STATE_DIR)
    assert [json.loads(data)["sha"] for data in files.values()] == ["new"]
    state.api.client.containers.running[state.keeper_name].attrs["State"] = {"Status": "exited"}
    state.record({"action": "rollback", "sha": "old", "result": "ok"})  # a stopped one: started
    assert state.api.container(state.keeper_name).status == "running"
    assert [e["sha"] for e in state.history()] == ["old", "new", "old"]


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


def test_a_lock_removed_while_its_lease_is_read_is_read_again() -> None:
    """Another runner's takeover removes the lock container under the read: the engine answers
    500 (measured on Engine 28.5), not 404; read again, the answer is what is there now."""
    state = fresh("host")
    held_by(state, {"run": "f" * 32, "user": "ci", "machine": "runner-a", "since": "t"})
    Clock.advance(5)
    state.renew("f" * 32, 1)
    api = state.api.client.api
    real, reads = api.get_archive, []

    def flaky(container: str, path: str) -> tuple[list[bytes], dict[str, object]]:
        reads.append(path)
        if len(reads) == 1:
            raise api_error("x", 500, "RWLayer of container x is nil")
        found: tuple[list[bytes], dict[str, object]] = real(container, path)
        return found

    api.get_archive = flaky
    lock = state.lock()
    assert lock is not None and lock.created is not None
    renewed = state.renewed(lock, "f" * 32)
    assert renewed is not None and renewed > lock.created  # the second read found the stamp
    assert reads == ["/lease.json", "/lease.json"]
