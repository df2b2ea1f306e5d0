"""The stack file a Swarm deploy uses, from a resolved compose project (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compose_tasks.docker import engine
from compose_tasks.docker.sdk import Sdk
from compose_tasks.rollout import deployment, swarm
from compose_tasks.rollout.deployment import Deployment
from compose_tasks.rollout.swarm import stack_file
from compose_tasks.settings import load
from tests.fakes import FakeCli, FakeDocker, Service

PROJECT: dict[str, Any] = {
    "name": "shop",
    "services": {
        "web": {
            "build": {"context": "/p/web"},
            "image": "shop-web",
            "command": None,
            "container_name": "fixed",
            "deploy": {"replicas": 2, "update_config": {"parallelism": 1, "order": "stop-first"}},
            "volumes": [{"type": "volume", "source": "data", "target": "/data"}],
        },
        "db": {"image": "postgres:16", "environment": {"POSTGRES_PASSWORD": "x"}},
    },
    "volumes": {"data": {"name": "shop_data"}, "keep": {"name": "legacy-volume"}},
    "networks": {"default": {"name": "shop_default", "attachable": True}},
}


def test_built_services_are_pinned_and_get_safe_rolling_updates() -> None:
    stack = stack_file(PROJECT, {"web": "shop-web:abc123"})
    web, db = stack["services"]["web"], stack["services"]["db"]
    assert web["image"] == "shop-web:abc123"
    assert "build" not in web and "container_name" not in web and "command" not in web
    # The compose file's own choices win; only what it leaves out is filled in.
    assert web["deploy"]["update_config"] == {
        "order": "stop-first",
        "failure_action": "rollback",
        "parallelism": 1,
    }
    assert web["deploy"]["rollback_config"] == {"order": "start-first"}
    assert web["deploy"]["replicas"] == 2
    assert db["image"] == "postgres:16"
    assert db["deploy"]["update_config"]["order"] == "start-first"
    assert stack["volumes"] == {"data": {}, "keep": {"name": "legacy-volume"}}
    assert stack["networks"] == {"default": {"attachable": True}}


def swarm_of(nodes: int, *services: Service) -> tuple[engine.Engine, Deployment]:
    client = FakeDocker()
    client.nodes.count = nodes
    client.services.all = list(services)
    settings = load({}, environ={}, cwd=Path(__file__).parent)
    target = deployment.of(settings, (), {"name": "shop", "services": {}})
    return engine.Engine(FakeCli(), Sdk(client)), target


def converge(docker: engine.Engine, target: Deployment, built: dict[str, str]) -> tuple[bool, str]:
    lines: list[str] = []
    ok, why, _ = swarm.converge(target, docker, built, 0.0, lines.append)
    return ok, why + " | " + " / ".join(line.split(maxsplit=1)[1] for line in lines)


def test_replicas_are_shown_per_node_and_converge_when_spread() -> None:
    web = Service("shop_web", "reg/shop-web:v2@sha256:abc", 3)
    for node in (1, 2, 3):
        web.task("running", node)
    ok, said = converge(*swarm_of(3, web), {"shop_web": "reg/shop-web:v2"})
    assert ok, said
    assert said == "all services converged | 3/3 healthy on sw1 1, sw2 1, sw3 1, update completed"


def test_replicas_all_on_one_node_of_three_are_not_ok() -> None:
    web = Service("shop_web", "reg/shop-web:v2", 2)
    web.task("rejected", 2, "No such image: reg/shop-web:v2", desired="shutdown")
    web.task("running", 1)
    web.task("running", 1)
    ok, said = converge(*swarm_of(3, web), {})
    assert not ok
    assert said.startswith(
        "shop_web: all 2 replicas run on one of 3 ready nodes "
        "(another refused them: No such image: reg/shop-web:v2)"
    )


def test_a_placement_that_asks_for_one_node_is_as_asked() -> None:
    web = Service("shop_web", "w", 2, placement={"Constraints": ["node.hostname==sw1"]})
    web.task("running", 1)
    web.task("running", 1)
    assert converge(*swarm_of(3, web), {})[0]


def test_a_replica_swarm_cannot_place_is_named_when_time_runs_out() -> None:
    web = Service("shop_web", "w", 3, placement={"MaxReplicas": 1})
    web.task("running", 1)
    web.task("running", 2)
    web.task("pending", 0, "no suitable node (max replicas per node limit exceed)")
    ok, said = converge(*swarm_of(2, web), {})
    assert not ok
    assert said.startswith(
        "timed out after 0s waiting for shop_web "
        "(no suitable node (max replicas per node limit exceed))"
    )
    assert "2/3 healthy on sw1 1, sw2 1" in said


def test_a_down_node_is_left_out_and_the_rest_converges() -> None:
    web = Service("shop_web", "w", 2)
    web.task("running", 1)
    web.task("running", 3)
    docker, target = swarm_of(3, web)
    client = docker.sdk.client
    client.nodes.down = {2}
    assert swarm.ready_nodes(docker) == ({"n1": "sw1", "n3": "sw3"}, ["sw2"])
    assert converge(docker, target, {})[0]


@pytest.mark.parametrize(
    ("state", "error", "ok", "said"),
    [
        ("complete", "", True, "all services converged | done (completed)"),
        ("failed", "task: non-zero exit (3)", False, "shop_migrate: task failed: task: non-zero"),
    ],
)
def test_a_one_shot_service_is_done_once_it_completed(
    state: str, error: str, ok: bool, said: str
) -> None:
    migrate = Service("shop_migrate", "m", 1, restart="none")
    migrate.task(state, 1, error)
    web = Service("shop_web", "w", 1)
    web.task("running", 1)
    result = converge(*swarm_of(1, migrate, web), {})
    assert result[0] is ok and result[1].startswith(said)


def test_an_update_status_left_by_an_earlier_deploy_is_not_this_ones() -> None:
    web = Service("shop_web", "w", 1, update="rollback_completed")
    web.task("running", 1)
    docker, target = swarm_of(1, web)
    before = {"shop_web": ("rollback_completed", "")}
    lines: list[str] = []
    assert swarm.converge(target, docker, {}, 0.0, lines.append, before)[0]
    assert swarm.converge(target, docker, {}, 0.0, lines.append)[2]  # without: Swarm's rollback


def test_a_registry_gets_every_image_it_lacks_before_the_stack_deploy(tmp_path: Path) -> None:
    client = FakeDocker()
    client.images.add("reg:5000/shop-web:v2", {})
    runner = FakeCli(permissive=True)
    docker = engine.Engine(runner, Sdk(client))
    settings = load({"registry": "reg:5000"}, environ={}, cwd=Path(__file__).parent)
    target = deployment.of(settings, (), {"name": "shop", "services": {}})
    refs = {"web": "reg:5000/shop-web:v2"}
    lines: list[str] = []
    client.images.registry = {"reg:5000/shop-web:v2"}
    assert swarm.publish(target, docker, refs, lines.append) == ""
    assert runner.calls == []  # the registry has it
    client.images.registry = set()
    assert swarm.publish(target, docker, refs, lines.append) == ""
    assert runner.calls == [["docker", "push", "--quiet", "reg:5000/shop-web:v2"]]
    missing = {"api": "reg:5000/shop-api:v2"}
    assert swarm.publish(target, docker, missing, lines.append) == (
        "no such image: reg:5000/shop-api:v2"
    )


def test_a_timeout_names_why_swarm_keeps_rejecting_a_replica() -> None:
    web = Service("shop_web", "w", 2, update="updating")
    web.task("running", 1)
    web.task("rejected", 2, "invalid pool request: Pool overlaps", desired="shutdown")
    ok, said = converge(*swarm_of(2, web), {})
    assert not ok
    assert said.startswith(
        "timed out after 0s waiting for shop_web (rejected: invalid pool request: Pool overlaps)"
    )


def test_an_update_that_waits_on_a_lost_node_is_done_on_the_nodes_left() -> None:
    """Swarm's updater waits for the task on the node that went down; every replica already
    runs the new image on the two nodes left."""
    web = Service("shop_web", "reg/web:v2@sha256:b", 3, update="updating")
    web.task("running", 1)
    web.task("running", 2)
    web.task("running", 1)
    web.task("running", 3, image="reg/web:v1@sha256:a")  # the old one, on the lost node
    web.task("running", 2, image="reg/web:v1@sha256:a")  # an old one not replaced yet
    docker, target = swarm_of(3, web)
    docker.sdk.client.nodes.down = {3}
    ok, said = converge(docker, target, {"shop_web": "reg/web:v2"})
    assert ok, said
    assert said.startswith("all services converged (node sw3 down) | sw3 down: its replicas go")
    assert "3/3 healthy on sw1 2, sw2 1, update updating" in said
    docker.sdk.client.nodes.down = set()
    assert not converge(docker, target, {"shop_web": "reg/web:v2"})[0]  # no node lost: wait


def test_an_update_stuck_on_a_lost_node_is_redone_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new task went to the node that then died: Swarm's updater waits for it, the tool
    forces the update again (once) so that Swarm places it on a node that is left."""
    api = Service("shop_api", "reg/api:v2@sha256:b", 2, update="updating")
    api.task("running", 1)
    api.task("running", 3)  # the new one, on the node that is gone
    client = FakeDocker()
    client.nodes.count, client.nodes.down = 3, {3}
    client.services.all = [api]
    runner = FakeCli(permissive=True)
    docker = engine.Engine(runner, Sdk(client))
    _, target = swarm_of(3)
    monkeypatch.setattr(swarm, "STALLED", 0.0)
    lines: list[str] = []
    ok, why, _ = swarm.converge(target, docker, {"shop_api": "reg/api:v2"}, 0.0, lines.append)
    assert not ok and why.startswith("timed out")
    assert runner.calls == [["docker", "service", "update", "--detach", "--force", "shop_api"]]
    assert "shop_api: its update waits on a node that is down" in " ".join(lines)


def test_replicas_on_one_node_nobody_refused_are_as_swarm_placed_them() -> None:
    web = Service("shop_web", "w", 2)
    web.task("running", 2)
    web.task("running", 2)
    assert converge(*swarm_of(3, web), {})[0]
