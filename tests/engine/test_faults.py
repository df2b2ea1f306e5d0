"""Faults: a registry that accepts the connection and never answers; the engine restarted
under a build and under a deploy."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import (
    BASE_IMAGE,
    COMMIT_VARS,
    ROOT,
    Stack,
    build_json,
    image_id,
    invoke,
    require_registry,
    services,
    sh,
    user_dirs,
)

pytestmark = pytest.mark.engine

# Every wait on the silent registry is the engine's (about 25 s a lookup or push) or the
# tool's (10 s): a build that still runs after this has hung.
BOUND = 300


@contextmanager
def silent_registry() -> Iterator[tuple[str, list[socket.socket]]]:
    """A listener on loopback that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}", held
    finally:
        server.close()
        for conn in held:
            conn.close()


def test_a_registry_that_never_answers_is_one_line_and_leaves_the_builder_working(
    stack: Stack, tmp_path: Path
) -> None:
    """Its cache sources are dropped (BuildKit would wait on them without a limit, and keep the
    engine's builder busy for every later build); the push gives up and says so in one line;
    the images are built and tagged here; the next build on this engine works."""
    with silent_registry() as (address, held):
        env = {"INVOKE_STACK_REGISTRY": f"{address}/team"}
        done = invoke(stack.root, "build", "--push", env=env, timeout=BOUND)
        assert held, "the registry was never asked"
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip() == (
        "error: push failed: the images are built and tagged here, not in the registry"
    )
    assert "dropped: its registry did not answer in time" in done.stdout
    assert f"push failed: docker push {address}/team/{stack.name}-app:" in done.stdout
    # built and tagged on this engine, and its builder still builds: a change, no registry
    stack.write("app/src/main.txt", "app v2\n")
    stack.commit("after the silent registry")
    again = services(build_json(stack.root))["app"]
    assert again["cached"] >= 3 and again["cached"] < again["steps"], again


def restart_engine() -> None:
    """Stop this pass's engine (SIGTERM to its dockerd) and start it again, as an operator's
    restart or an upgrade would; its data, namespace and registry stay."""
    name = os.environ.get("ENGINE_NAME", "")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "engines.sh"), "restart", name],
                          capture_output=True, text=True, check=False, timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture
def restartable() -> None:
    if not os.environ.get("ENGINE_NAME"):
        pytest.skip("restarts the engine: runs on the matrix engines (scripts/engines.sh restart)")
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("restarting a matrix engine needs root and nsenter")


def until(project: Path, marker: str, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``invoke <args>`` started, and its error output read until a line shows ``marker``."""
    env = {k: v for k, v in os.environ.items() if k not in COMMIT_VARS}
    runner = subprocess.Popen(
        ["invoke", "-r", str(ROOT), *args], cwd=project, env={**env, **user_dirs(project)},
        text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    said: list[str] = []
    assert runner.stderr is not None
    for line in runner.stderr:
        said.append(line)
        if marker in line:
            return runner, said
    runner.wait()
    pytest.fail(f"{marker!r} never came: {''.join(said)[-3000:]}")


GONE = f"the engine ({os.environ.get('DOCKER_HOST', '')}) went away while it ran"


def last_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1]


def finish(runner: subprocess.Popen[str], said: list[str]) -> str:
    """The rest of a run's error output, once it ended (in bounded time)."""
    rest = runner.communicate(timeout=BOUND)[1]
    return "".join(said) + rest


@pytest.mark.alone
@pytest.mark.usefixtures("restartable")
def test_an_engine_restart_under_a_build_is_one_line_and_the_next_build_works(
    stack: Stack,
) -> None:
    stack.write("app/Dockerfile", f"FROM {BASE_IMAGE}\nARG GIT_COMMIT_HASH\nRUN echo v1 > /x\n")
    stack.commit("v1")
    assert invoke(stack.root, "build").returncode == 0
    latest = f"{stack.image('app')}:latest"
    before = image_id(latest)
    stack.write(
        "app/Dockerfile", f"FROM {BASE_IMAGE}\nARG GIT_COMMIT_HASH\nRUN sleep 40 && echo v2 > /x\n"
    )
    stack.commit("a slow step")
    runner, said = until(stack.root, "RUN sleep 40", "build")
    restart_engine()
    err = finish(runner, said)
    assert runner.returncode == 1
    assert "Traceback" not in err
    assert last_line(err).startswith(f"error: build interrupted: {GONE}"), err[-2000:]
    assert image_id(latest) == before  # :latest untouched
    again = invoke(stack.root, "build")
    assert again.returncode == 0, again.stderr[-2000:]
    assert image_id(latest) not in (None, before)


@pytest.mark.alone
@pytest.mark.usefixtures("restartable")
def test_an_engine_restart_under_a_deploy_is_one_line_and_the_next_deploy_converges(
    stack: Stack,
) -> None:
    """The old version comes back with the engine (its restart policy); the new one, started
    beside it and never in rotation, is removed by the next deploy, which takes the lock over."""
    check = '["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]'
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n  web:\n    build: ./web\n    restart: unless-stopped\n"
        f"    healthcheck:\n      test: {check}\n      interval: 1s\n      retries: 60\n",
    )
    stack.write("web/Dockerfile", f"FROM {BASE_IMAGE}\nCOPY site/ /www/\nARG GIT_COMMIT_HASH\n"
                "RUN echo $GIT_COMMIT_HASH > /www/version\n"
                'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]\n')  # fmt: skip
    stack.write("web/site/health", "ok\n")
    good = stack.commit("web")
    assert invoke(stack.root, "deploy", "--timeout", "60").returncode == 0
    (stack.root / "web/site/health").unlink()
    stack.write("web/site/page", "never healthy\n")
    stuck = stack.commit("never healthy")
    runner, said = until(stack.root, "not in rotation until healthy", "deploy", "--timeout", "120")
    restart_engine()
    err = finish(runner, said)
    assert runner.returncode == 1
    assert "Traceback" not in err
    assert last_line(err).startswith(f"error: deploy interrupted: {GONE}"), err[-2000:]
    web = f"label=com.docker.compose.project={stack.name}"
    shown = sh("docker", "ps", "--filter", web, "--format", "{{.Image}}").stdout.split()
    assert f"{stack.image('web')}:{good[:12]}" in shown  # back with the engine
    stack.write("web/site/health", "ok\n")
    fixed = stack.commit("fixed")
    done = invoke(stack.root, "deploy", "--timeout", "90")
    assert done.returncode == 0, done.stderr[-3000:]
    shown = sh("docker", "ps", "-a", "--filter", web, "--format", "{{.Image}}").stdout.split()
    assert shown == [f"{stack.image('web')}:{fixed[:12]}"]
    history = invoke(stack.root, "history", "--json")
    entries = [(e["sha"], e["result"]) for e in json.loads(history.stdout)]
    assert (stuck[:12], "interrupted") in entries and entries[-1] == (fixed[:12], "ok")


