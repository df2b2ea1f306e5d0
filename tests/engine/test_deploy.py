"""``invoke deploy`` / ``rollback`` / ``history`` on the real engine, serving HTTP on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.support import BASE_IMAGE, Stack, invoke, sh

pytestmark = pytest.mark.engine

WEB_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY site/ /www/
ARG GIT_COMMIT_HASH=unknown
RUN echo "$GIT_COMMIT_HASH" > /www/version
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def web(stack: Stack) -> Stack:
    """The stack turned into a web service with a health check, a port and a data volume."""
    return make_web(stack)


def make_web(stack: Stack) -> Stack:
    """The stack turned into a web service with a health check, a port and a data volume."""
    port = free_port()
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  web:\n    build: ./web\n"
        f'    ports: ["127.0.0.1:{port}:8080"]\n    volumes: [data:/data]\n'
        "    healthcheck:\n"
        '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]\n'
        "      interval: 1s\n      timeout: 2s\n      retries: 3\nvolumes:\n  data:\n",
    )
    stack.write("web/Dockerfile", WEB_DOCKERFILE)
    stack.write("web/site/health", "ok\n")
    stack.port = port  # type: ignore[attr-defined]
    stack.commit("web")
    return stack


def serving(stack: Stack) -> str:
    url = f"http://127.0.0.1:{stack.port}/version"  # type: ignore[attr-defined]
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode().strip())


def head(stack: Stack) -> str:
    return sh("git", "rev-parse", "HEAD", cwd=stack.root).stdout.strip()


def deploy(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return invoke(stack.root, "deploy", "--timeout", "30", *args)


def history(stack: Stack) -> list[dict[str, str]]:
    done = invoke(stack.root, "history", "--json")
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, str]] = json.loads(done.stdout)
    return entries


def write_volume(stack: Stack) -> None:
    sh("docker", "compose", "-p", stack.name, "exec", "-T", "web", "sh", "-c",
       "echo precious > /data/keep", cwd=stack.root)  # fmt: skip


def read_volume(stack: Stack) -> str:
    volume = f"{stack.name}_data"
    done = sh("docker", "run", "--rm", "-v", f"{volume}:/data", BASE_IMAGE, "cat", "/data/keep")
    return done.stdout.strip()


def test_healthy_deploy_serves_new_version(web: Stack) -> None:
    done = deploy(web)
    assert done.returncode == 0, done.stderr[-2000:]
    assert serving(web) == head(web)
    assert [(e["action"], e["result"]) for e in history(web)] == [("deploy", "ok")]
    # a broken checkout: history reads the target without compose
    web.write("compose.yaml", (web.root / "compose.yaml").read_text() + "  broken: [\n")
    assert [(e["action"], e["result"]) for e in history(web)] == [("deploy", "ok")]


def test_a_one_shot_service_that_exited_0_is_done(web: Stack) -> None:
    """A migration job (``restart: "no"``, exits 0) beside the web service: the deploy is ok."""
    migrate = f"  migrate:\n    image: {BASE_IMAGE}\n    command: ['true']\n    restart: 'no'\n"
    text = (web.root / "compose.yaml").read_text().replace("volumes:\n  data:", "")
    web.write("compose.yaml", text + migrate + "volumes:\n  data:\n")
    web.commit("a migration job")
    done = deploy(web)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "migrate" in done.stderr and "done (exited 0)" in done.stderr
    assert serving(web) == head(web)


def test_failed_build_leaves_old_version_serving(web: Stack) -> None:
    assert deploy(web).returncode == 0
    good = head(web)
    write_volume(web)
    web.write("web/Dockerfile", WEB_DOCKERFILE + "RUN exit 1\n")
    web.commit("broken build")
    done = deploy(web)
    assert done.returncode == 1
    assert "build failed" in done.stderr.splitlines()[-1]
    assert serving(web) == good
    assert read_volume(web) == "precious"


def test_unhealthy_deploy_rolls_back(web: Stack) -> None:
    assert deploy(web).returncode == 0
    good = head(web)
    write_volume(web)
    (web.root / "web/site/health").unlink()
    web.commit("fails its health check")
    done = deploy(web)
    assert done.returncode == 1
    assert "rolled back" in done.stderr.splitlines()[-1]
    assert "404 Not Found" in done.stderr  # the health check's own output is shown
    assert serving(web) == good
    assert [(e["action"], e["result"]) for e in history(web)] == [
        ("deploy", "ok"),
        ("deploy", "failed"),
        ("rollback", "ok"),
    ]
    assert read_volume(web) == "precious"


def test_first_deploy_that_fails_is_left_stopped(web: Stack) -> None:
    (web.root / "web/site/health").unlink()
    web.commit("never healthy")
    done = deploy(web)
    assert done.returncode == 1
    assert "no earlier deploy to roll back to" in done.stderr.splitlines()[-1]
    running = sh("docker", "compose", "-p", web.name, "ps", "-q", "--status", "running",
                 cwd=web.root).stdout.split()  # fmt: skip
    assert running == []


def test_rollback_to_sha_serves_it(web: Stack) -> None:
    assert deploy(web).returncode == 0
    first = head(web)
    write_volume(web)
    web.write("web/site/page", "v2\n")
    web.commit("v2")
    assert deploy(web).returncode == 0
    assert serving(web) == head(web)
    shutil.rmtree(web.root / "web")  # a broken checkout: the build context is gone
    done = invoke(web.root, "rollback", "--to", first[:12], "--timeout", "30")
    assert done.returncode == 0, done.stderr[-2000:]
    assert serving(web) == first
    assert history(web)[-1]["action"] == "rollback"
    assert read_volume(web) == "precious"


def hold_lock(stack: Stack, holder: dict[str, object]) -> str:
    """Take the project's deploy lock on the engine as another run would: a running container
    of that name, labelled with its holder."""
    name = f"compose-tasks-lock-{stack.name}"
    sh("docker", "run", "-d", "--name", name, "--network", "none",
       "--label", "org.compose-tasks.state=lock",
       "--label", f"org.compose-tasks.project={stack.name}",
       "--label", f"org.compose-tasks.run={holder.get('run', '')}",
       "--label", f"org.compose-tasks.entry={json.dumps(holder)}",
       BASE_IMAGE, "sleep", "600")  # fmt: skip
    return name


def lock_held(name: str) -> bool:
    return sh("docker", "container", "inspect", name, check=False).returncode == 0


def test_concurrent_deploy_refused_and_a_dead_holder_s_lock_taken(web: Stack) -> None:
    assert deploy(web).returncode == 0
    holder = subprocess.Popen(["sleep", "60"])
    try:
        held = {"pid": holder.pid, "user": "alice", "machine": socket.gethostname()}
        lock = hold_lock(web, {**held, "since": "earlier"})  # taken just now: inside its lease
        done = deploy(web, "--no-build")
        assert done.returncode == 1
        assert "locked by alice@" in done.stderr
        done = deploy(web, "--no-build", "--break-lock")
        assert done.returncode == 1
        assert "never breaks a live holder" in done.stderr
        assert lock_held(lock)
    finally:
        holder.kill()
        holder.wait()
    done = deploy(web, "--no-build")  # its process ended: taken, no flag
    assert done.returncode == 0, done.stderr[-2000:]
    assert "took over the deploy lock of alice@" in done.stderr
    assert "its process ended" in done.stderr
    assert not lock_held(lock)


def test_context_flag_targets_that_engine(web: Stack) -> None:
    name = f"ctx-{web.name}"
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    sh("docker", "context", "create", name, "--docker", f"host={host}")
    try:
        done = deploy(web, "--context", name)
        assert done.returncode == 0, done.stderr[-2000:]
        assert serving(web) == head(web)
        bad = deploy(web, "--context", "no-such-context")
        assert bad.returncode == 1
        assert "unknown docker context" in bad.stderr
    finally:
        sh("docker", "context", "rm", "-f", name, check=False)


def test_fresh_clone_rolls_back_to_what_runs_not_to_nothing(web: Stack, tmp_path: Path) -> None:
    assert deploy(web).returncode == 0
    v1 = head(web)
    write_volume(web)
    clone_root = tmp_path / "other-runner" / "proj"  # no history, no lock, no local state
    sh("git", "clone", "-q", str(web.root), str(clone_root))
    clone = Stack(clone_root, web.name)
    sh("git", "config", "user.email", "t@example.invalid", cwd=clone_root)
    sh("git", "config", "user.name", "t", cwd=clone_root)
    (clone_root / "web/site/health").unlink()
    clone.commit("never healthy")
    done = deploy(clone)
    assert done.returncode == 1
    assert f"rolled back to :{v1[:12]}, healthy" in done.stderr.splitlines()[-1]
    assert serving(web) == v1
    assert read_volume(web) == "precious"
    # The history lives on the engine: the second clone sees the first clone's deploy too.
    assert [(e["action"], e["result"]) for e in history(clone)] == [
        ("deploy", "ok"),
        ("deploy", "failed"),
        ("rollback", "ok"),
    ]
    assert history(web) == history(clone)
    lock = hold_lock(web, {"pid": 4242, "user": "alice", "machine": "runner-a", "since": "now"})
    done = deploy(clone, "--break-lock")
    assert done.returncode == 1
    assert "locked by alice@runner-a (pid 4242) since now" in done.stderr.splitlines()[-1]
    assert lock_held(lock)
    sh("docker", "rm", "-f", lock)


def test_deploying_an_existing_sha_reads_no_dockerfile(web: Stack) -> None:
    assert deploy(web).returncode == 0
    good = head(web)
    web.write("web/Dockerfile", "FORM busted\n")  # the checkout's Dockerfile is broken now
    web.commit("broken Dockerfile")
    done = deploy(web, "--sha", good[:12])
    assert done.returncode == 0, done.stderr[-2000:]
    assert serving(web) == good
