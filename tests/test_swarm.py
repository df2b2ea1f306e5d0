"""The stack file a Swarm deploy uses, from a resolved compose project (pure)."""

from __future__ import annotations

from typing import Any

from tasks.swarm import stack_file

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
