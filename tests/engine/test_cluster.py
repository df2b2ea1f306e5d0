"""Deploys to a real three-node Swarm (scripts/cluster.sh: three engines, three managers, a
registry between them): replicas spread over the nodes, pulled from the registry by digest, a
rolling update that fails no request, a failed update that brings every service back, and a
node lost in the middle of a deploy.

No IPVS here: services use ``endpoint_mode: dnsrr`` and a probe container on the stack's
attachable overlay network requests them. Runs once, beside the machine's own engine (its
namespaces are not reachable from inside a matrix engine's).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, Stack, invoke, new_stack, sh

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.alone]

RUN = Path("/run/compose-tasks-cluster")
REGISTRY = "10.231.0.1:5000"
SCRIPT = str(ROOT / "scripts" / "cluster.sh")
DOCKERFILE = """\
FROM busybox:1.36
COPY site/ /www/
ARG GIT_COMMIT_HASH=unknown
RUN echo "$GIT_COMMIT_HASH" > /www/version
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
HEALTH = (
    "    healthcheck:\n"
    '      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]\n'
    "      interval: 1s\n      timeout: 2s\n      retries: 3\n      start_period: 1s\n"
)


def node(n: int) -> dict[str, str]:
    """The environment that points the CLI (and the tasks) at node ``n``."""
    return {"DOCKER_HOST": f"unix://{RUN}/sw{n}/docker.sock", "DOCKER_CONFIG": str(RUN / "config")}


