"""Remote build contexts on a real engine, served on loopback: a git repository (``git
daemon``) and a tarball (an HTTP server). The tool builds them as compose does; a git context
is up to date while its ref names the same commit and rebuilt when it moves; a tarball's
content cannot be known beforehand, so it is built every time, and the plan says why."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.test_affected import named_contexts
from tests.support import BASE_IMAGE, Stack, build_json, image_id, invoke, services, sh

pytestmark = pytest.mark.engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def commit_all(root: Path, message: str) -> None:
    sh("git", "add", "-A", cwd=root)
    sh("git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm",
       message, cwd=root)  # fmt: skip


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bare repository served by ``git daemon`` on loopback: its URL and a work tree that
    pushes to it."""
    work, served = tmp_path / "work", tmp_path / "served"
    work.mkdir()
    served.mkdir()
    sh("git", "init", "-q", "-b", "main", cwd=work)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
         f"--port={port}", "--listen=127.0.0.1", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(50):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"git://127.0.0.1:{port}/repo.git", work
    daemon.terminate()
    daemon.wait()


def publish(work: Path, served: Path, text: str) -> None:
    (work / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY hello.txt /hello\n")
    (work / "hello.txt").write_text(text)
    commit_all(work, text)
    if not (served / "repo.git").exists():
        sh("git", "clone", "-q", "--bare", str(work), str(served / "repo.git"))
    else:
        sh("git", "push", "-q", str(served / "repo.git"), "main", cwd=work)


@pytest.fixture
def tar_server(tmp_path: Path) -> Iterator[str]:
    """A tarball build context served over HTTP on loopback: its URL."""
    folder, files = tmp_path / "www", tmp_path / "tarred"
    folder.mkdir()
    files.mkdir()
    (files / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY hello.txt /hello\n")
    (files / "hello.txt").write_text("from a tarball\n")
    with tarfile.open(folder / "ctx.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("Dockerfile", "hello.txt"):
            tar.add(files / name, arcname=name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ctx.tar"
    server.shutdown()


def hello(ref: str) -> str:
    return sh("docker", "run", "--rm", ref, "cat", "/hello").stdout.strip()


def test_a_git_context_is_up_to_date_until_its_ref_moves(
    stack: Stack, git_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, work = git_server
    publish(work, tmp_path / "served", f"git-1 {stack.name}\n")
    stack.write(
        "compose.yaml", f"name: {stack.name}\nservices:\n  fromgit:\n    build: {url}#main\n"
    )
    stack.commit("a git context")
    plan = build_json(stack.root, "--dry-run")["plan"]
    assert plan["services"][0]["always"] == ""
    first = services(build_json(stack.root))["fromgit"]
    assert hello(first["image"]) == f"git-1 {stack.name}"
    raw = sh("docker", "compose", "build", cwd=stack.root, check=False)
    assert raw.returncode == 0, raw.stderr[-2000:]  # compose builds the same project

    again = services(build_json(stack.root))["fromgit"]
    assert again["reused"] == first["image"]  # the ref names the same commit: up to date

    publish(work, tmp_path / "served", f"git-2 {stack.name}\n")  # the ref moves
    moved = services(build_json(stack.root))["fromgit"]
    assert moved["reused"] == ""
    assert hello(moved["image"]) == f"git-2 {stack.name}"
    done = invoke(stack.root, "doctor", "--json")  # no traceback, valid JSON
    assert "Traceback" not in done.stdout + done.stderr
    assert json.loads(done.stdout)


def test_a_tarball_context_is_built_every_time_and_as_compose_builds_it(
    stack: Stack, tar_server: str
) -> None:
    """Compose 2.40 cannot build a tarball URL (it joins the Dockerfile's path onto the URL):
    the tool plans it without a word of its own, and ends as compose does."""
    stack.write(
        "compose.yaml", f"name: {stack.name}\nservices:\n  fromtar:\n    build: {tar_server}\n"
    )
    stack.commit("a tarball context")
    plan = build_json(stack.root, "--dry-run")["plan"]
    assert plan["services"][0]["always"].startswith(f"its build context is a URL ({tar_server})")
    assert plan["services"][0]["prediction"] is None
    raw = sh("docker", "compose", "build", cwd=stack.root, check=False)
    done = invoke(stack.root, "build")
    assert "Traceback" not in done.stdout + done.stderr
    assert (done.returncode == 0) == (raw.returncode == 0), raw.stderr[-1000:]
    if done.returncode == 0:
        assert hello(f"{stack.image('fromtar')}:latest") == "from a tarball"


FACTS = f"""\
FROM {BASE_IMAGE} AS base
ARG MAP_ARG
ARG BARE_ARG
RUN --mount=type=secret,id=from_file --mount=type=secret,id=from_env @DATA@\\
    {{ echo "map=$MAP_ARG bare=$BARE_ARG"; md5sum /run/secrets/from_file | cut -c1-8; \\
       md5sum /run/secrets/from_env | cut -c1-8; grep -c facts.internal /etc/hosts; \\
       ulimit -n; df -k /dev/shm | tail -1 | awk '{{print $2}}'; @LIST@ }} > /facts
FROM base AS final
RUN echo final >> /facts
FROM base AS other
RUN echo other >> /facts
"""


def test_the_build_keys_an_offline_engine_builds_give_compose_s_own_image(stack: Stack) -> None:
    """args (map and a bare name from the environment), secrets (file and environment),
    extra_hosts, ulimits, shm_size, target, labels, tags, network, isolation, no_cache,
    additional_contexts and dockerfile_inline: the image the tool builds holds what raw compose's
    does, and carries the user's labels and tags."""
    mount = "--mount=type=bind,from=data,target=/data "
    stack.write("app/Dockerfile", FACTS.replace("@DATA@", mount).replace("@LIST@", "ls /data;"))
    stack.write("data/one.txt", "1\n")
    stack.write("secret.txt", f"s3cret {stack.name}\n")
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  app:\n    build:\n      context: ./app\n"
        "      target: final\n      args: [MAP_ARG=m1, BARE_ARG]\n"
        "      secrets: [from_file, from_env]\n      extra_hosts: ['facts.internal:10.9.9.9']\n"
        "      ulimits: {nofile: {soft: 1234, hard: 2345}}\n      shm_size: 96m\n"
        "      labels: {com.example.team: shop}\n"
        f"      tags: ['{stack.name}-app:extra']\n      network: default\n"
        "      isolation: default\n      no_cache: true\n"
        "      additional_contexts: {data: ./data}\n"
        "  inline:\n    build:\n      context: ./app\n      dockerfile_inline: |\n"
        f"        FROM {BASE_IMAGE}\n        RUN echo inline > /facts\n"
        "secrets:\n  from_file: {file: ./secret.txt}\n  from_env: {environment: FACTS_TOKEN}\n",
    )
    if not named_contexts():  # 20.10's BuildKit takes no additional_contexts
        text = (stack.root / "compose.yaml").read_text()
        stack.write("compose.yaml", text.replace("      additional_contexts: {data: ./data}\n", ""))
        stack.write("app/Dockerfile", FACTS.replace("@DATA@", "").replace("@LIST@", ""))
    stack.commit("every key an offline engine builds")
    env = {"BARE_ARG": "from-env", "FACTS_TOKEN": f"t0ken {stack.name}"}
    raw = sh("docker", "compose", "build", cwd=stack.root, check=False, env={**os.environ, **env})
    assert raw.returncode == 0, raw.stderr[-2000:]
    raw_facts = {name: facts(f"{stack.image(name)}:latest") for name in ("app", "inline")}
    rows = services(build_json(stack.root, env=env))
    for name in ("app", "inline"):
        assert facts(rows[name]["image"]) == raw_facts[name], name
    assert raw_facts["app"].splitlines()[0] == "map=m1 bare=from-env"
    assert raw_facts["app"].splitlines()[-1] == "final"  # the target
    labels = json.loads(
        sh("docker", "image", "inspect", "--format", "{{json .Config.Labels}}",
           rows["app"]["image"]).stdout
    )  # fmt: skip
    assert labels["com.example.team"] == "shop"
    assert image_id(f"{stack.image('app')}:extra") == image_id(rows["app"]["image"])


def facts(ref: str) -> str:
    return sh("docker", "run", "--rm", ref, "cat", "/facts").stdout.strip()
