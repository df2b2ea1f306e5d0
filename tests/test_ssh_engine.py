"""An engine reached over ``ssh://``: compose, the docker CLI and the SDK all go through ssh.

An sshd of the test's own on a free loopback port (Debian's openssh-server; ``.ci/run`` installs
it) lets in one key; ``ssh`` on the tasks' PATH is a wrapper that gives the client that key and
no known-hosts file, so nothing in the user's ``~/.ssh`` is read or written.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, image_id, invoke, remove_images, services, sh

pytestmark = pytest.mark.engine

SSHD = Path("/usr/sbin/sshd")


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment that points the tasks at this engine through an sshd on loopback."""
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
        f"StrictModes no\nSetEnv DOCKER_HOST={engine}\n"
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
    server = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "sshd.log").open("w"),
    )
    env = {
        "DOCKER_HOST": f"ssh://root@127.0.0.1:{port}",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        version = ["docker", "version", "--format", "{{.Server.Version}}"]
        done = sh(*version, env={**os.environ, **env}, check=False)
        for _ in range(50):
            if done.returncode == 0:
                break
            time.sleep(0.2)
            done = sh(*version, env={**os.environ, **env}, check=False)
        assert done.returncode == 0, done.stderr + (folder / "sshd.log").read_text()
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


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