def script(*argv: str) -> None:
    """scripts/cluster.sh with ``argv``; its error output shown when it fails."""
    done = subprocess.run(["bash", SCRIPT, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"cluster.sh {' '.join(argv)}: {done.stderr[-2000:]}"


def on(n: int, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("docker", *argv, env={**os.environ, **node(n)}, check=check)


def _unavailable() -> str:
    if os.environ.get("ENGINE_NAME"):
        return ""  # a matrix pass: said below
    if os.geteuid() != 0:
        return "a cluster needs root (network namespaces)"
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "a cluster needs ip and nsenter"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    if not (cache / "compose-tasks/engines/root/usr/sbin/dockerd").exists():
        return "a cluster needs the matrix's engine (bash scripts/engines.sh up)"
    return ""


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """Three nodes, started for this module and torn down after it."""
    if os.environ.get("ENGINE_NAME"):
        pytest.skip("the cluster tests run once, beside the machine's engine, not in the matrix")
    why = _unavailable()
    if why and os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the cluster cannot run: {why}")
    if why:
        pytest.skip(f"cluster test skipped: {why}")
    started = subprocess.run(["bash", SCRIPT, "up"], capture_output=True, text=True, check=False)
    if started.returncode:
        subprocess.run(["bash", SCRIPT, "down"], capture_output=True, check=False)
        pytest.fail(f"scripts/cluster.sh up failed: {started.stderr[-2000:]}")
    yield
    subprocess.run(["bash", SCRIPT, "down"], capture_output=True, check=False)


@pytest.fixture
def shop(cluster: None, tmp_path: Path) -> Iterator[Stack]:
    """Two built services, ``web`` (3 replicas) and ``api`` (2), with health checks."""
    stack = new_stack(tmp_path / "proj", prefix="cl")
    compose = f"name: {stack.name}\nservices:\n"
    for service, replicas in (("web", 3), ("api", 2)):
        compose += f"  {service}:\n    build: ./{service}\n"
        compose += f"    deploy:\n      replicas: {replicas}\n      endpoint_mode: dnsrr\n"
        compose += HEALTH
        stack.write(f"{service}/Dockerfile", DOCKERFILE)
        stack.write(f"{service}/site/health", "ok\n")
        stack.write(f"{service}/site/index.html", "v1\n")
    stack.write("compose.yaml", compose + "networks:\n  default:\n    attachable: true\n")
    stack.commit("two services")
    yield stack
    on(1, "rm", "-f", f"{stack.name}-probe", check=False)
    on(1, "stack", "rm", stack.name, check=False)
    # wait until every node let the stack's network go: a new stack may get its subnet, and a
    # node still holding the old one rejects tasks ("Pool overlaps with other one")
    for _ in range(120):
        held = [
            n
            for n in (1, 2, 3)
            if on(
                n, "network", "ls", "-q", "--filter", f"name={stack.name}_", check=False
            ).stdout.strip()
        ]
        if not held:
            break
        time.sleep(0.5)


ENV = {"INVOKE_STACK_ORCHESTRATOR": "swarm", "INVOKE_STACK_REGISTRY": REGISTRY, **node(1)}


def deploy(stack: Stack, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return invoke(stack.root, "deploy", "--timeout", "150", env=env)


def head(stack: Stack) -> str:
    return sh("git", "rev-parse", "HEAD", cwd=stack.root).stdout.strip()


def spec_image(stack: Stack, service: str) -> str:
    done = on(1, "service", "inspect", f"{stack.name}_{service}",
              "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}")  # fmt: skip
    return done.stdout.strip()


def placed(stack: Stack, service: str, tag: str = "") -> list[str]:
    """The nodes of the service's running tasks (``tag``: of those on that image tag only;
    right after a deploy an old task may still be on its way out)."""
    done = on(1, "service", "ps", f"{stack.name}_{service}", "--filter", "desired-state=running",
              "--no-trunc", "--format", "{{.Node}} {{.Image}} {{.CurrentState}}")  # fmt: skip
    return sorted(
        line.split()[0]
        for line in done.stdout.splitlines()
        if " Running " in line and (not tag or f":{tag}@" in line.split()[1] + "@")
    )


def history(stack: Stack, n: int = 1) -> list[tuple[str, str, str]]:
    done = invoke(stack.root, "history", "--json", env={**ENV, **node(n)})
    assert done.returncode == 0, done.stderr
    return [(e["action"], e["sha"][:7], e["result"]) for e in json.loads(done.stdout)]


def test_spread_rolling_update_and_a_failed_update_brings_every_service_back(
    shop: Stack,
) -> None:
    alone = {**ENV, "INVOKE_STACK_REGISTRY": ""}
    done = deploy(shop, alone)  # three nodes, no registry: nothing runs
    assert (done.returncode, done.stderr.strip().splitlines()) == (1, [
        "error: the swarm has 3 nodes: they pull images from a registry; set "
        "INVOKE_STACK_REGISTRY (setting registry; the deploy pushes the images there)"
    ])  # fmt: skip
    assert not on(
        1, "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={shop.name}"
    ).stdout.strip()
    done = deploy(shop)
    assert done.returncode == 0, done.stderr[-3000:]
    v1 = head(shop)
    assert f"docker push {REGISTRY}/{shop.name}-web:{v1[:12]}" in done.stderr
    assert "3/3 healthy on sw1 1, sw2 1, sw3 1" in done.stderr
    assert placed(shop, "web") == ["sw1", "sw2", "sw3"]
    assert len(set(placed(shop, "api"))) == 2
    assert "@sha256:" in spec_image(shop, "web")  # every node pulled the same digest
    catalog = sh("curl", "-fsS", f"http://{REGISTRY}/v2/_catalog").stdout
    assert f"{shop.name}-web" in catalog and f"{shop.name}-api" in catalog

    probe = (
        "while true; do for s in web api; do if wget -q -O - http://$s:8080/version >/dev/null"
        " 2>&1; then echo OK; else echo FAIL; fi; done; sleep 0.2; done"
    )
    on(1, "run", "-d", "--name", f"{shop.name}-probe", "--network", f"{shop.name}_default",
       "busybox:1.36", "sh", "-c", probe)  # fmt: skip
    time.sleep(3)
    shop.write("web/site/index.html", "v2\n")
    shop.write("api/site/index.html", "v2\n")
    v2 = shop.commit("v2")
    done = deploy(shop)
    assert done.returncode == 0, done.stderr[-3000:]
    assert spec_image(shop, "web").startswith(f"{REGISTRY}/{shop.name}-web:{v2[:12]}@")

    (shop.root / "api/site/health").unlink()  # the api of v3 never gets healthy
    shop.write("web/site/index.html", "v3\n")
    shop.commit("v3: api broken")
    done = deploy(shop)
    assert done.returncode == 1
    assert f"rolled back to :{v2[:12]}" in done.stderr.splitlines()[-1]
    for service in ("web", "api"):  # web updated fine, and went back too
        assert spec_image(shop, service).startswith(f"{REGISTRY}/{shop.name}-{service}:{v2[:12]}@")
    time.sleep(2)
    log = on(1, "logs", f"{shop.name}-probe").stdout.split()
    print(f"probe: {log.count('OK')} requests served, {log.count('FAIL')} failed")
    assert log.count("FAIL") == 0 and log.count("OK") > 100
    assert history(shop) == [
        ("deploy", v1[:7], "ok"),
        ("deploy", v2[:7], "ok"),
        ("deploy", head(shop)[:7], "failed"),
        ("rollback", v2[:7], "ok"),
    ]


def test_a_node_lost_during_a_deploy(shop: Stack) -> None:
    done = deploy(shop)
    assert done.returncode == 0, done.stderr[-3000:]
    shop.write("web/site/index.html", "v2\n")
    v2 = shop.commit("v2")
    running = subprocess.Popen(
        ["invoke", "-r", str(ROOT), "deploy", "--timeout", "150"],
        cwd=shop.root,
        env={**os.environ, "XDG_CACHE_HOME": str(shop.root.parent / "xdg-cache"), **ENV},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert running.stderr is not None
    lines = []
    for line in running.stderr:
        lines.append(line)
        if "docker stack deploy" in line:
            break
    script("kill", "3")
    lines += running.stderr.readlines()
    code = running.wait()
    err = "".join(lines)
    print("deploy with node 3 lost, its last lines:", *err.splitlines()[-8:], sep="\n")
    try:
        assert code == 0, err[-3000:]
        assert "node sw3 down" in err
        # every replica on the new image, on the nodes left (a start-first update may still
        # be replacing one: briefly one more), wherever Swarm placed them: its spread is its
        # own (under load it once left all three on sw1)
        nodes = placed(shop, "web", v2[:12])
        assert len(nodes) >= 3 and set(nodes) <= {"sw1", "sw2"}, nodes
        assert spec_image(shop, "web").startswith(f"{REGISTRY}/{shop.name}-web:{v2[:12]}@")
        # lock and history live in the swarm's raft store: any manager has them
        assert history(shop, 2) == history(shop, 1)
        assert history(shop)[-1] == ("deploy", v2[:7], "ok")
        lock = f"name=compose-tasks-lock-{shop.name}"
        assert not on(1, "config", "ls", "-q", "--filter", lock).stdout.strip()  # released
        # the leader lost too (node 3 back first): the two others elect one and keep the state
        kept = history(shop)
        script("up")
        script("kill", "1")
        for _ in range(60):
            asked = invoke(shop.root, "history", "--json", env={**ENV, **node(2)})
            if asked.returncode == 0:
                break
            time.sleep(0.5)
        assert history(shop, 2) == kept
    finally:
        subprocess.run(["bash", SCRIPT, "up"], capture_output=True, check=False)
