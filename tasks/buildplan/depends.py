"""Services built on other services of the project, and the order they build in.

A service is built on another when its build names that service's result: an
``additional_contexts`` entry ``service:<name>`` (compose builds that one first and hands its
image over), or an image ref of another service's image in a ``FROM``, ``COPY --from`` or
``RUN --mount=from=`` (ARGs expanded with their defaults and the build's args). Pure: the plan
digests each service after those it is built on (a change there changes it), builds them in
this order, and names the one that changed as the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from compose_tasks.docker.refs import short_name, split_ref
from compose_tasks.dockerfile.instructions import Dockerfile, stage_refs
from compose_tasks.dockerfile.steps import expand, global_args
from compose_tasks.errors import UserError

SERVICE_PREFIX = "service:"


@dataclass(frozen=True)
class Need:
    """One service another is built on, and how its build names it."""

    service: str  # the service built first
    name: str  # the named context, or the image ref as the Dockerfile names it (expanded)
    image: bool  # an image ref, which compose does not order; else a ``service:`` context


def repo_key(ref: str) -> str:
    """An image ref's repository as the engine lists it: no tag, digest or Docker Hub prefix."""
    return short_name(split_ref(ref)[0]).lower()


def context_name(ref: str) -> str:
    """The named context that replaces an image ref in a build: the frontend looks a ``FROM``
    or ``--from`` image up by its short name, ``:latest`` left out."""
    return short_name(ref).removesuffix(":latest")


def image_refs(dockerfile: Dockerfile, args: Mapping[str, str]) -> list[str]:
    """Every image a Dockerfile's stages read (bases, ``COPY --from``, mounts), ARGs
    expanded: stage names, stage indexes and ``scratch`` left out."""
    meta = global_args(dockerfile, args)
    stages = dockerfile.stages
    names = {stage.name.lower() for stage in stages if stage.name}
    names |= {str(stage.index) for stage in stages}
    found: list[str] = []
    for stage in stages:
        for ref in stage_refs(dockerfile, stage):
            ref = expand(ref, meta)
            if ref and ref.lower() not in names and ref != "scratch":
                found.append(ref)
    return list(dict.fromkeys(found))


def needs_of(
    name: str,
    build: Mapping[str, object],
    refs: Iterable[str],
    owners: Mapping[str, str],
) -> tuple[Need, ...]:
    """What service ``name`` is built on: its ``service:`` contexts, then the images of other
    services (``owners``: repository -> service) among ``refs`` (``image_refs``), in order."""
    contexts = dict(build.get("additional_contexts") or {})  # type: ignore[call-overload]
    found: list[Need] = []
    for key, value in contexts.items():
        text = str(value)
        if text.startswith(SERVICE_PREFIX):
            found.append(Need(text[len(SERVICE_PREFIX) :], str(key), False))
    for ref in refs:
        owner = owners.get(repo_key(ref))
        if ref in contexts or owner is None or owner == name:
            continue  # a named context of that name replaces the image
        found.append(Need(owner, ref, True))
    return tuple(dict.fromkeys(found))


def closure(wanted: Sequence[str], needs: Mapping[str, Sequence[Need]]) -> list[str]:
    """``wanted`` and every service they are built on, directly or not."""
    found = list(wanted)
    for name in found:
        found += [n.service for n in needs.get(name, ()) if n.service not in found]
    return found


def order(names: Sequence[str], needs: Mapping[str, Sequence[Need]]) -> list[str]:
    """``names`` with every service after those it is built on (otherwise as given); a cycle
    is a UserError naming it."""
    placed: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in placed:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise UserError(f"services build on each other in a cycle: {' -> '.join(cycle)}")
        visiting.append(name)
        for need in needs.get(name, ()):
            if need.service in names:
                visit(need.service)
        visiting.pop()
        placed.append(name)

    for name in names:
        visit(name)
    return placed


def waves(names: Sequence[str], needs: Mapping[str, Sequence[Need]]) -> list[list[str]]:
    """``names`` (in ``order``) in consecutive builds, a service after the images it is built on
    (``Need.image``: compose orders ``service:`` contexts itself)."""
    level: dict[str, int] = {}
    for name in names:
        level[name] = max(
            [0, *(level[n.service] + n.image for n in needs.get(name, ()) if n.service in level)]
        )
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in names:
        out[level[name]].append(name)
    return out
