"""Swarm target on a real single-node swarm: zero failed requests through a good and a failed
update, Swarm's rollback detected and recorded, volumes intact.

The kernel here has no IPVS, so the service uses ``endpoint_mode: dnsrr`` on an attachable
network and a probe container on that network requests it every 0.2 s (real clusters use the
ingress mesh; the tool does not force dnsrr).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.engine.test_lock import elsewhere
from tests.support import BASE_IMAGE, Stack, invoke, sh

pytestmark = [pytest.mark.engine, pytest.mark.alone]

WEB = f"""\
FROM {BASE_IMAGE}
COPY site/ /www/
ARG GIT_COMMIT_HASH=unknown
RUN echo "$GIT_COMMIT_HASH" > /www/version
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
ENV = {"INVOKE_STACK_ORCHESTRATOR": "swarm"}


@pytest.fixture
def swarm_stack(stack: Stack) -> Iterator[Stack]:
    """The stack as a swarm service with a health check and a volume, on a one-node swarm."""
    state = sh("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "active":
        sh("docker", "swarm", "init", "--advertise-addr", "127.0.0.1")
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  web:\n    build: ./web\n"
        "    deploy:\n      endpoint_mode: dnsrr\n"
        "    volumes: [data:/data]\n"
        "    healthcheck:\n"
        '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]\n'
        "      interval: 1s\n      timeout: 2s\n      retries: 3\n      start_period: 1s\n"
        # a one-shot job: done once it completed, not a replica that never runs
        f"  migrate:\n    image: {BASE_IMAGE}\n    command: ['true']\n"
        "    deploy:\n      restart_policy: {condition: none}\n"
        "networks:\n  default:\n    attachable: true\nvolumes:\n  data: {}\n",
    )
    stack.write("web/Dockerfile", WEB)
    stack.write("web/site/health", "ok\n")
    stack.write("web/site/index.html", "v1\n")
    stack.commit("swarm service")
    yield stack
    sh("docker", "rm", "-f", f"{stack.name}-probe", check=False)
    sh("docker", "stack", "rm", stack.name, check=False)
    for _ in range(30):
        if not sh(
            "docker", "network", "ls", "-q", "--filter", f"name={stack.name}_"
        ).stdout.strip():
            break
        time.sleep(1)
    label = f"label=org.compose-tasks.project={stack.name}"
    configs = sh("docker", "config", "ls", "-q", "--filter", label, check=False).stdout.split()
    if configs:
        sh("docker", "config", "rm", *configs, check=False)
    for _ in range(30):  # the stack's task containers let go of its volume a little later
        removed = sh("docker", "volume", "rm", f"{stack.name}_data", check=False)
        if removed.returncode == 0 or "no such volume" in removed.stderr.lower():
            break
        time.sleep(1)
    if state != "active":
        sh("docker", "swarm", "leave", "--force", check=False)


def deploy(stack: Stack) -> tuple[int, str]:
    done = invoke(stack.root, "deploy", "--timeout", "120", env=ENV)
    return done.returncode, done.stderr


def running_image(stack: Stack) -> str:
    done = sh("docker", "service", "inspect", f"{stack.name}_web",
              "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}")  # fmt: skip
    return done.stdout.strip().split("@")[0]


def head(stack: Stack) -> str:
    return sh("git", "rev-parse", "HEAD", cwd=stack.root).stdout.strip()