@pytest.fixture
def small_engine() -> Iterator[dict[str, str]]:
    """An engine whose data root is a 300 MB tmpfs (scripts/engines.sh up small), started for
    the test and stopped after it; the environment that points the tasks at it."""
    if os.environ.get("ENGINE_NAME"):
        pytest.skip("the disk-full test starts its own engine once, from the machine's pass")
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        message = "an engine on a small data root needs root and nsenter"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    script = str(ROOT / "scripts" / "engines.sh")
    up = subprocess.run(["bash", script, "up", "small"], capture_output=True, text=True,
                        check=False, timeout=300)  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        env = subprocess.run(["bash", script, "env", "small"], capture_output=True, text=True,
                             check=True).stdout.split()  # fmt: skip
        yield dict(line.split("=", 1) for line in env if "=" in line)
    finally:
        subprocess.run(["bash", script, "down", "small"], capture_output=True, check=False)


def test_a_disk_that_fills_up_under_a_build_is_one_line_and_keeps_the_cache(
    stack: Stack, small_engine: dict[str, str]
) -> None:
    env = small_engine
    stack.write("app/Dockerfile", f"FROM {BASE_IMAGE}\nRUN echo v1 > /x\n")
    stack.commit("v1")
    first = invoke(stack.root, "build", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    latest = f"{stack.image('app')}:latest"
    on_small = {**os.environ, **small_engine}
    ids = ["docker", "image", "inspect", "-f", "{{.Id}}", latest]
    before = sh(*ids, env=on_small).stdout.strip()
    fill = "RUN dd if=/dev/zero of=/big bs=1M count=400\n"  # more than the disk has
    stack.write("app/Dockerfile", f"FROM {BASE_IMAGE}\nRUN echo v1 > /x\n{fill}")
    stack.commit("fills the disk")
    full = invoke(stack.root, "build", env=env, timeout=BOUND)
    assert full.returncode == 1
    assert "Traceback" not in full.stdout + full.stderr
    assert last_line(full.stderr).startswith(
        "error: build failed (app): the engine's disk is full (no space left on device)"
    ), full.stderr[-2000:]
    assert "| dd: error writing '/big': No space left on device" in full.stdout
    assert sh(*ids, env=on_small).stdout.strip() == before  # :latest untouched
    stack.write("app/Dockerfile", f"FROM {BASE_IMAGE}\nRUN echo v1 > /x\n")
    stack.commit("back to v1")
    again = services(build_json(stack.root, "--rebuild", env=env))["app"]
    assert again["steps"] >= 1 and again["cached"] == again["steps"]  # the cache is intact


def blocking_docker(folder: Path, words: str, after: int) -> dict[str, str]:
    """A ``docker`` first on PATH that runs the real one, except on the ``after``-th call (from
    0) whose arguments hold ``words``: that one writes ``folder/blocked`` and waits, to be
    killed there with the run's process group (a CI job cancelled in that phase)."""
    real, script = shutil.which("docker"), folder / "docker"
    folder.mkdir(exist_ok=True)
    script.write_text(
        f'#!/bin/sh\ncase " $* " in *" {words} "*)\n'
        f"  n=$(cat {folder}/count 2>/dev/null || echo 0); echo $((n + 1)) > {folder}/count\n"
        f'  if [ "$n" -ge {after} ]; then echo "$*" > {folder}/blocked; exec sleep 600; fi ;;\n'
        f'esac\nexec {real} "$@"\n'
    )
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


class HeldEngine:
    """A unix socket in front of the engine's: each connection is passed through byte for byte,
    except the first whose request line holds ``words``: that one is held unanswered
    (``folder/blocked`` written), for the run to be killed there (a CI job cancelled while its
    requests are in flight)."""

    def __init__(self, folder: Path, words: str) -> None:
        folder.mkdir(exist_ok=True)
        self.folder, self.words, self.path = folder, words.encode(), folder / "engine.sock"
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        assert host.startswith("unix://"), f"needs an engine on a unix socket, not {host}"
        self.engine = host.removeprefix("unix://")
        self.held: list[socket.socket] = []
        self.lock = threading.Lock()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.path))
        self.server.listen(64)
        threading.Thread(target=self._serve, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": f"unix://{self.path}"}

    def close(self) -> None:
        self.server.close()
        for held in self.held:
            held.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._pass, args=(client,), daemon=True).start()

    def _pass(self, client: socket.socket) -> None:
        first = client.recv(65536)
        line = first.split(b"\r\n", 1)[0]
        with self.lock:
            hold = self.words in line and not self.held
            if hold:
                self.held.append(client)
                (self.folder / "blocked").write_bytes(line)
        if hold:
            return
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(self.engine)
        engine.sendall(first)
        threading.Thread(target=_pipe, args=(engine, client), daemon=True).start()
        _pipe(client, engine)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    """Copy ``source`` to ``target`` until it ends, then end ``target``'s side too."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def registry_digest(ref: str) -> str:
    """The digest the registry holds for ``ref`` (host/repo:tag), '' when it holds none."""
    host, rest = ref.split("/", 1)
    repo, tag = rest.rsplit(":", 1)
    accept = ", ".join([
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
    ])  # fmt: skip
    done = sh("curl", "-fsSI", "-H", f"Accept: {accept}",
              f"http://{host}/v2/{repo}/manifests/{tag}", check=False)  # fmt: skip
    found = re.search(r"(?im)^docker-content-digest:\s*(\S+)", done.stdout)
    return found[1] if done.returncode == 0 and found else ""


@pytest.mark.parametrize(
    ("phase", "words", "after"),
    [
        ("planning", "compose", 0),  # its first compose call: resolving the project
        ("tagging", "/tag?", 0),  # the build done, :latest about to move: a tag request held
        ("pushing", "push", 1),  # one image pushed, the next one not
    ],
)
def test_a_build_killed_in_each_phase_converges_on_the_next(
    stack: Stack, tmp_path: Path, phase: str, words: str, after: int
) -> None:
    prefix = f"{require_registry()}/{stack.name}"
    env = {"INVOKE_STACK_REGISTRY": prefix}
    assert invoke(stack.root, "build", "--push", env=env).returncode == 0
    stack.write("app/src/main.txt", f"{phase} v2\n")
    head = stack.commit("v2")[:12]
    block = tmp_path / "bin"
    full = {k: v for k, v in os.environ.items() if k not in COMMIT_VARS}
    held = HeldEngine(block, words) if words.startswith("/") else None  # an API request
    full.update({**user_dirs(stack.root), **env})
    full.update(held.env() if held else blocking_docker(block, words, after))
    try:
        runner = subprocess.Popen(
            ["invoke", "-r", str(ROOT), "build", "--push"], cwd=stack.root, env=full,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + BOUND
        while not (block / "blocked").exists():
            assert runner.poll() is None, f"the build ended before {phase}"
            assert time.monotonic() < deadline, f"the build never reached {phase}"
            time.sleep(0.2)
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
    finally:
        if held:
            held.close()
    latest, built = (f"{prefix}/{stack.image('app')}:{tag}" for tag in ("latest", head))
    assert image_id(latest)  # never a half-made tag: the old or the new image
    done = invoke(stack.root, "build", "--push", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert image_id(latest) == image_id(built) is not None
    digests = [registry_digest(ref) for ref in (latest, built)]
    assert digests[0] == digests[1] != "", digests  # the registry converged too


def test_a_build_killed_in_a_step_keeps_latest_and_the_next_build_works(stack: Stack) -> None:
    stack.write("app/Dockerfile", f"FROM {BASE_IMAGE}\nRUN echo v1 > /x\n")
    stack.commit("v1")
    assert invoke(stack.root, "build").returncode == 0
    latest = f"{stack.image('app')}:latest"
    before = image_id(latest)
    # after the commit arg: the step runs on every run, never found in another run's cache
    slow = f"FROM {BASE_IMAGE}\nARG GIT_COMMIT_HASH\nRUN sleep 20 && echo v2 > /x\n"
    stack.write("app/Dockerfile", slow)
    stack.commit("a slow step")
    runner, _ = until(stack.root, "RUN sleep 20", "build")  # running for 15 s
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    assert image_id(latest) == before
    again = invoke(stack.root, "build", timeout=BOUND)
    assert again.returncode == 0, again.stderr[-2000:]
    assert image_id(latest) not in (None, before)
