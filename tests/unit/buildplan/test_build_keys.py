"""Every key of the compose specification's build section, passed through: for a project per
key, compose's own resolution (``docker compose config``) of the project with the tool's
override is the user's resolution field by field, but for what the tool adds (its cache
entries, args and labels, the image tag). Needs the compose binary, not an engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from compose_tasks.buildplan import pipeline
from compose_tasks.buildplan.depends import Need
from compose_tasks.buildplan.gitinfo import GitInfo
from compose_tasks.buildplan.override import override_yaml
from compose_tasks.docker.builder import Builder
from compose_tasks.docker.runner import Runner
from tests.support import plan_for, settings_for

# the build reference's keys (compose-spec build.md), each in a form compose takes
KEYS: dict[str, str] = {
    "context": "context: .\n      dockerfile: app/Dockerfile",
    "dockerfile": "dockerfile: other.Dockerfile",
    "dockerfile_inline": "dockerfile_inline: |\n        FROM busybox:1.36\n        RUN true",
    "args-map": "args: {A: '1', B: 'two words'}",
    "args-list": "args: [A=1, B]",  # a bare name: taken from the environment
    "target": "target: final",
    "cache_from": "cache_from: [shop/app:cache, 'type=local,src=/tmp/c']",
    "cache_to": "cache_to: ['type=local,dest=/tmp/c']",
    "labels-map": "labels: {com.example.team: shop}",
    "labels-list": "labels: [com.example.team=shop]",
    "shm_size": "shm_size: 256m",
    "network": "network: host",
    "platforms": "platforms: [linux/amd64, linux/arm64]",
    "additional_contexts": "additional_contexts:\n        data: ./data\n"
    "        img: docker-image://busybox:1.36\n        git: https://example.com/r.git#main",
    "no_cache": "no_cache: true",
    "pull": "pull: true",
    "extra_hosts": "extra_hosts: ['db.internal:10.0.0.5', 'api=10.0.0.6']",
    "tags": "tags: [shop/app:extra, registry.example/shop/app:1]",
    "privileged": "privileged: true",
    "ssh-default": "ssh: [default]",
    "ssh-key": "ssh: [mykey=./id_key]",
    "secrets": "secrets: [from_file, from_env]",
    "ulimits": "ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}",
    "isolation": "isolation: default",
    "entitlements": "entitlements: [network.host]",
    "provenance": "provenance: mode=max",
    "sbom": "sbom: true",
}
SECRETS = "secrets:\n  from_file: {file: ./secret.txt}\n  from_env: {environment: SHOP_TOKEN}\n"
ADDED = {"cache_from", "cache_to", "args", "labels"}  # what the override may set


def _compose_problem() -> str:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return "Compose v2 is not installed" if done.returncode else ""


@pytest.fixture(autouse=True)
def _needs_compose() -> None:
    problem = _compose_problem()
    if problem and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the build-key tests cannot run: {problem}")
    if problem:
        pytest.skip(f"build-key test skipped: {problem}")


def config(root: Path, *files: str) -> dict[str, Any]:
    """compose's resolution of the project (its YAML form: JSON fails on ssh key entries)."""
    argv = ["docker", "compose", "--project-directory", str(root)]
    argv += [part for name in files for part in ("-f", str(root / name))]
    done = subprocess.run(
        [*argv, "config"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SHOP_TOKEN": "t0ken", "B": "from-env"},
    )
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def project(root: Path, build: str) -> None:
    (root / "app").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "app" / "Dockerfile").write_text("FROM busybox:1.36 AS final\nRUN true\n")
    (root / "app" / "other.Dockerfile").write_text("FROM busybox:1.36\n")
    (root / "secret.txt").write_text("s3cret\n")
    (root / "id_key").write_text("key\n")
    (root / "compose.yaml").write_text(
        "name: shop\nservices:\n  app:\n    image: shop/app\n    build:\n"
        f"      {'' if build.startswith('context') else 'context: ./app'}\n      {build}\n{SECRETS}"
    )


