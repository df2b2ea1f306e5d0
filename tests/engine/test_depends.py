"""A service built on another, on a real engine: after a commit that changes only the one it
is built on, both are built and the new image holds the new base (never a stale re-tag); the
dry run names the service that changed as the reason."""

from __future__ import annotations

import pytest

from tests.engine.test_affected import named_contexts
from tests.support import BASE_IMAGE, Stack, build_json, services, sh

pytestmark = pytest.mark.engine

BASE = f"FROM {BASE_IMAGE}\nCOPY version.txt /base-version\n"


def pair(stack: Stack, how: str) -> None:
    """``base`` and ``app``, ``app`` built on ``base`` by a ``service:`` named context or by
    ``FROM`` of the image compose gives ``base`` (``<project>-base``)."""
    if how == "service":
        extra = "      additional_contexts:\n        dep: service:base\n"
        app = "FROM dep\n"
    else:
        extra, app = "", f"FROM {stack.name}-base\n"
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n"
        f"  base:\n    build: ./base\n  app:\n    build:\n      context: ./app\n{extra}",
    )
    stack.write("base/Dockerfile", BASE)
    stack.write("base/version.txt", f"base-1 {stack.name}\n")
    stack.write("app/Dockerfile", f"{app}COPY main.txt /app-main\n")
    stack.write("app/main.txt", f"app-1 {stack.name}\n")
    stack.commit("base and app")


def content(ref: str, path: str) -> str:
    return sh("docker", "run", "--rm", ref, "cat", path).stdout.strip()


@pytest.mark.parametrize("how", ["service", "image"])
def test_a_change_in_the_base_service_rebuilds_the_one_built_on_it(stack: Stack, how: str) -> None:
    if how == "service" and not named_contexts():
        pytest.skip("this engine's BuildKit takes no additional_contexts (Engine 23+ does)")
    pair(stack, how)
    first = services(build_json(stack.root, "--affected"))
    assert content(first["app"]["image"], "/base-version") == f"base-1 {stack.name}"

    stack.write("app/main.txt", f"app-2 {stack.name}\n")  # app alone: base is re-tagged
    stack.commit("app changed")
    rows = services(build_json(stack.root, "--affected"))
    assert (bool(rows["base"]["reused"]), bool(rows["app"]["reused"])) == (True, False)

    stack.write("base/version.txt", f"base-2 {stack.name}\n")  # base alone
    stack.commit("base changed")
    plan = build_json(stack.root, "--affected", "--dry-run")["plan"]
    predicted = {row["name"]: row["prediction"] for row in plan["services"]}
    assert plan["argv"][-2:] == ["base", "app"], plan["argv"]  # both built, base first
    assert predicted["app"]["why"].startswith("base changed"), predicted["app"]
    rows = services(build_json(stack.root, "--affected"))
    assert not rows["base"]["reused"] and not rows["app"]["reused"], rows
    assert content(rows["app"]["image"], "/base-version") == f"base-2 {stack.name}"
    assert content(rows["app"]["image"], "/app-main") == f"app-2 {stack.name}"

    sh("git", "commit", "--allow-empty", "-qm", "nothing changed", cwd=stack.root)
    rows = services(build_json(stack.root, "--affected"))
    assert rows["base"]["reused"] and rows["app"]["reused"], rows  # stable: nothing rebuilt


def test_building_only_the_dependent_builds_what_it_is_built_on(stack: Stack) -> None:
    pair(stack, "image")
    plan = build_json(stack.root, "--dry-run", "--service", "app")["plan"]
    assert [row["name"] for row in plan["services"]] == ["base", "app"]
