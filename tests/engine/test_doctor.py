"""``invoke doctor`` on real stacks: what it reports before and after a build, and on bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import (
    Stack,
    build_json,
    caches_in_folders,
    invoke,
    raw_compose_build,
    sh,
)

pytestmark = pytest.mark.engine


def doctor(stack: Stack, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = invoke(stack.root, "doctor", "--json", *args)
    data = json.loads(done.stdout)
    assert data["ok"] is (not any(c["status"] == "fail" for c in data["checks"]))
    return done.returncode, data["checks"]


def named(checks: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [check for check in checks if check["name"].startswith(prefix)]


def primary(checks: list[dict[str, Any]]) -> dict[str, Any]:
    """The check of the service's own cache source: its cache folder, or its :latest image."""
    start = "type=local,src=" if caches_in_folders() else "ct"
    [check] = [c for c in named(checks, "cache app") if c["detail"].startswith(start)]
    return check


def test_before_and_after_the_first_build(stack: Stack) -> None:
    sha = sh("git", "rev-parse", "HEAD", cwd=stack.root).stdout.strip()
    code, checks = doctor(stack)
    assert code == 0
    cache = primary(checks)
    assert cache["status"] == "warn" and "next build is cold" in cache["detail"]
    assert doctor(stack, "--strict")[0] == 1

    build_json(stack.root)
    code, checks = doctor(stack, "--strict")
    assert code == 0, [c for c in checks if c["status"] != "ok"]
    if caches_in_folders():
        assert "local cache, read by the builder" in primary(checks)["detail"]
        [latest] = [c for c in named(checks, "cache app") if "[latest]" in c["detail"]]
        assert "no cache source on the containerd image store" in latest["detail"]
    else:
        assert "local image with inline cache metadata, can serve" in primary(checks)["detail"]
    [git] = named(checks, "git")
    assert git["detail"].startswith(f"commit {sha[:12]} on main")


def test_seed_built_image_is_flagged_as_unable_to_serve(stack: Stack) -> None:
    image = f"{stack.image('app')}:latest"
    stack.use_cache_from(image, image=image)
    stack.commit("seed config")
    raw_compose_build(stack.root)
    code, checks = doctor(stack)
    assert code == 0
    [cache] = [c for c in named(checks, "cache app") if "[compose file]" in c["detail"]]
    assert cache["status"] == "warn"
    if caches_in_folders():  # the image is there, but BuildKit would look for it on Docker Hub
        assert "no cache source on the containerd image store" in cache["detail"]
    else:
        assert "without inline cache metadata" in cache["detail"]


def test_registry_cache_ref_metadata_is_read_from_the_registry(stack: Stack) -> None:
    remote = stack.push_registry_cache()
    checks = named(doctor(stack)[1], "cache app")
    by_entry = {c["detail"].split()[0]: c for c in checks}
    assert by_entry[remote]["status"] == "ok"
    assert "registry with inline cache metadata" in by_entry[remote]["detail"]


LINT_FIXTURE = """\
FROM busybox:1.36
ARG NPM_TOKEN
ARG GIT_COMMIT_HASH
WORKDIR /app
COPY . .
RUN sh install-deps.sh
"""


def test_each_lint_rule_is_reported_with_file_and_line(stack: Stack) -> None:
    stack.write("app/Dockerfile", LINT_FIXTURE)
    stack.write("app/install-deps.sh", "echo deps\n")
    stack.write("app/.env", "LOCAL_ONLY=1\n")  # sent into the build by COPY . .
    (stack.root / "app" / ".dockerignore").unlink()
    stack.commit("bad dockerfile")
    code, checks = doctor(stack)
    assert code == 0
    found = sorted((c["name"], c["detail"].split(": ")[0]) for c in named(checks, "dockerfile "))
    assert found == [
        ("dockerfile commit-arg", "app/Dockerfile:3"),
        ("dockerfile copy-all", "app/Dockerfile:5"),
        ("dockerfile dockerignore", "app"),
        ("dockerfile secret-arg", "app/Dockerfile:2"),
    ]
    # The same findings are printed as warnings before a build.
    dry = invoke(stack.root, "build", "--dry-run")
    assert dry.returncode == 0
    assert "warning: app/Dockerfile:3: ARG GIT_COMMIT_HASH comes before" in dry.stdout


def test_broken_compose_file_fails_with_one_line(stack: Stack) -> None:
    stack.write("compose.yaml", "services:\n  app:\n    build: [not, a, mapping\n")
    done = invoke(stack.root, "doctor")
    assert done.returncode == 1
    fails = [line for line in done.stdout.splitlines() if line.startswith("fail")]
    assert len(fails) == 1 and "compose config failed" in fails[0]
    assert "Traceback" not in done.stderr


def test_invalid_setting_fails(stack: Stack) -> None:
    done = invoke(stack.root, "doctor", env={"INVOKE_STACK_DIRTY_SUFFIX": "maybe"})
    assert done.returncode == 1
    assert done.stdout.startswith("fail  settings  invalid setting dirty_suffix='maybe'")


def test_what_the_build_would_reject_fails_with_file_and_line(stack: Stack) -> None:
    stack.write("app/Dockerfile", "FROM busybox:1.36\nRUNN true\n")
    stack.commit("typo")
    code, checks = doctor(stack)
    [check] = named(checks, "build input")
    assert code == 1 and check["status"] == "fail"
    assert check["detail"] == "service 'app': app/Dockerfile:2: unknown instruction RUNN"
    stack.write("compose.yaml", f"name: {stack.name}\nservices:\n  app:\n    build: ./app\n"
                "    image: Shop/App\n")  # fmt: skip
    stack.commit("an image name the engine rejects")
    code, checks = doctor(stack)
    [check] = named(checks, "build input")
    assert code == 1 and "the repository name must be lowercase" in check["detail"]
