"""Test helpers: throwaway compose projects, running the tasks for real, reading results."""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from compose_tasks.buildplan.gitinfo import GitInfo
from compose_tasks.buildplan.model import BuildOptions, BuildPlan
from compose_tasks.buildplan.plan import make_plan
from compose_tasks.docker.builder import Builder, Found
from compose_tasks.docker.progress import BuildProgress
from compose_tasks.settings import Settings, load

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = "busybox:1.36"
COMMIT_VARS = ("GIT_COMMIT_HASH", "GITHUB_SHA", "CI_COMMIT_SHA")
REGISTRY = "127.0.0.1:5000"


def sh(
    *argv: str, cwd: Path | None = None, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command as an argv list."""
    return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=check, env=env)


def user_dirs(project: Path) -> dict[str, str]:
    """The cache folder of a test project, beside it (never inside it)."""
    return {"XDG_CACHE_HOME": str(project.parent / "xdg-cache")}


def generated(project: Path) -> list[Path]:
    """The tool's generated folders of a test project."""
    home = user_dirs(project)["XDG_CACHE_HOME"]
    return sorted(Path(home).glob("compose-tasks/*/build"))


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (git's own folder excluded) and its content."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def invoke(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run our invoke tasks for real, from the project's directory (``timeout``: a run that
    takes longer fails the test)."""
    full = {k: v for k, v in os.environ.items() if k not in COMMIT_VARS}
    full.update(user_dirs(project))
    full.update(env or {})
    return subprocess.run(
        ["invoke", "-r", str(ROOT), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=full,
        check=False,
        timeout=timeout,
    )


def build_json(project: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``invoke build --json`` and its parsed result; fails the test on a non-zero exit."""
    done = invoke(project, "build", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def services(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The result rows by service name."""
    return {row["service"]: row for row in result["result"]["services"]}


def remove_images(project: str) -> None:
    """Remove every image of a test project: its tags (``<project>-<service>:*``) and the
    untagged images its rebuilds left behind (compose's project label)."""
    refs = sh("docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
              "--filter", f"reference={project}-*", check=False).stdout.split()  # fmt: skip
    label = f"label=com.docker.compose.project={project}"
    refs += sh("docker", "images", "-q", "--filter", label, check=False).stdout.split()
    if refs:
        sh("docker", "rmi", "-f", *sorted(set(refs)), check=False)


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=3):
            return True
    except OSError:
        return False


def _start_registry(log: Path | None = None) -> str:
    """Debian's docker-registry on a free loopback port, deletes enabled, stopped at exit;
    with ``log``, every request it answers is written there."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail(
            f"no registry on {REGISTRY} and docker-registry is not installed "
            "(apt-get install docker-registry; .ci/run installs it)"
        )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = Path(tempfile.mkdtemp(prefix="compose-tasks-registry-"))
    config = folder / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    atexit.register(proc.terminate)
    address = f"127.0.0.1:{port}"
    for _ in range(50):
        if _answers(address):
            return address
        time.sleep(0.2)
    pytest.fail(f"docker-registry did not answer on {address}")


class RecordingRegistry:
    """A registry of its own that logs every request: what a build read from it, counted."""

    def __init__(self, folder: Path) -> None:
        self.log = folder / "registry.log"
        self.address = _start_registry(self.log)
        self.mark = 0

    def start_counting(self) -> None:
        self.mark = len(self.log.read_bytes())

    def blob_bytes(self, path_part: str, only: set[str] | None = None) -> int:
        """Bytes of blobs served since ``start_counting`` to requests containing ``path_part``
        (with ``only``, of those digests alone)."""
        text = self.log.read_bytes()[self.mark :].decode(errors="replace")
        total = 0
        for line in text.splitlines():
            if 'msg="response completed' in line and "http.request.method=GET " in line:
                uri = re.search(r'http\.request\.uri="?([^" ]+)', line)
                written = re.search(r"http\.response\.written=(\d+)", line)
                path = uri.group(1) if uri else ""
                wanted = only is None or path.rsplit("/", 1)[-1] in only
                if written and "/blobs/" in path and path_part in path and wanted:
                    total += int(written.group(1))
        return total

    def requests(self, method: str, path_part: str) -> list[str]:
        """The request paths since ``start_counting`` with this method and containing
        ``path_part`` (each request once: the registry logs its completion)."""
        text = self.log.read_bytes()[self.mark :].decode(errors="replace")
        found = []
        for line in text.splitlines():
            done = 'msg="response completed' in line
            if not done or f"http.request.method={method} " not in line:
                continue
            uri = re.search(r'http\.request\.uri="?([^" ]+)', line)
            if uri and path_part in uri.group(1):
                found.append(uri.group(1))
        return found


_registry: list[str] = []


def require_registry() -> str:
    """The tests' registry: the one on 127.0.0.1:5000 when it answers (``.ci/run``, the CI
    workflow's service), else a docker-registry started for this run on a free port."""
    if not _registry:
        _registry.append(REGISTRY if _answers(REGISTRY) else _start_registry())
    return _registry[0]


@functools.cache
def caches_in_folders() -> bool:
    """Whether the engine stores images in containerd, where a local image is no cache source:
    the tool then caches each service in a local cache folder instead of inline-cache images."""
    info = sh("docker", "info", "--format", "{{json .DriverStatus}}", check=False).stdout
    return "containerd" in info


@functools.cache
def stage_images_reliable() -> bool:
    """Whether this engine's BuildKit serves a multi-stage build's stage images every time
    (``Builder.stage_images``): not on the classic store of Engine 24+."""
    version = sh("docker", "version", "--format", "{{.Server.Version}}").stdout
    return caches_in_folders() or int(version.split(".")[0]) < 24


def raw_compose_build(root: Path) -> BuildProgress:
    """The seed's way: plain ``docker compose build`` (no inline cache metadata), parsed."""
    progress = BuildProgress()
    done = sh(
        "docker", "compose", "--progress", "json", "build",
        cwd=root, env={**os.environ, "COMPOSE_BAKE": "false"},
    )  # fmt: skip
    for line in (done.stdout + done.stderr).splitlines():
        progress.feed(line)
    return progress


def image_id(ref: str) -> str | None:
    done = sh("docker", "image", "inspect", "--format", "{{.Id}}", ref, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


APP_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
WORKDIR /app
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep 1
ARG GIT_COMMIT_HASH=unknown
COPY src/ ./src/
RUN echo "$GIT_COMMIT_HASH" > /app/VERSION
"""


class Stack:
    """A throwaway compose project in a git checkout, with a unique project name."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def add_service(self, service: str, dockerfile: str = APP_DOCKERFILE) -> None:
        self.write(f"{service}/Dockerfile", dockerfile)
        self.write(f"{service}/deps.txt", f"dep==1.0  # {self.name}\n")
        self.write(f"{service}/src/main.txt", f"{service} v1\n")
        self.write(f"{service}/.dockerignore", ".git\n")

    def use_cache_from(self, ref: str, image: str = "") -> None:
        """Give service ``app`` a compose-file ``cache_from`` entry (and optionally an image)."""
        pinned = f"    image: {image}\n" if image else ""
        self.write(
            "compose.yaml",
            f"name: {self.name}\nservices:\n  app:\n    build:\n"
            f"      context: ./app\n      cache_from: [{ref}]\n{pinned}",
        )

    def push_registry_cache(self) -> str:
        """Build with a registry ``cache_from`` ref, push the build there, drop the local tag."""
        remote = f"{require_registry()}/{self.name}/app:cache"
        self.use_cache_from(remote)
        self.commit("registry cache")
        build_json(self.root, env={"INVOKE_STACK_CACHE_SIZE": "0"})  # inline cache, any store
        sh("docker", "tag", f"{self.image('app')}:latest", remote)
        sh("docker", "push", remote)
        sh("docker", "rmi", remote)
        return remote

    def commit(self, message: str = "change") -> str:
        sh("git", "add", "-A", cwd=self.root)
        sh("git", "commit", "-qm", message, cwd=self.root)
        return sh("git", "rev-parse", "HEAD", cwd=self.root).stdout.strip()

    def image(self, service: str) -> str:
        return f"{self.name}-{service}"

    def cleanup(self) -> None:
        sh(
            "docker",
            "compose",
            "-p",
            self.name,
            "down",
            "-v",
            "--remove-orphans",
            "--timeout",  # its containers are thrown away: no grace period (10 s each)
            "0",
            cwd=self.root,
            check=False,
        )
        remove_images(self.name)
        # the deploy state this project left on the engine: its lock and history keeper first
        for kind in ("container", "volume", "network"):
            every = ["-a"] if kind == "container" else []
            listed = sh("docker", kind, "ls", "-q", *every, "--filter",
                        f"label=org.compose-tasks.project={self.name}", check=False)  # fmt: skip
            if listed.stdout.split():
                force = ["-f"] if kind == "container" else []
                sh("docker", kind, "rm", *force, *listed.stdout.split(), check=False)


def engine_problem() -> str:
    """Why engine tests cannot run here, or '' when they can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode:
        return "no Docker engine is reachable"
    if subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode:
        return "Compose v2 is not installed"
    if subprocess.run(
        ["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False
    ).returncode:
        return f"base image {BASE_IMAGE} missing (run: nox -s images)"
    return ""


def new_stack(root: Path, prefix: str = "ct") -> Stack:
    """A git-committed compose project with one service ``app`` (not yet built)."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    root.mkdir()
    project = Stack(root, name)
    project.write("compose.yaml", f"name: {name}\nservices:\n  app:\n    build: ./app\n")
    project.add_service("app")
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "config", "user.email", "t@example.invalid", cwd=root)
    sh("git", "config", "user.name", "t", cwd=root)
    project.commit("initial")
    return project


def clear(stack: Stack, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``invoke clear-caches --yes --json`` and its parsed result; fails the test on exit 1."""
    done = invoke(stack.root, "clear-caches", "--yes", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# --- plans without an engine ---------------------------------------------------------

SHA = "0123456789abcdef0123456789abcdef01234567"
GIT = GitInfo(SHA, "git", False, "main")
INLINE_ONLY = Builder("compose internal builder", ("inline",), bake=False)


def project(**services: dict[str, Any]) -> dict[str, Any]:
    return {"name": "shop", "services": services}


def settings_for(tmp_path: Path, config: dict[str, Any] | None = None) -> Settings:
    """Settings of a project in ``tmp_path``; the user's folders are in a home that is never
    written (``/home/tester``) unless ``XDG_CACHE_HOME`` points elsewhere."""
    return load(config or {}, environ={"HOME": "/home/tester"}, cwd=tmp_path)


def _found(found: Found | None, local: bool) -> Found | None:
    """A fake lookup's answer: a local image does not count where the builder cannot read it."""
    return found if found is None or local or found.where != "local" else None


OPTIONS = {field.name for field in dataclasses.fields(BuildOptions)}  # plan_for's keywords


def plan_for(
    compose: dict[str, Any],
    tmp_path: Path,
    existing: dict[str, Found] | None = None,
    config: dict[str, Any] | None = None,
    settings: Settings | None = None,
    **kwargs: Any,
) -> BuildPlan:
    """A plan without an engine: ``existing`` answers the image lookups."""
    settings = settings or settings_for(tmp_path, config)
    found = existing or {}
    builder = kwargs.pop("builder", INLINE_ONLY)
    wanted = {key: kwargs.pop(key) for key in OPTIONS & kwargs.keys()}
    if "services" in wanted:
        wanted["services"] = tuple(wanted["services"])
    return make_plan(
        compose,
        settings,
        [tmp_path / "compose.yaml"],
        GIT,
        lambda ref, _remote, local: _found(found.get(ref), local),
        builder,
        BuildOptions(**wanted),
        **kwargs,
    )
