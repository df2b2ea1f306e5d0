"""``invoke build`` on the real engine: cached-step counts prove the cache works."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support import (
    ROOT,
    Stack,
    build_json,
    caches_in_folders,
    generated,
    image_id,
    invoke,
    raw_compose_build,
    remove_images,
    require_registry,
    services,
    sh,
    user_dirs,
)

pytestmark = pytest.mark.engine

# APP_DOCKERFILE steps (FROM not counted): WORKDIR, COPY deps, RUN deps | ARG | COPY src, RUN echo
DEPENDENCY_STEPS = 3
TOTAL_STEPS = 5


def prune_builder() -> None:
    sh("docker", "builder", "prune", "-af")


@pytest.mark.alone  # prunes the whole builder cache
def test_first_build_tags_commit_and_latest(stack: Stack) -> None:
    prune_builder()
    sha = sh("git", "rev-parse", "HEAD", cwd=stack.root).stdout.strip()
    row = services(build_json(stack.root))["app"]
    assert row["steps"] == TOTAL_STEPS
    assert row["cached"] == 0
    built = image_id(f"{stack.image('app')}:{sha[:12]}")
    assert built is not None
    assert image_id(f"{stack.image('app')}:latest") == built


def test_code_change_rebuilds_only_code_steps(stack: Stack) -> None:
    build_json(stack.root)
    stack.write("app/src/main.txt", "app v2\n")
    stack.commit("code change")
    row = services(build_json(stack.root))["app"]
    assert row["cached"] == DEPENDENCY_STEPS
    assert row["rebuilt"] == TOTAL_STEPS - DEPENDENCY_STEPS
    assert "COPY src/" in row["first_rebuilt"]


@pytest.mark.alone  # prunes the whole builder cache
def test_dependency_steps_survive_builder_prune(stack: Stack) -> None:
    build_json(stack.root)
    prune_builder()
    stack.write("app/src/main.txt", "app v2\n")
    stack.commit("code change")
    result = build_json(stack.root)
    sources = result["plan"]["services"][0]["sources"]
    if caches_in_folders():  # the cache folder serves; a local image cannot there
        assert [(s["origin"], s["status"]) for s in sources] == [
            ("cache folder", "cache backend"),
            ("latest", "dropped"),
        ]
    else:
        assert [s["status"] for s in sources] == ["local image"]
    row = services(result)["app"]
    assert row["cached"] == DEPENDENCY_STEPS
    assert "COPY src/" in row["first_rebuilt"]


@pytest.mark.alone  # prunes the whole builder cache
def test_no_change_after_prune_is_fully_cached(stack: Stack) -> None:
    build_json(stack.root)
    prune_builder()
    row = services(build_json(stack.root, "--rebuild"))["app"]
    assert (row["steps"], row["cached"]) == (TOTAL_STEPS, TOTAL_STEPS)


@pytest.mark.alone  # prunes the whole builder cache
def test_seed_bare_cache_from_is_useless_after_prune(stack: Stack) -> None:
    """Documents the pitfall: an image without inline cache metadata does not serve as cache."""
    image = f"{stack.image('app')}:latest"
    stack.use_cache_from(image, image=image)
    stack.commit("seed config")
    raw_compose_build(stack.root)
    assert image_id(image) is not None
    prune_builder()
    stats = raw_compose_build(stack.root).service("app")
    assert stats.total == TOTAL_STEPS
    assert stats.cached == 0, "a bare cache_from image without inline metadata served as cache"


def test_new_commit_hash_invalidates_only_from_its_arg(stack: Stack) -> None:
    build_json(stack.root, env={"GIT_COMMIT_HASH": "a" * 40})
    row = services(build_json(stack.root, env={"GIT_COMMIT_HASH": "b" * 40}))["app"]
    # Everything before the ARG and the COPY that does not read it stay cached.
    assert row["cached"] == TOTAL_STEPS - 1
    assert row["first_rebuilt"].startswith("[6/6] RUN echo")


def test_failed_service_leaves_every_latest_unchanged(stack: Stack) -> None:
    stack.add_service("web")
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  app:\n    build: ./app\n  web:\n    build: ./web\n",
    )
    stack.commit("two services")
    build_json(stack.root)
    before = {svc: image_id(f"{stack.image(svc)}:latest") for svc in ("app", "web")}
    assert all(before.values())
    stack.write("app/src/main.txt", "app v2\n")
    stack.write("web/Dockerfile", (stack.root / "web/Dockerfile").read_text() + "RUN exit 3\n")
    stack.commit("break web")
    done = invoke(stack.root, "build")
    assert done.returncode != 0
    assert "web" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    after = {svc: image_id(f"{stack.image(svc)}:latest") for svc in ("app", "web")}
    assert after == before


def test_missing_cache_ref_is_dropped_not_queried(stack: Stack) -> None:
    missing = f"{require_registry()}/nonexistent-{uuid.uuid4().hex[:8]}:latest"
    stack.use_cache_from(missing)
    stack.commit("bad cache ref")
    done = invoke(stack.root, "build", "--json")
    assert done.returncode == 0, done.stderr
    sources = json.loads(done.stdout)["plan"]["services"][0]["sources"]
    assert sources[0]["entry"] == missing
    assert sources[0]["status"].startswith("dropped")
    assert "registry-1.docker.io" not in done.stdout + done.stderr
    assert "importing cache manifest" not in done.stderr


def test_dry_run_changes_nothing(stack: Stack) -> None:
    done = invoke(stack.root, "build", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "cache_from: !override" in done.stdout
    assert ("type=local,dest=" if caches_in_folders() else "BUILDKIT_INLINE_CACHE") in done.stdout
    assert generated(stack.root) == []
    assert not (stack.root.parent / "xdg-cache").exists()  # no cache folder either
    assert image_id(f"{stack.image('app')}:latest") is None


def test_demo_stack_builds_end_to_end(tmp_path: Path) -> None:
    name = f"ctdemo{uuid.uuid4().hex[:6]}"
    # its own build folder: every engine's pass builds this checkout at the same time
    env = {"COMPOSE_PROJECT_NAME": name, "XDG_CACHE_HOME": str(tmp_path / "xdg-cache")}
    try:
        first = services(build_json(ROOT, env=env))
        assert set(first) == {"backend", "frontend"}
        same = services(build_json(ROOT, env=env))
        for row in same.values():  # this commit's images are up to date: nothing built
            assert (row["reused"], row["steps"]) == (row["image"], 0)
        second = services(build_json(ROOT, "--rebuild", env=env))
        for row in second.values():
            assert row["steps"] == row["cached"] > 0
            assert row["exact"] is True  # the plan predicted every step cached
        assert image_id(f"{name}-backend:latest") == image_id(second["backend"]["image"])
    finally:
        remove_images(name)


@pytest.mark.alone  # prunes the whole builder cache
def test_cache_to_the_builder_cannot_export_is_dropped_not_fatal(stack: Stack) -> None:
    """Raw compose fails the whole build on a docker-driver builder; the plan drops the export."""
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  app:\n    build:\n      context: ./app\n"
        "      cache_to: ['type=registry,ref=127.0.0.1:5000/never/app:cache']\n",
    )
    stack.commit("cache_to")
    checks = json.loads(invoke(stack.root, "doctor", "--json").stdout)["checks"]
    [builder] = [check for check in checks if check["name"] == "builder"]
    if not builder["detail"].endswith("export: inline"):
        pytest.skip(f"this builder can export registry cache: {builder['detail']}")
    raw = sh("docker", "compose", "build", cwd=stack.root, check=False)
    assert raw.returncode != 0 and "Cache export is not supported" in raw.stdout + raw.stderr
    done = invoke(stack.root, "build")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "cache_to type=registry,ref=127.0.0.1:5000/never/app:cache dropped" in done.stdout
    prune_builder()
    row = services(build_json(stack.root, "--rebuild"))["app"]
    assert row["cached"] == TOTAL_STEPS, "inline cache should still serve after a prune"


def test_docker_hub_ref_that_cannot_be_checked_is_kept_unverified(stack: Stack) -> None:
    hub = f"myorg-{uuid.uuid4().hex[:8]}/app:cache"  # no registry host: Docker Hub
    stack.use_cache_from(hub)
    stack.commit("hub cache ref")
    done = invoke(stack.root, "build", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    (source, *_) = data["plan"]["services"][0]["sources"]
    assert (source["entry"], source["status"]) == (hub, "unverified")
    assert hub in data["plan"]["services"][0]["cache_from"]  # never silently dropped


def test_compose_beside_a_buildx_it_refuses_is_one_line_before_anything_runs(
    stack: Stack, tmp_path: Path
) -> None:
    """Compose 2.40 refuses to build beside buildx < 0.17 (Debian 13's 0.13 here)."""
    old = os.environ.get("ENGINE_OLD_BUILDX", "")
    plugins = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "cli-plugins"
    if not Path(old).is_file() or not (plugins / "docker-compose").is_file():
        pytest.skip(
            "needs compose 2.40 and Debian 13's buildx 0.13 (scripts/engines.sh fetches it)"
        )
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    shutil.copy(plugins / "docker-compose", config / "cli-plugins")
    shutil.copy(old, config / "cli-plugins" / "docker-buildx")
    (config / "config.json").write_text("{}")
    cache = Path(user_dirs(stack.root)["XDG_CACHE_HOME"])
    done = invoke(stack.root, "build", env={"DOCKER_CONFIG": str(config)})
    assert done.returncode == 1
    assert done.stderr.startswith("error: docker buildx 0.13.1 is older than 0.17, which compose")
    assert len(done.stderr.splitlines()) == 1 and "upgrade buildx" in done.stderr
    assert done.stdout == "" and not cache.exists()  # nothing planned, printed or written
    assert image_id(f"{stack.image('app')}:latest") is None


@pytest.mark.alone  # prunes the whole builder cache
def test_twelve_identical_services_build_in_parallel_where_the_engine_allows(stack: Stack) -> None:
    """Engine 24+ builds services that share every step in parallel (20.10's BuildKit crashed
    dockerd doing that: there they build one at a time), and survives it, cold and warm."""
    names = [f"s{i:02d}" for i in range(12)]
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n" + "".join(f"  {n}:\n    build: ./app\n" for n in names),
    )
    stack.commit("twelve identical services")
    major = int(sh("docker", "version", "--format", "{{.Server.Version}}").stdout.split(".")[0])
    try:
        for change in ("cold", "code change"):
            if change == "cold":
                prune_builder()
            else:
                stack.write("app/src/main.txt", "app v2\n")
                stack.commit(change)
            result = build_json(stack.root)
            assert ("--parallel" in result["plan"]["argv"]) is (major < 24)
            rows = services(result)
            assert sorted(rows) == names
            assert all(row["steps"] == TOTAL_STEPS for row in rows.values())
            assert sh("docker", "version", "--format", "{{.Server.Version}}").returncode == 0
        # Every service reuses the dependency steps and gets the new code: the code steps are
        # built once; a service built after that (one at a time, Engine < 24) finds them cached.
        cached = [row["cached"] for row in rows.values()]
        assert DEPENDENCY_STEPS in cached and set(cached) <= {DEPENDENCY_STEPS, TOTAL_STEPS}
        assert all(image_id(row["image"]) for row in rows.values())
    finally:
        remove_images(stack.name)