def merged_and_own(
    root: Path, builder: Builder, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The app service as compose resolves it with the tool's override, and without."""
    settings = settings_for(root, {"project_dir": str(root)})
    runner = Runner({"SHOP_TOKEN": "t0ken", "B": "from-env"})
    git = GitInfo("0123456789abcdef0123456789abcdef01234567", "git", False, "main")
    resolved = pipeline.resolve(settings, runner, git)
    built = plan_for(dict(resolved.data), root, settings=settings, builder=builder, **kwargs)
    (root / "override.yml").write_text(override_yaml(built))
    merged = config(root, "compose.yaml", "override.yml")["services"]["app"]
    own = config(root, "compose.yaml")["services"]["app"]
    return merged, own


def assert_passed_through(merged: dict[str, Any], own: dict[str, Any]) -> None:
    assert {k: v for k, v in merged.items() if k != "image"} == {
        k: v for k, v in own.items() if k not in ("image", "build")
    } | {"build": merged["build"]}
    for key, value in own["build"].items():
        if key in ("args", "labels"):
            assert {**merged["build"][key], **value} == merged["build"][key], key
        elif key not in ADDED:
            assert merged["build"][key] == value, key
    assert set(merged["build"]) - set(own["build"]) <= ADDED


INLINE = Builder("compose internal builder", ("inline",), bake=False)
BAKE = Builder("buildx bake, driver docker", ("inline", "registry", "local"), bake=True)


@pytest.mark.parametrize("key", sorted(KEYS))
def test_each_build_key_passes_through_the_override(tmp_path: Path, key: str) -> None:
    project(tmp_path, KEYS[key])
    merged, own = merged_and_own(tmp_path, INLINE)
    assert_passed_through(merged, own)


def test_the_keys_together_and_a_stage_target(tmp_path: Path) -> None:
    """Every key at once; a multi-stage build on an inline-only builder adds a stage target,
    which takes the service's build section (but its target and the tool's cache keys)."""
    keys = [text for name, text in KEYS.items() if name.split("-")[0] not in ("args", "labels")]
    keys = [text for text in keys if not text.startswith(("context", "dockerfile", "ssh"))]
    project(tmp_path, "\n      ".join([*keys, KEYS["args-list"], KEYS["labels-map"]]))
    (tmp_path / "app" / "Dockerfile").write_text(
        "FROM busybox:1.36 AS deps\nRUN true\nFROM deps AS final\nRUN true\n"
    )
    merged, own = merged_and_own(tmp_path, INLINE, stages={"app": ["deps"]})
    assert_passed_through(merged, own)
    stage = config(tmp_path, "compose.yaml", "override.yml")["services"]["app--cache-deps"]
    assert stage["build"]["target"] == "deps"
    assert "tags" not in stage["build"]  # the user's tags name the service's image, not this
    untagged = {key: value for key, value in own["build"].items() if key != "tags"}
    assert_passed_through(
        {**stage, "build": {**stage["build"], "target": "final"}}, {**own, "build": untagged}
    )


def test_include_and_extends_across_folders(tmp_path: Path) -> None:
    project(tmp_path, KEYS["args-map"])
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "base.yaml").write_text(
        "services:\n  common:\n    build:\n      context: ../app\n      target: final\n"
        "      args: {FROM_BASE: '1'}\n"
    )
    (tmp_path / "lib" / "extra.yaml").write_text(
        "services:\n  worker:\n    extends: {file: base.yaml, service: common}\n"
    )
    text = (tmp_path / "compose.yaml").read_text()
    (tmp_path / "compose.yaml").write_text(f"include: [lib/extra.yaml]\n{text}")
    merged, own = merged_and_own(tmp_path, INLINE)
    assert_passed_through(merged, own)
    both = config(tmp_path, "compose.yaml", "override.yml")["services"]["worker"]
    alone = config(tmp_path, "compose.yaml")["services"]["worker"]
    assert_passed_through(both, alone)


def test_an_image_of_another_service_becomes_a_named_context_on_bake(tmp_path: Path) -> None:
    project(tmp_path, "additional_contexts: {data: ./data}")
    (tmp_path / "app" / "Dockerfile").write_text("FROM shop/base:1\nCOPY --from=data . /d\n")
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text("FROM busybox:1.36\n")
    text = (tmp_path / "compose.yaml").read_text()
    service = "  base:\n    image: shop/base:1\n    build: ./base\n"
    (tmp_path / "compose.yaml").write_text(text.replace("services:\n", f"services:\n{service}"))
    settings = settings_for(tmp_path, {"project_dir": str(tmp_path)})
    git = GitInfo("0123456789abcdef0123456789abcdef01234567", "git", False, "main")
    resolved = pipeline.resolve(settings, Runner(), git)
    read = pipeline.dockerfiles_of(resolved)
    assert read.needs["app"] == (Need("base", "shop/base:1", True),)
    built = plan_for(dict(resolved.data), tmp_path, settings=settings, builder=BAKE)
    built = pipeline.link(built, read.needs, BAKE)
    assert [s.name for s in built.services] == ["base", "app"]
    (tmp_path / "override.yml").write_text(override_yaml(built))
    merged = config(tmp_path, "compose.yaml", "override.yml")["services"]["app"]["build"]
    assert merged["additional_contexts"] == {
        "data": str(tmp_path / "data"),
        "shop/base:1": "service:base",
    }
