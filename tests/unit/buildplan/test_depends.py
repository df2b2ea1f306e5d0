"""Services built on other services: the edges read from compose and the Dockerfiles, the
order, the waves and the named contexts (pure: no engine)."""

from __future__ import annotations

import pytest

from compose_tasks.buildplan.depends import (
    Need,
    closure,
    context_name,
    image_refs,
    needs_of,
    order,
    waves,
)
from compose_tasks.dockerfile.instructions import parse
from compose_tasks.errors import UserError

OWNERS = {"shop-base": "base", "registry.example:5000/team/shop-base": "base", "shop-app": "app"}


def refs(text: str, args: dict[str, str] | None = None) -> list[str]:
    return image_refs(parse(text), args or {})


def test_image_refs_are_every_image_a_build_reads_with_args_expanded() -> None:
    text = (
        "ARG TAG=1\nARG REG\n"
        "FROM shop-base:${TAG} AS deps\n"
        "FROM deps AS build\nCOPY --from=tool:2 /x /x\n"
        "RUN --mount=type=bind,from=${REG}cache:3,target=/c true\n"
        "FROM scratch\nCOPY --from=build /x /x\nCOPY --from=0 /y /y\n"
    )
    assert refs(text) == ["shop-base:1", "tool:2", "cache:3"]
    assert refs(text, {"TAG": "abc", "REG": "r.example/"}) == [
        "shop-base:abc",
        "tool:2",
        "r.example/cache:3",
    ]


def test_needs_follow_service_contexts_and_images_of_other_services() -> None:
    build = {"additional_contexts": {"dep": "service:base", "data": "./data"}}
    found = needs_of("app", build, ["busybox:1.36", "docker.io/library/shop-base:latest"], OWNERS)
    assert found == (
        Need("base", "dep", False),
        Need("base", "docker.io/library/shop-base:latest", True),
    )
    # a registry-hosted name of the same service; its own image is no edge
    assert needs_of("app", {}, ["registry.example:5000/team/shop-base:9", "shop-app"], OWNERS) == (
        Need("base", "registry.example:5000/team/shop-base:9", True),
    )


def test_a_named_context_of_the_same_name_replaces_the_image() -> None:
    build = {"additional_contexts": {"shop-base": "docker-image://busybox:1.36"}}
    assert needs_of("app", build, ["shop-base"], OWNERS) == ()


def test_order_puts_each_service_after_what_it_is_built_on() -> None:
    needs = {"app": (Need("base", "dep", False),), "web": (Need("app", "shop-app", True),)}
    assert order(["web", "app", "base", "db"], needs) == ["base", "app", "web", "db"]
    assert closure(["web"], needs) == ["web", "app", "base"]


def test_a_cycle_is_one_clear_error() -> None:
    needs = {
        "a": (Need("b", "x-b", True),),
        "b": (Need("c", "x-c", True),),
        "c": (Need("a", "dep", False),),
    }
    with pytest.raises(UserError, match=r"in a cycle: a -> b -> c -> a"):
        order(["a", "b", "c"], needs)


def test_waves_split_only_on_images_compose_does_not_order() -> None:
    needs = {
        "app": (Need("base", "dep", False),),  # compose builds base first by itself
        "web": (Need("app", "shop-app", True),),  # an image ref: built after
    }
    assert waves(["base", "app", "web", "db"], needs) == [["base", "app", "db"], ["web"]]
    assert waves(["db"], needs) == [["db"]]


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("shop-base", "shop-base"),
        ("shop-base:latest", "shop-base"),
        ("docker.io/library/shop-base:2", "shop-base:2"),
        ("127.0.0.1:5000/team/base:latest", "127.0.0.1:5000/team/base"),
    ],
)
def test_the_named_context_is_the_name_the_frontend_looks_up(ref: str, name: str) -> None:
    assert context_name(ref) == name
