"""Faults on the network: a registry that accepts the connection and never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import Stack, build_json, invoke, services

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
