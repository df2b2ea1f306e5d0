"""An engine reached over ``ssh://``: compose, the docker CLI and the SDK all go through ssh.

An sshd of the test's own on a free loopback port (Debian's openssh-server; ``.ci/run`` installs
it) lets in one key; ``ssh`` on the tasks' PATH is a wrapper that gives the client that key and
no known-hosts file, so nothing in the user's ``~/.ssh`` is read or written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    BASE_IMAGE,
    COMMIT_VARS,
    ROOT,
    Stack,
    image_id,
    invoke,
    remove_images,
    services,
    sh,
    user_dirs,
)

pytestmark = pytest.mark.engine

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def ssh_host(sshd: Sshd) -> dict[str, str]:
    """The environment that points the tasks at this engine through an sshd on loopback."""
    return sshd.env


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """An sshd on loopback in front of this engine, running."""
    if not SSHD.is_file() or shutil.which("ssh") is None or os.geteuid() != 0:
        message = "needs root, ssh and sshd (apt-get install openssh-server; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    folder = tmp_path / "ssh"
    folder.mkdir()
    for name in ("host", "client"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name))
    shutil.copy(folder / "client.pub", folder / "authorized_keys")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    (folder / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {folder / 'host'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
        # SHLVL=1: bash, started by sshd, reads the machine's ~/.bashrc only as a top-level
        # shell; whatever that runs (a pyenv rehash) is killed with the connection and may
        # leave a lock every later login waits on
        f"StrictModes no\nSetEnv DOCKER_HOST={engine} SHLVL=1\n"
    )
    (folder / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {folder / 'client'}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  BatchMode yes\n"
        "  LogLevel ERROR\n"
    )
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    client = shutil.which("ssh")
    wrapper.write_text(f'#!/bin/sh\nexec {client} -F {folder / "ssh_config"} "$@"\n')
    wrapper.chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    env = {
        "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    server = Sshd(folder, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Sshd:
    """The test's sshd: started, and stopped with every connection it serves (a dropped
    network, as the client sees it)."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.folder / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "sshd.log").open("a"),
        )
        version = ["docker", "version", "--format", "{{.Server.Version}}"]
        done = sh(*version, env={**os.environ, **self.env}, check=False)
        for _ in range(50):
            if done.returncode == 0:
                break
            time.sleep(0.2)
            done = sh(*version, env={**os.environ, **self.env}, check=False)
        assert done.returncode == 0, done.stderr + (self.folder / "sshd.log").read_text()

    def stop(self) -> None:
        """SIGKILL the listener and every process under it (each connection's)."""
        if self.process is None:
            return
        for pid in [*descendants(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None


def descendants(pid: int) -> list[int]:
    """Every process under ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.alone  # its clear-caches prunes the engine's builder cache
def test_every_task_works_on_an_engine_reached_over_ssh(
    stack: Stack, ssh_host: dict[str, str]
) -> None:
    try:
        first = invoke(stack.root, "build", "--json", env=ssh_host)
        assert first.returncode == 0, first.stderr[-3000:]
        same = invoke(stack.root, "build", "--json", env=ssh_host)
        assert same.returncode == 0, same.stderr[-3000:]
        row = services(json.loads(same.stdout))["app"]
        assert (row["reused"], row["steps"]) == (row["image"], 0)  # up to date: not built
        again = invoke(stack.root, "build", "--json", "--rebuild", env=ssh_host)
        assert again.returncode == 0, again.stderr[-3000:]
        row = services(json.loads(again.stdout))["app"]
        assert row["cached"] == row["steps"] > 0  # the cache works through ssh too
        assert image_id(f"{stack.image('app')}:latest") is not None  # built on this engine
        doctor = invoke(stack.root, "doctor", "--json", env=ssh_host)
        assert doctor.stdout, doctor.stderr[-3000:]
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["engine"]["status"] == "ok", checks["engine"]  # the SDK reached it
        history = invoke(stack.root, "history", "--json", env=ssh_host)
        assert (history.returncode, json.loads(history.stdout or "null")) == (0, [])
        clear = invoke(stack.root, "clear-caches", "--yes", env=ssh_host)
        assert clear.returncode == 0, clear.stderr[-3000:]
        assert image_id(f"{stack.image('app')}:latest") is None
    finally:
        remove_images(stack.name)


def test_an_ssh_connection_dropped_mid_deploy_is_one_line_and_the_next_deploy_converges(
    stack: Stack, sshd: Sshd
) -> None:
    check = '["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]'
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  web:\n    build: ./web\n"
        f"    healthcheck:\n      test: {check}\n      interval: 1s\n      retries: 60\n",
    )
    stack.write("web/Dockerfile", f"FROM {BASE_IMAGE}\nCOPY site/ /www/\n"
                'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')  # fmt: skip
    stack.write("web/site/health", "ok\n")
    stack.commit("web")
    env = {**os.environ, **user_dirs(stack.root), **sshd.env}
    env = {k: v for k, v in env.items() if k not in COMMIT_VARS}
    try:
        first = invoke(stack.root, "deploy", "--timeout", "60", env=sshd.env)
        assert first.returncode == 0, first.stderr[-3000:]
        (stack.root / "web/site/health").unlink()
        stack.write("web/site/page", "never healthy\n")
        stack.commit("never healthy")
        runner = subprocess.Popen(
            ["invoke", "-r", str(ROOT), "deploy", "--timeout", "120"], cwd=stack.root, env=env,
            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        said = []
        assert runner.stderr is not None
        for line in runner.stderr:
            said.append(line)
            if "not in rotation until healthy" in line:
                break
        time.sleep(2)  # waiting for health, over ssh
        sshd.stop()  # the network drops
        rest = runner.communicate(timeout=180)[1]
        err = "".join(said) + rest
        assert runner.returncode == 1
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        assert last.startswith(
            f"error: deploy interrupted: the engine ({sshd.env['DOCKER_HOST']}) went away"
        ), err[-3000:]
        sshd.start()  # the network is back
        stack.write("web/site/health", "ok\n")
        fixed = stack.commit("fixed")
        done = invoke(stack.root, "deploy", "--timeout", "90", env=sshd.env)
        assert done.returncode == 0, done.stderr[-3000:]
        web = f"label=com.docker.compose.project={stack.name}"
        shown = sh("docker", "ps", "-a", "--filter", web, "--format", "{{.Image}}").stdout.split()
        assert shown == [f"{stack.image('web')}:{fixed[:12]}"]
    finally:
        remove_images(stack.name)
