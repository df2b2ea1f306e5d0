"""Image refs, cache entries and ownership labels (pure)."""

from __future__ import annotations

import pytest

from compose_tasks.docker.refs import (
    cache_entry,
    has_registry,
    not_ours_reason,
    owned_by,
    ownership,
    ref_error,
    short_name,
    split_ref,
)


@pytest.mark.parametrize(
    ("ref", "parts"),
    [
        ("app", ("app", "")),
        ("app:1.2", ("app", "1.2")),
        ("reg.io:5000/team/app", ("reg.io:5000/team/app", "")),
        ("reg.io:5000/team/app:cache", ("reg.io:5000/team/app", "cache")),
        ("app@sha256:abc", ("app", "")),
    ],
)
def test_split_ref(ref: str, parts: tuple[str, str]) -> None:
    assert split_ref(ref) == parts


def test_registry_host_and_hub_names() -> None:
    assert has_registry("127.0.0.1:5000/app") and has_registry("localhost/app")
    assert not has_registry("myorg/app") and not has_registry("busybox")
    assert short_name("docker.io/library/busybox:1.36") == "busybox:1.36"
    assert short_name("docker.io/myorg/app") == "myorg/app"


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("app:cache", ("registry", "app:cache")),
        ("type=registry,ref=reg.io/app:cache", ("registry", "reg.io/app:cache")),
        ("ref=reg.io/app:cache", ("registry", "reg.io/app:cache")),
        ("type=local,src=/c", ("local", None)),
        ("type=gha", ("gha", None)),
        ("type=registry", ("registry", None)),
    ],
)
def test_cache_entries_resolve_to_their_ref(entry: str, parsed: tuple[str, str | None]) -> None:
    assert cache_entry(entry) == parsed


def test_ownership_needs_tool_and_project() -> None:
    labels = ownership("shop", "api")
    assert owned_by(labels, "shop")
    assert not owned_by(labels, "blog")
    assert not owned_by({"org.compose-tasks.project": "shop"}, "shop")  # no tool label
    assert not owned_by(None, "shop")
    assert not_ours_reason(labels, "blog") == "built by compose-tasks for project 'shop'"
    compose_only = {"com.docker.compose.project": "shop"}
    assert not_ours_reason(compose_only, "shop") == (
        "built by plain docker compose, not by compose-tasks"
    )
    assert not_ours_reason({}, "shop") == "no compose-tasks ownership label"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("app", ""),
        ("127.0.0.1:5000/team/app:abc123def456-dirty", ""),
        ("ghcr.io/org/app", ""),
        ("a__b/c--d.e:1.0_x", ""),
        ("localhost/x@sha256:" + "a" * 64, ""),
        ("MyOrg/App:1", "must be lowercase"),
        ("reg.io:5000/Team/app", "must be lowercase"),
        ("app:", "invalid tag ''"),
        ("app:-x", "invalid tag '-x'"),
        ("app:" + "t" * 129, "invalid tag"),
        ("my app", "invalid name component 'my app'"),
        ("a//b", "invalid name component ''"),
        ("-x/app", "invalid name component '-x'"),
        ("bad_host.io:x/app", "invalid registry host"),
        ("app@sha256:zz", "invalid digest"),
        ("a/" * 130 + "b", "longer than 255"),
    ],
)
def test_image_reference_grammar(ref: str, reason: str) -> None:
    error = ref_error(ref)
    assert reason in error if reason else error == ""
