"""A fresh runner with only a registry: four services built and pushed by one runner; one
changes; a second runner (another clone, none of the project's images, no cache folder)
builds only that one, tags the other three's images in the registry by a manifest copy, and
downloads no layer of theirs. The dry run says so first."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_tasks.docker import registry
from tests.support import RecordingRegistry, Stack, build_json, services, sh

pytestmark = pytest.mark.engine

SERVICE = """\
FROM busybox:1.36
COPY deps.txt /deps.txt
RUN cp /deps.txt /installed && sleep 1
COPY main.txt /main.txt
"""
NAMES = ("a", "b", "c", "d")


def drop_local_images(prefix: str) -> None:
    """Every local image whose repository starts with ``prefix`` (this test's only)."""
    refs = sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    mine = [ref for ref in refs if ref.startswith(prefix)]
    if mine:
        sh("docker", "image", "rm", "-f", *mine)


def test_a_fresh_runner_builds_and_pulls_only_what_changed(stack: Stack, tmp_path: Path) -> None:
    hub = RecordingRegistry(tmp_path)
    prefix = f"{hub.address}/{stack.name}"
    env = {"INVOKE_STACK_REGISTRY": prefix}
    compose = "".join(f"  {name}:\n    build: ./{name}\n" for name in NAMES)
    stack.write("compose.yaml", f"name: {stack.name}\nservices:\n{compose}")
    for name in NAMES:
        stack.write(f"{name}/Dockerfile", SERVICE)
        stack.write(f"{name}/deps.txt", f"{name} deps {stack.name}\n")
        stack.write(f"{name}/main.txt", f"{name} v1\n")
    stack.commit("four services")
    first = services(build_json(stack.root, "--push", "--affected", env=env))
    assert all(not row["reused"] for row in first.values())

    stack.write("d/main.txt", "d v2\n")  # one service changes
    commit = stack.commit("d changed")
    runner = tmp_path / "runner-b"  # another clone: no cache folder, no local images
    runner.mkdir()
    sh("git", "clone", "-q", str(stack.root), str(runner / "proj"))
    clone = runner / "proj"
    drop_local_images(prefix)
    hub.start_counting()

    plan = build_json(clone, "--push", "--affected", "--dry-run", env=env)["plan"]
    remote = {row["name"]: row["remote"] for row in plan["services"]}
    assert [name for name in NAMES if not remote[name]] == ["d"], remote
    assert plan["argv"][-1] == "d" and not any(n in plan["argv"] for n in ("a", "b", "c"))
    d_prediction = next(row for row in plan["services"] if row["name"] == "d")["prediction"]
    assert d_prediction["first"].endswith("COPY main.txt /main.txt"), d_prediction
    assert d_prediction["why"] == "changed main.txt"

    rows = services(build_json(clone, "--push", "--affected", env=env))
    assert [name for name in NAMES if not rows[name]["remote"]] == ["d"]
    tag = commit[:12]
    for name in NAMES:  # this commit's tag in the registry, on the image of the inputs
        ref = f"{prefix}/{stack.name}-{name}:{tag}"
        assert registry.digest(ref) is not None, ref
    for name in ("a", "b", "c"):
        same = registry.digest(f"{prefix}/{stack.name}-{name}:latest")
        assert registry.digest(f"{prefix}/{stack.name}-{name}:{tag}") == same
        layers = registry.layers(f"{prefix}/{stack.name}-{name}:{tag}")
        pulled = {uri.rsplit("/", 1)[1] for uri in hub.requests("GET", f"-{name}/blobs/")}
        assert layers and not pulled & layers, (name, pulled)  # no layer of theirs downloaded
    drop_local_images(prefix)