def test_a_named_service_behind_a_profile_builds_and_compose_file_secrets_stay_masked(
    stack: Stack,
) -> None:
    """``-s`` turns on the profile of a service it names, as compose does; a secret written in
    the compose file (a build arg) shows in no output, text or JSON."""
    secret = "hunter2hunter2"  # noqa: S105
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  app:\n    build:\n      context: ./app\n"
        f"      args: [DB_PASSWORD={secret}]\n  tool:\n    build: ./app\n    profiles: [tools]\n",
    )
    stack.commit("a profile and a secret build arg")
    try:
        dry = invoke(stack.root, "build", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr[-2000:]
        assert [row["name"] for row in json.loads(dry.stdout)["plan"]["services"]] == ["app"]
        assert secret not in dry.stdout + dry.stderr
        result = build_json(stack.root, "-s", "tool")
        assert list(services(result)) == ["tool"]
        assert result["plan"]["argv"][-4:] == ["--progress", "json", "build", "tool"]
        assert result["plan"]["argv"][-6:-4] == ["--profile", "tools"]
        assert image_id(f"{stack.image('tool')}:latest") is not None
        done = invoke(stack.root, "build")
        assert done.returncode == 0, done.stderr[-2000:]
        assert secret not in done.stdout + done.stderr
        assert image_id(f"{stack.image('app')}:latest") is not None
    finally:
        remove_images(stack.name)
