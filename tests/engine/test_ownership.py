"""Ours means proven ours: a clear removes only what this tool built for this project.

Real engine, real registry: base images, foreign images in our repository or in ``cache_from``,
a second project sharing the engine, a base image and an image name, and registry tags that
share a manifest all survive; the tool's own files never enter a build context.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    BASE_IMAGE,
    Stack,
    build_json,
    clear,
    image_id,
    invoke,
    new_stack,
    require_registry,
    services,
    sh,
)

pytestmark = pytest.mark.engine


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in result["items"]}


def registry_tags(repo: str) -> list[str]:
    url = f"http://{require_registry()}/v2/{repo}/tags/list"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return sorted(json.loads(answer.read()).get("tags") or [])


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_base_image_in_cache_from_and_foreign_tag_in_our_repository_survive(
    stack: Stack,
) -> None:
    stack.use_cache_from(BASE_IMAGE)
    stack.commit("base image as a cache source")
    build_json(stack.root)
    foreign = f"{stack.image('app')}:foreign"
    sh("docker", "tag", BASE_IMAGE, foreign)
    dry = invoke(stack.root, "clear-caches", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove" in dry.stdout
    items = by_name(clear(stack))
    assert items[BASE_IMAGE]["result"].startswith("kept: not ours")
    assert items[foreign]["result"].startswith("kept: not ours")
    assert items[f"{stack.image('app')}:latest"]["result"] in ("removed", "untagged")
    assert image_id(BASE_IMAGE) is not None
    assert image_id(foreign) is not None
    assert image_id(f"{stack.image('app')}:latest") is None
    sh("docker", "rmi", foreign)


@pytest.fixture
def neighbour(tmp_path: Path) -> Iterator[Stack]:
    """A second project on the same engine, same base image."""
    other = new_stack(tmp_path / "neighbour", "ctn")
    yield other
    other.cleanup()


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_second_project_sharing_base_and_image_name_is_untouched(
    stack: Stack, neighbour: Stack
) -> None:
    shared = f"shared-{stack.name}/app"
    compose = "name: {}\nservices:\n  app:\n    build: ./app\n    image: " + shared + "\n"
    stack.write("compose.yaml", compose.format(stack.name))
    ours_sha = stack.commit("shared image name")
    neighbour.write("compose.yaml", compose.format(neighbour.name))
    theirs_sha = neighbour.commit("shared image name")
    build_json(stack.root)
    build_json(neighbour.root)  # their build now holds :latest
    items = by_name(clear(stack))
    ours, theirs = f"{shared}:{ours_sha[:12]}", f"{shared}:{theirs_sha[:12]}"
    assert items[ours]["result"] == "removed"
    assert items[theirs]["result"] == (
        f"kept: not ours: built by compose-tasks for project '{neighbour.name}'"
    )
    assert items[f"{shared}:latest"]["result"].startswith("kept: not ours")
    assert image_id(ours) is None
    assert image_id(theirs) is not None
    assert image_id(f"{shared}:latest") == image_id(theirs)
    assert image_id(BASE_IMAGE) is not None
    row = services(build_json(neighbour.root))["app"]
    assert row["cached"] == row["steps"]  # their cache still serves
    sh("docker", "rmi", "-f", theirs, f"{shared}:latest", check=False)


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_registry_tag_sharing_a_manifest_is_never_deleted(stack: Stack) -> None:
    remote = stack.push_registry_cache()
    repo = remote.split("/", 1)[1].rsplit(":", 1)[0]
    release = remote.replace(":cache", ":release-1")
    sh("docker", "pull", remote)
    sh("docker", "tag", remote, release)
    sh("docker", "push", release)
    sh("docker", "rmi", remote, release)
    assert registry_tags(repo) == ["cache", "release-1"]
    items = by_name(clear(stack))
    assert items[remote]["result"].startswith("kept: not deleted: manifest shared with :release-1")
    assert registry_tags(repo) == ["cache", "release-1"]


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_foreign_registry_image_in_cache_from_is_kept(stack: Stack) -> None:
    foreign = f"{require_registry()}/{stack.name}/base:1"
    sh("docker", "tag", BASE_IMAGE, foreign)
    sh("docker", "push", foreign)
    sh("docker", "rmi", foreign)
    stack.use_cache_from(f"'type=registry,ref={foreign}'")
    stack.commit("foreign registry cache source")
    build_json(stack.root)
    items = by_name(clear(stack))
    assert items[foreign]["result"] == "kept: not ours: no compose-tasks ownership label"
    assert registry_tags(f"{stack.name}/base") == ["1"]


def test_context_dot_copy_all_is_fully_cached_on_the_second_build(stack: Stack) -> None:
    stack.write(
        "Dockerfile",
        f"FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY . /app\nRUN sleep 1 && ls -aR /app > /listing\n",
    )
    stack.write(".dockerignore", ".git\n")
    stack.write("compose.yaml", f"name: {stack.name}\nservices:\n  app:\n    build: .\n")
    stack.commit("context .")
    first = services(build_json(stack.root))["app"]
    assert first["cached"] < first["steps"]
    second = services(build_json(stack.root, "--rebuild"))["app"]
    assert second["cached"] == second["steps"] == first["steps"]
    listing = sh("docker", "run", "--rm", f"{stack.image('app')}:latest", "cat", "/listing")
    assert "compose.build.yml" not in listing.stdout
    assert "compose.yaml" in listing.stdout
    assert sorted(path.name for path in stack.root.iterdir()) == [
        ".dockerignore",
        ".git",
        "Dockerfile",
        "app",
        "compose.yaml",
    ]
