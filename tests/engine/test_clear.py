"""``invoke clear-caches`` on the real engine: the next build is fresh, nothing else goes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support import (
    BASE_IMAGE,
    Stack,
    build_json,
    clear,
    generated,
    image_id,
    invoke,
    services,
    sh,
)

pytestmark = pytest.mark.engine


def own_images(stack: Stack) -> list[str]:
    """The project's images (id and tag): only ours, so other builds may share the engine."""
    label = f"label=org.compose-tasks.project={stack.name}"
    listed = sh("docker", "images", "-a", "--filter", label,
                "--format", "{{.ID}} {{.Repository}}:{{.Tag}}").stdout.splitlines()  # fmt: skip
    assert listed, "the build left no image of ours"
    return sorted(listed)


def every_step_cached(stack: Stack) -> bool:
    """Whether a forced rebuild finds every step in the builder cache (the cache is intact)."""
    row = services(build_json(stack.root, "--rebuild"))["app"]
    return bool(row["steps"]) and row["cached"] == row["steps"]


@pytest.fixture
def bystanders() -> Iterator[dict[str, str]]:
    """An unrelated image, a running unrelated container and a named volume holding data."""
    tag = f"bystander-{uuid.uuid4().hex[:8]}"
    sh("docker", "tag", BASE_IMAGE, f"{tag}:1")
    sh("docker", "volume", "create", tag)
    sh("docker", "run", "--rm", "-v", f"{tag}:/data", BASE_IMAGE, "sh", "-c",
       "echo precious > /data/file")  # fmt: skip
    sh("docker", "run", "-d", "--name", tag, f"{tag}:1", "sleep", "600")
    yield {"image": f"{tag}:1", "volume": tag, "container": tag}
    sh("docker", "rm", "-f", tag, check=False)
    sh("docker", "volume", "rm", tag, check=False)
    sh("docker", "rmi", f"{tag}:1", check=False)


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_clear_then_build_has_zero_cached_steps(stack: Stack, bystanders: dict[str, str]) -> None:
    build_json(stack.root)
    stack.write("app/src/main.txt", "app v2\n")
    stack.commit("second")
    build_json(stack.root)
    result = clear(stack)
    kinds = {item["kind"] for item in result["items"]}
    assert {"image", "builder cache", "build folder"} <= kinds
    assert result["ok"] is True
    assert image_id(f"{stack.image('app')}:latest") is None
    assert not any(folder.exists() for folder in generated(stack.root))
    row = services(build_json(stack.root))["app"]
    assert row["steps"] == 5
    assert row["cached"] == 0
    # Bystanders untouched.
    assert image_id(bystanders["image"]) is not None
    assert image_id(BASE_IMAGE) is not None
    state = sh("docker", "inspect", "-f", "{{.State.Running}}", bystanders["container"])
    assert state.stdout.strip() == "true"
    data = sh("docker", "run", "--rm", "-v", f"{bystanders['volume']}:/data", BASE_IMAGE,
              "cat", "/data/file")  # fmt: skip
    assert data.stdout.strip() == "precious"


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_running_container_keeps_running_and_its_image_stops_serving(stack: Stack) -> None:
    stack.write("compose.yaml", f"name: {stack.name}\nservices:\n  app:\n    build: ./app\n"
                "    command: [sleep, '600']\n")  # fmt: skip
    stack.commit("long-running")
    override = build_json(stack.root)["plan"]["override_file"]
    up = sh("docker", "compose", "-f", "compose.yaml", "-f", override,
            "up", "-d", "--no-build", cwd=stack.root)  # fmt: skip
    assert up.returncode == 0
    result = clear(stack)
    notes = [item["note"] for item in result["items"]]
    assert any("in use by" in note and "untagged" in note for note in notes)
    running = sh("docker", "compose", "-p", stack.name, "ps", "-q", "--status", "running",
                 cwd=stack.root).stdout.split()  # fmt: skip
    assert len(running) == 1
    row = services(build_json(stack.root))["app"]
    assert row["cached"] == 0


def test_dry_run_removes_nothing(stack: Stack) -> None:
    build_json(stack.root)
    images = own_images(stack)
    done = invoke(stack.root, "clear-caches", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"{stack.image('app')}:latest" in done.stdout
    assert "would remove" in done.stdout
    assert own_images(stack) == images
    assert (generated(stack.root)[0] / "compose.build.yml").exists()
    assert every_step_cached(stack)


def test_non_interactive_without_yes_refuses(stack: Stack) -> None:
    build_json(stack.root)
    images = own_images(stack)
    done = invoke(stack.root, "clear-caches")
    assert done.returncode == 1
    assert "refusing to remove" in done.stderr.splitlines()[-1]
    assert own_images(stack) == images
    assert every_step_cached(stack)


@pytest.mark.alone  # its clear prunes the whole builder cache
def test_registry_cache_ref_is_cleared_too(stack: Stack) -> None:
    remote = stack.push_registry_cache()
    # Locally cleared but still in the registry: the seed's "clear doesn't clear".
    result = clear(stack)
    registry_items = [i for i in result["items"] if i["kind"] == "registry ref"]
    assert [(i["name"], i["result"].split()[0]) for i in registry_items] == [(remote, "deleted")]
    after = build_json(stack.root)
    assert after["plan"]["services"][0]["sources"][0]["status"].startswith("dropped")
    assert services(after)["app"]["cached"] == 0
