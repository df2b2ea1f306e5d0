"""Which services roll and which compose recreates; what an interrupted rollout left."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from compose_tasks.docker.refs import COMPOSE_PROJECT, COMPOSE_SERVICE
from compose_tasks.docker.runner import Result
from compose_tasks.docker.sdk import Sdk
from compose_tasks.rollout import rolling
from tests.fakes import Container, FakeCli, FakeDocker


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"image": "x"}, ""),
        ({"ports": [{"target": 8080, "protocol": "tcp"}]}, ""),  # an ephemeral host port
        ({"ports": [{"target": 80, "published": "8080"}]}, "it publishes host port 8080"),
        ({"container_name": "shop-web"}, "container_name shop-web"),
        ({"network_mode": "host"}, "network_mode host"),
        ({"networks": {"front": {"ipv4_address": "10.5.0.9"}}}, "a fixed address on network front"),
        ({"networks": {"front": None}}, ""),
        ({"mac_address": "02:42:ac:11:00:02"}, "a fixed mac_address"),
    ],
)
def test_what_cannot_run_twice(spec: dict[str, Any], why: str) -> None:
    assert rolling.not_rollable(spec) == why


def test_how_many_containers_a_service_runs() -> None:
    assert rolling.wanted({}) == 1
    assert rolling.wanted({"scale": 3}) == 3
    assert rolling.wanted({"deploy": {"replicas": 2}}) == 2
    assert rolling.wanted({"deploy": {"replicas": 0}}) == 0


def test_config_hashes_are_read_from_compose() -> None:
    key = "docker compose config"
    runner = FakeCli(answers={key: Result((), 0, "web 1a2b\nproxy 3c4d\n", "")})
    assert rolling.hashes(runner, ["docker", "compose"], {}) == {"web": "1a2b", "proxy": "3c4d"}
    assert runner.calls == [["docker", "compose", "config", "--hash", "*"]]
    failing = FakeCli(answers={key: Result((), 1, "", "unknown flag: --hash")})
    assert rolling.hashes(failing, ["docker", "compose"], {}) == {}


def container(
    client: FakeDocker,
    name: str,
    service: str,
    config_hash: str,
    aliases: Sequence[str] | None = None,
    health: str = "healthy",
) -> None:
    labels = {COMPOSE_PROJECT: "shop", COMPOSE_SERVICE: service, rolling.CONFIG_HASH: config_hash}
    made = Container(name, labels, f"shop-{service}:1", health)
    names = [name, service] if aliases is None else list(aliases)
    made.attrs["NetworkSettings"] = {"Networks": {"shop_default": {"Aliases": names}}}
    client.containers.running[name] = made


SERVICES: dict[str, Any] = {
    "web": {"image": "shop-web"},
    "db": {"image": "postgres", "ports": [{"target": 5432, "published": "5432"}]},
    "worker": {"image": "shop-worker"},
}


def test_changed_services_roll_unless_they_cannot_run_twice() -> None:
    client = FakeDocker()
    container(client, "shop-web-1", "web", "old")
    container(client, "shop-db-1", "db", "old")
    container(client, "shop-worker-1", "worker", "same")
    found = rolling.changes(
        Sdk(client).containers(), SERVICES, {"web": "new", "db": "new", "worker": "same"}
    )
    assert list(found.roll) == ["web"]
    assert [c.name for c in found.roll["web"]] == ["shop-web-1"]
    assert found.recreate == {"db": "it publishes host port 5432"}


def test_a_service_that_does_not_run_yet_is_started_not_rolled() -> None:
    client = FakeDocker()
    container(client, "shop-web-1", "web", "old", health="exited 1")
    found = rolling.changes(Sdk(client).containers(), SERVICES, {"web": "new"})
    assert found.roll == {} and found.recreate == {}


def test_containers_that_never_joined_under_the_service_name_are_leftovers() -> None:
    client = FakeDocker()
    container(client, "shop-web-1", "web", "old")  # serving
    container(client, "shop-web-2", "web", "new", aliases=["shop-web-2"])  # started, unseen
    container(client, "shop-db-1", "db", "old", aliases=[])  # recreated kind: never ours to clear
    found = rolling.unseen(Sdk(client).containers(), SERVICES)
    assert [c.name for c in found] == ["shop-web-2"]
