"""Rolling a compose service to a new version beside the old one, so no request is lost.

Docker's DNS answers a service's name on a compose network with every container that joined the
network under that alias, healthy or not, from the moment it joins. So a service rolls like this:

1. ``compose up --no-start --no-recreate --no-deps --scale S=<old + wanted> S`` creates the new
   containers beside the old ones, not started.
2. Each new container leaves its networks and joins them again under its own name only: once
   started it reaches everything it needs, but nobody asking for the service reaches it.
3. It starts; the rollout waits for its health check (for it to run, if it has none).
4. Healthy: it joins under the service's aliases again and takes requests beside the old ones;
   then each old container leaves its networks and is stopped (its ``stop_grace_period``) and
   removed. Not healthy: the new containers are removed; the old ones never stopped serving.

What no rollout on plain Docker networks can avoid (read in moby's ``Endpoint.Delete``, seen on
Engine 20.10 and 28.5): a container leaving a network loses its address a few tens of
milliseconds before its DNS record, and no engine API takes a name out of DNS while the container
keeps its address (only Swarm's task shutdown does). A lookup in that window, or a request in
flight to the old container as it leaves, can fail; through a proxy that resolves per request and
never retries, at 25 requests a second, that was 1 of 1,789 requests over 8 rolled deploys,
against several per recreate (its 1.5 s gap).

A service with a fixed host port, a ``container_name``, a fixed address or a ``network_mode``
can't run twice: compose recreates it (``not_rollable`` says why). A rollout interrupted before
step 4 leaves containers that never served; the next deploy removes them (``unseen``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from compose_tasks.docker.refs import COMPOSE_PROJECT, COMPOSE_SERVICE
from compose_tasks.docker.runner import Runner, error_line
from compose_tasks.docker.sdk import ContainerInfo, Endpoint, Sdk
from compose_tasks.errors import EngineError, NotFound
from compose_tasks.rollout import _health as health

Log = Callable[[str], None]
CONFIG_HASH = "com.docker.compose.config-hash"
ONEOFF = "com.docker.compose.oneoff"
FIX = "it can't run twice: put a proxy in front of it, or deploy to Swarm"


def not_rollable(spec: Mapping[str, Any]) -> str:
    """Why a service (its resolved compose spec) can't run twice on one host, or ''."""
    if spec.get("container_name"):
        return f"container_name {spec['container_name']}"
    for port in spec.get("ports") or ():
        published = port.get("published") if isinstance(port, Mapping) else None
        if published:
            return f"it publishes host port {published}"
    if spec.get("network_mode"):
        return f"network_mode {spec['network_mode']}"
    if spec.get("mac_address"):
        return "a fixed mac_address"
    for name, net in (spec.get("networks") or {}).items():
        net = net or {}
        if net.get("ipv4_address") or net.get("ipv6_address") or net.get("mac_address"):
            return f"a fixed address on network {name}"
    return ""


def wanted(spec: Mapping[str, Any]) -> int:
    """How many containers the service runs (``scale`` or ``deploy.replicas``, default 1)."""
    replicas = spec.get("scale") or (spec.get("deploy") or {}).get("replicas")
    return int(replicas) if replicas is not None else 1


