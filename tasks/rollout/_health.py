"""Waiting for containers to be well (healthy, running without a health check, or a one-shot
that finished its job), with progress to ``log``; and saying why those that are not aren't."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from compose_tasks.docker.refs import COMPOSE_SERVICE
from compose_tasks.docker.sdk import ContainerInfo, Sdk
from compose_tasks.errors import NotFound

POLL = 0.5
DONE = "done (exited 0)"  # a one-shot service (a migration) that did its job
WELL = ("healthy", "running", DONE)
Log = Callable[[str], None]
Look = Callable[[], Sequence[tuple[str, ContainerInfo]]]


def state_of(container: ContainerInfo) -> str:
    """A container's health, else its status; ``DONE`` for a finished one-shot."""
    return DONE if container.finished else container.health or container.status or "?"


def watch(look: Look, timeout: float, log: Log) -> tuple[bool, str]:
    """Poll ``look`` (each container with the name to show) until all are well, one is not
    (exited, dead, unhealthy), or ``timeout`` seconds pass. (ok, why)"""
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        states = {}
        for name, container in look():
            states[name] = state_of(container)
            if container.finished:
                continue
            if container.status in ("exited", "dead") or container.health == "unhealthy":
                code = f" (exit {container.exit_code})" if container.status == "exited" else ""
                return False, f"{name} is {states[name]}{code}"
        for name, status in states.items():
            if last.get(name) != status:
                log(f"  {name:<14} {status}")
        last = states
        if states and all(s in WELL for s in states.values()):
            return True, "all services healthy"
        if time.monotonic() > deadline:
            waiting = [n for n, s in states.items() if s not in WELL]
            return False, f"timed out after {timeout:.0f}s waiting for {', '.join(waiting)}"
        time.sleep(POLL)


def describe(api: Sdk, containers: Sequence[ContainerInfo], lines: int = 20) -> str:
    """Health-check output and the last log lines of each of ``containers`` that is not well."""
    out: list[str] = []
    for container in containers:
        if container.finished or (
            container.health in (None, "healthy") and container.status == "running"
        ):
            continue
        name = container.labels.get(COMPOSE_SERVICE, container.name)
        out.append(f"--- {name}: {container.health or container.status}")
        for probe in container.probes[-3:]:
            text = probe.output.strip() or "(no output)"
            out.append(f"health check exit {probe.exit_code}: {text[:300]}")
        try:
            logs = api.logs(container.id, lines).rstrip()
        except NotFound:
            logs = "(container gone)"
        out.append(f"last {lines} log lines:\n{logs or '(none)'}")
    return "\n".join(out)
