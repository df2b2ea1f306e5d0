"""Every stage's cache survives: after a prune, on a fresh runner; and a clear clears it.

Fixtures are shaped like real projects (node build -> static server, maven deps -> runtime,
go build -> scratch-like), each with its dependency install in a stage the final image only
reaches through ``COPY --from``. Their "installs" are offline stand-ins with the same cache
behaviour (a slow RUN that reads the manifest).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from tests.support import (
    BASE_IMAGE,
    Stack,
    build_json,
    caches_in_folders,
    clear,
    require_registry,
    services,
    sh,
    stage_images_reliable,
)

pytestmark = [pytest.mark.engine, pytest.mark.alone]

SHAPES = {
    "node": f"""\
FROM {BASE_IMAGE} AS deps
WORKDIR /app
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep 1
FROM deps AS build
ARG GIT_COMMIT_HASH=unknown
COPY src/ ./src/
RUN cat src/* > /app/dist.txt && echo "$GIT_COMMIT_HASH" >> /app/dist.txt
FROM {BASE_IMAGE}
COPY --from=build /app/dist.txt /www/index.html
""",
    "maven": f"""\
FROM {BASE_IMAGE} AS deps
WORKDIR /build
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep 1
FROM deps AS package
COPY src/ ./src/
RUN cat /deps-installed src/* > /build/app.jar
FROM {BASE_IMAGE} AS runtime
COPY --from=package /build/app.jar /app/app.jar
""",
    "go": f"""\
FROM {BASE_IMAGE} AS modules
WORKDIR /go
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep 1
FROM modules AS compile
COPY src/ ./src/
RUN cat src/* > /go/app
FROM scratch
COPY --from=compile /go/app /app
COPY --from=compile /bin/busybox /busybox
""",
}
INSTALL = "RUN cp deps.txt /deps-installed"


def multi_stage(stack: Stack, shape: str) -> None:
    stack.write("app/Dockerfile", SHAPES[shape])
    stack.commit(f"{shape}-shaped multi-stage build")


def rebuilt(result: dict[str, object]) -> list[str]:
    row = services(result)["app"]
    steps: list[str] = row["rebuilt_steps"]
    return steps


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_prune_and_code_change_keep_every_dependency_step(stack: Stack, shape: str) -> None:
    multi_stage(stack, shape)
    first = build_json(stack.root)
    assert [step for step in rebuilt(first) if INSTALL in step] != []  # the install ran once
    strategy = "cache folder" if caches_in_folders() else "stage images"
    assert first["plan"]["services"][0]["strategy"] == strategy
    sh("docker", "builder", "prune", "-af")
    stack.write("app/src/main.txt", "app v2\n")
    stack.commit("code change")
    second = build_json(stack.root)
    warned = any("only some runs" in w for w in second["plan"]["warnings"])
    assert warned is not stage_images_reliable()  # the plan says where it cannot promise
    if stage_images_reliable():
        assert [step for step in rebuilt(second) if INSTALL in step] == []
        assert services(second)["app"]["cached"] >= 2
    assert any("src/" in step for step in rebuilt(second))  # the code did rebuild
    if strategy != "stage images" or not stage_images_reliable():
        return
    # the dependency stage's image was current: not built again, and it still serves after a
    # prune; the code's stage was
    built = {t["stage"]: not t["current"] for t in second["plan"]["services"][0]["stages"]}
    assert list(built.values()) == [False, True], built
    sh("docker", "builder", "prune", "-af")
    stack.write("app/src/main.txt", "app v3\n")
    stack.commit("another code change")
    third = build_json(stack.root)
    assert [step for step in rebuilt(third) if INSTALL in step] == []


def test_fresh_runner_gets_every_stage_from_the_registry_and_clear_clears_it(
    stack: Stack, tmp_path: Path
) -> None:
    registry = f"{require_registry()}/{stack.name}"
    env = {"INVOKE_STACK_REGISTRY": registry}
    multi_stage(stack, "node")
    pushed = build_json(stack.root, "--push", env=env)["result"]["pushed"]
    # where every stage's cache goes: a registry cache tag, or an inline-cache image per stage
    cache = f"{registry}/{stack.name}-app:" + (
        "buildcache" if caches_in_folders() else "cache-deps"
    )
    source = f"type=registry,ref={cache}" if caches_in_folders() else cache
    assert cache in pushed
    assert f"{registry}/{stack.name}-app:latest" in pushed

    def fresh_runner() -> Stack:
        refs = sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                  "--filter", f"reference={registry}/*").stdout.split()  # fmt: skip
        if refs:
            sh("docker", "rmi", "-f", *refs)
        sh("docker", "builder", "prune", "-af")
        clone = tmp_path / f"runner-{uuid.uuid4().hex[:6]}" / "proj"
        sh("git", "clone", "-q", str(stack.root), str(clone))
        return Stack(clone, stack.name)

    runner = fresh_runner()
    result = build_json(runner.root, env=env)
    sources = {s["entry"]: s["status"] for s in result["plan"]["services"][0]["sources"]}
    assert sources[source] == "registry"
    warned = any("only some runs" in w for w in result["plan"]["warnings"])
    assert warned is not stage_images_reliable()  # the plan says where it cannot promise
    if stage_images_reliable():
        assert [step for step in rebuilt(result) if INSTALL in step] == []
    shutil.rmtree(runner.root.parent)

    cleared = clear(stack, env=env)
    deleted = [i["name"] for i in cleared["items"] if i["result"].startswith("deleted")]
    assert cache in deleted
    runner = fresh_runner()
    after = build_json(runner.root, env=env)
    assert services(after)["app"]["cached"] == 0