def hashes(runner: Runner, compose: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """Compose's config hash of every service, as it labels the containers it creates."""
    done = runner.run([*compose, "config", "--hash", "*"], env)
    found = {}
    for line in done.out.splitlines() if done.ok else ():
        name, _, digest = line.strip().partition(" ")
        if digest:
            found[name] = digest
    return found


def _serves(container: ContainerInfo) -> bool:
    """Whether a container answers to its service's name on any of its networks."""
    service = container.labels.get(COMPOSE_SERVICE, "")
    return any(service in place.aliases for place in container.networks.values())


def unseen(containers: Sequence[ContainerInfo], services: Mapping[str, Any]) -> list[ContainerInfo]:
    """Of the project's ``containers``, those an interrupted rollout left: of a rollable
    service, on networks, but under the service's name on none of them (they never took a
    request)."""
    found = []
    for container in containers:
        service = container.labels.get(COMPOSE_SERVICE, "")
        spec = services.get(service)
        if spec is None or not_rollable(spec) or container.labels.get(ONEOFF) == "True":
            continue
        if container.networks and not _serves(container):
            found.append(container)
    return found


@dataclass(frozen=True)
class Changes:
    """What a deploy changes: services that roll (each with its containers, in every state:
    compose counts them all when it scales) and services compose recreates (and why)."""

    roll: dict[str, list[ContainerInfo]]
    recreate: dict[str, str]


def changes(
    containers: Sequence[ContainerInfo], services: Mapping[str, Any], hashes: Mapping[str, str]
) -> Changes:
    """The running services whose ``containers`` (the project's) are not all on the config
    they should have."""
    by_service: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        if container.labels.get(ONEOFF) != "True":
            by_service.setdefault(container.labels.get(COMPOSE_SERVICE, ""), []).append(container)
    found = Changes({}, {})
    for name, spec in services.items():
        containers = by_service.get(name, [])
        if name not in hashes or not any(c.status == "running" for c in containers):
            continue
        if all(c.labels.get(CONFIG_HASH) == hashes[name] for c in containers):
            continue
        why = not_rollable(spec)
        if why:
            found.recreate[name] = why
        else:
            found.roll[name] = containers
    return found


@dataclass(frozen=True)
class Rolled:
    """What rolling one service did."""

    ok: bool
    detail: str
    diagnosis: str = ""  # health output and logs of the new containers that failed


def _rejoin(api: Sdk, container: ContainerInfo, places: Mapping[str, Endpoint]) -> None:
    for network, place in places.items():
        with contextlib.suppress(NotFound):
            api.leave(network, container.id)
        api.join(network, container.id, place)


@dataclass(frozen=True)
class Roll:
    """Where and how services roll: the engine, the compose command with the deploy's
    override and environment, the deadline (``time.monotonic``) and the progress log."""

    api: Sdk
    runner: Runner
    compose: Sequence[str]
    env: Mapping[str, str]
    deadline: float
    log: Log


def roll(
    how: Roll,
    service: str,
    spec: Mapping[str, Any],
    old: Sequence[ContainerInfo],
) -> Rolled:
    """Roll ``service`` from its ``old`` containers to new ones (see the module docstring)."""
    api, log = how.api, how.log
    count = len(old) + wanted(spec)
    argv = [*how.compose, "up", "--no-start", "--no-recreate", "--no-deps"]
    done = how.runner.run([*argv, "--scale", f"{service}={count}", service], how.env)
    if not done.ok:
        return Rolled(False, error_line(done.err) or f"compose up exited {done.code}")
    gone = {c.id for c in old}
    project = old[0].labels.get(COMPOSE_PROJECT, "")
    labels = {COMPOSE_PROJECT: project, COMPOSE_SERVICE: service}
    new = [c for c in api.containers(labels) if c.id not in gone]
    shown = {c.id: dict(c.networks) for c in new}
    log(f"  {service:<14} starting {len(new)} beside {len(old)} (not in rotation until healthy)")
    try:
        for container in new:
            own = (container.name.lstrip("/"),)
            hidden = {
                net: replace(place, aliases=own) for net, place in shown[container.id].items()
            }
            _rejoin(api, container, hidden)
            api.start(container.id)
        ok, why = True, "scaled to none"
        if new:
            ok, why = health.watch(
                lambda: [(c.name.lstrip("/"), api.container(c.id)) for c in new],
                max(how.deadline - time.monotonic(), 0),
                log,
            )
    except EngineError as exc:
        ok, why = False, str(exc)
    if not ok:
        diagnosis = health.describe(api, [_fresh(api, c) for c in new])
        for container in new:
            with contextlib.suppress(NotFound):
                api.remove_container(container.id)
        return Rolled(False, why, diagnosis)
    for container in new:
        _rejoin(api, container, shown[container.id])
    for container in old:
        for network in container.networks:
            with contextlib.suppress(NotFound):
                api.leave(network, container.id)
        with contextlib.suppress(NotFound):
            api.stop(container.id, container.stop_timeout)
            api.remove_container(container.id)
    log(f"  {service:<14} {len(new)} new in rotation, {len(old)} old stopped")
    return Rolled(True, f"{service} rolled")


def _fresh(api: Sdk, container: ContainerInfo) -> ContainerInfo:
    try:
        return api.container(container.id)
    except NotFound:
        return container