def test_rolling_updates_serve_every_request_and_a_failed_one_rolls_back(
    swarm_stack: Stack,
) -> None:
    stack = swarm_stack
    code, err = deploy(stack)
    assert code == 0, err[-3000:]
    assert "_migrate" in err and "done (completed)" in err
    v1 = head(stack)
    network = f"{stack.name}_default"
    sh("docker", "run", "--rm", "-v", f"{stack.name}_data:/data", BASE_IMAGE,
       "sh", "-c", "echo precious > /data/keep")  # fmt: skip
    probe = (
        "while true; do if wget -q -O - http://web:8080/version >/dev/null 2>&1; "
        "then echo OK; else echo FAIL; fi; sleep 0.2; done"
    )
    sh("docker", "run", "-d", "--name", f"{stack.name}-probe", "--network", network,
       BASE_IMAGE, "sh", "-c", probe)  # fmt: skip
    time.sleep(2)

    stack.write("web/site/index.html", "v2\n")
    v2 = stack.commit("v2")
    code, err = deploy(stack)
    assert code == 0, err[-3000:]
    assert running_image(stack) == f"{stack.name}-web:{v2[:12]}"

    (stack.root / "web/site/health").unlink()
    stack.commit("v3: never healthy")
    code, err = deploy(stack)
    assert code == 1
    assert "rolled back" in err.splitlines()[-1]
    assert running_image(stack) == f"{stack.name}-web:{v2[:12]}"  # Swarm put v2 back
    time.sleep(2)

    log = sh("docker", "logs", f"{stack.name}-probe").stdout.split()
    print(f"probe: {log.count('OK')} requests served, {log.count('FAIL')} failed")
    print("failed swarm deploy, its last lines:", *err.splitlines()[-8:], sep="\n")
    assert log.count("FAIL") == 0, log.count("FAIL")
    assert log.count("OK") > 50
    entries = json.loads(invoke(stack.root, "history", "--json", env=ENV).stdout)
    assert [(e["action"], e["sha"][:7], e["result"]) for e in entries] == [
        ("deploy", v1[:7], "ok"),
        ("deploy", v2[:7], "ok"),
        ("deploy", head(stack)[:7], "failed"),
        ("rollback", v2[:7], "ok"),
    ]
    kept = sh("docker", "run", "--rm", "-v", f"{stack.name}_data:/data", BASE_IMAGE,
              "cat", "/data/keep")  # fmt: skip
    assert kept.stdout.strip() == "precious"


def test_a_killed_cluster_deploy_is_taken_over_after_its_lease(swarm_stack: Stack) -> None:
    """Runner A (another hostname) is killed while Swarm waits for a version that never gets
    healthy; runner B's deploy takes the lock once A's lease ran out, converges on its version,
    and the history records A's run as interrupted."""
    stack = swarm_stack
    code, err = deploy(stack)
    assert code == 0, err[-3000:]
    (stack.root / "web/site/health").unlink()
    stuck = stack.commit("never healthy")
    runner_a = elsewhere(stack, "runner-a", "deploy", "--timeout", "300", env=ENV)
    lock = f"compose-tasks-lock-{stack.name}"
    held = ["docker", "config", "ls", "-q", "--filter", f"name={lock}"]
    deadline = time.monotonic() + 120
    while not sh(*held).stdout.strip():
        assert time.monotonic() < deadline and runner_a.poll() is None, "runner A never locked"
        time.sleep(0.5)
    time.sleep(5)  # Swarm is updating; A renews its lease while it waits for health
    os.killpg(runner_a.pid, signal.SIGKILL)
    runner_a.wait()
    (stack.root / "web/site/health").write_text("ok\n")
    fixed = stack.commit("fixed")
    started = time.monotonic()
    runner_b = elsewhere(stack, "runner-b", "deploy", "--timeout", "120", env=ENV)
    _, err = runner_b.communicate(timeout=300)
    assert runner_b.returncode == 0, err[-3000:]
    assert "took over the deploy lock of" in err and "@runner-a" in err
    print(f"runner B deployed {time.monotonic() - started:.0f}s after runner A was killed")
    assert running_image(stack) == f"{stack.name}-web:{fixed[:12]}"
    entries = json.loads(invoke(stack.root, "history", "--json", env=ENV).stdout)
    interrupted = [e for e in entries if e["result"] == "interrupted"]
    assert [e["sha"] for e in interrupted] == [stuck[:12]]
    assert entries[-1]["result"] == "ok" and entries[-1]["sha"] == fixed[:12]
    assert not sh(*held).stdout.strip()
