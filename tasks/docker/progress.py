"""Counting build steps from compose's ``--progress=json`` output (BuildKit vertex JSON)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# "[backend 3/6] RUN ...", "[frontend builder 2/4] COPY ...", "[app internal] load ...": compose
# prefixes the service, except on the bake path when it builds one target ("[3/6] RUN ...").
_VERTEX = re.compile(r"^\[(?P<inside>[^\]]*)\] ?(?P<command>.*)$", re.DOTALL)
_INDEX = re.compile(r"^\d+/\d+$")
CANCELED = "context canceled"
CACHE_IMPORT = "importing cache manifest"
OUTPUT_LINES = 5  # of a failed step's output, shown with its error


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    # BuildKit prints nanoseconds; datetime takes microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    return datetime.fromisoformat(value)


@dataclass
class Step:
    """One Dockerfile instruction as BuildKit ran it."""

    service: str
    label: str  # "[2/5] RUN ..." or "[builder 2/5] RUN ..."
    cached: bool = False
    started: datetime | None = None
    completed: datetime | None = None
    error: str = ""

    @property
    def seconds(self) -> float:
        if self.started and self.completed:
            return max(0.0, (self.completed - self.started).total_seconds())
        return 0.0


@dataclass
class ServiceStats:
    """Step counts of one service's build (its extra stage targets included)."""

    vertices: list[Step] = field(default_factory=list)  # as BuildKit reported them
    started: datetime | None = None
    completed: datetime | None = None
    built: bool = False
    error: str = ""
    output: tuple[str, ...] = ()  # the last lines the failed step printed
    layers: dict[str, int] = field(default_factory=dict)  # layer digest -> bytes downloaded

    @property
    def pulled(self) -> int:
        """Bytes of layers BuildKit downloaded for this service (images and cache imports)."""
        return sum(self.layers.values())

    @property
    def steps(self) -> list[Step]:
        """One step per instruction: BuildKit reports a step shared by several targets of one
        service once per target; it counts as cached only when no target ran it. A vertex that
        never finished (merged into another) does not count."""
        merged: dict[str, Step] = {}
        for vertex in self.vertices:
            if not (vertex.completed or vertex.cached or vertex.error):
                continue
            step = merged.get(vertex.label)
            if step is None:
                merged[vertex.label] = replace(vertex)
                continue
            step.cached = step.cached and vertex.cached
            step.error = step.error or vertex.error
            if not vertex.cached and vertex.completed:
                step.started, step.completed = vertex.started, vertex.completed
        return list(merged.values())

    @property
    def total(self) -> int:
        return len(self.steps)

    @property
    def cached(self) -> int:
        return sum(step.cached for step in self.steps)

    @property
    def rebuilt(self) -> int:
        return self.total - self.cached

    @property
    def first_rebuilt(self) -> str:
        """The first rebuilt step in build order (a step starts after every step it follows;
        bake announces a target's steps last first)."""
        rebuilt = [step for step in self.steps if not step.cached]
        if not rebuilt:
            return ""
        never = datetime.max.replace(tzinfo=UTC)
        return min(rebuilt, key=lambda step: step.started or never).label

    @property
    def seconds(self) -> float:
        if self.started and self.completed:
            return (self.completed - self.started).total_seconds()
        return 0.0


class BuildProgress:
    """Fed compose's output lines, it keeps per-service step stats and reports finished steps."""

    def __init__(
        self, aliases: Mapping[str, str] | None = None, targets: Sequence[str] = ()
    ) -> None:
        self.aliases = dict(aliases or {})  # extra build targets -> the service they serve
        # every compose service the build names (empty: take each vertex's prefix as its service)
        self.targets = frozenset(targets) | self.aliases.keys()
        self.services: dict[str, ServiceStats] = {}
        self._steps: dict[tuple[str, str], Step] = {}
        self._shown: set[tuple[str, str]] = set()
        self.messages: list[str] = []  # non-JSON lines and compose's own messages
        self.error = ""
        self._owners: dict[str, str] = {}  # vertex digest -> service
        self._output: dict[str, list[str]] = {}  # vertex digest -> its last lines of output

    def service(self, name: str) -> ServiceStats:
        return self.services.setdefault(name, ServiceStats())

    def feed(self, line: str) -> list[Step]:
        """Take one output line; return the steps that just finished."""
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if line.strip():
                self.messages.append(line)
            return []
        if not isinstance(data, dict):
            return []
        finished: list[Step] = []
        for vertex in data.get("vertexes") or []:
            step = self._vertex(vertex)
            if step is None or not (step.completed or step.cached) or step in finished:
                continue
            if (step.service, step.label) not in self._shown:  # once per instruction
                self._shown.add((step.service, step.label))
                finished.append(step)
        for status in data.get("statuses") or []:
            self._status(status)
        for log in data.get("logs") or []:
            self._log(log)
        self._compose_message(data)
        return finished

    def _log(self, log: Mapping[str, Any]) -> None:
        """A step's output (base64), its last ``OUTPUT_LINES`` kept for when it fails."""
        try:
            text = base64.b64decode(str(log.get("data") or ""), validate=True).decode(
                errors="replace"
            )
        except ValueError:
            return
        kept = self._output.setdefault(str(log.get("vertex") or ""), [])
        kept += [line.rstrip() for line in text.splitlines() if line.strip()]
        del kept[:-OUTPUT_LINES]

    def _status(self, status: Mapping[str, Any]) -> None:
        """A layer download (``sha256:<layer>`` with its total size) counts for its service."""
        layer = str(status.get("id") or "")
        service = self._owners.get(str(status.get("vertex") or ""))
        total = status.get("total")
        if service is None or not layer.startswith("sha256:") or not isinstance(total, int):
            return
        layers = self.service(service).layers
        layers[layer] = max(layers.get(layer, 0), total)

    def _compose_message(self, data: dict[str, Any]) -> None:
        if data.get("status") == "Built" and data.get("id"):
            self.service(str(data["id"])).built = True
        if data.get("error") is True:
            self.error = str(data.get("message", "build failed"))
        elif data.get("level") in ("warning", "error") and data.get("msg"):
            self.messages.append(f"{data['level']}: {data['msg']}")

    def _owner(self, name: str) -> tuple[str, list[str], str] | None:
        """A vertex name's service, the rest of its bracket (stage, ``k/n``) and command."""
        found = _VERTEX.match(name)
        if found is None:
            return None
        words = found["inside"].split()
        if words and (not self.targets or words[0] in self.targets):
            return words[0], words[1:], found["command"]
        if len(self.targets) == 1:  # bake does not prefix the steps of a single target
            return next(iter(self.targets)), words, found["command"]
        return None

    def _vertex(self, vertex: dict[str, Any]) -> Step | None:
        name = str(vertex.get("name", ""))
        owner = self._owner(name)
        if owner is None:
            return None
        target, inner, command = owner
        service = self.aliases.get(target, target)
        self._owners[str(vertex.get("digest", name))] = service
        stats = self.service(service)
        started, completed = _time(vertex.get("started")), _time(vertex.get("completed"))
        if started and (stats.started is None or started < stats.started):
            stats.started = started
        if completed and (stats.completed is None or completed > stats.completed):
            stats.completed = completed
        error = str(vertex.get("error") or "")
        if error and CACHE_IMPORT in name:
            # A cache source that cannot be read: BuildKit logs it and builds on without it.
            warning = f"warning: {name}: {error}"
            if warning not in self.messages:
                self.messages.append(warning)
        elif error and CANCELED not in error and not stats.error:
            stats.error = f"{name}: {error}"
            stats.output = tuple(self._output.get(str(vertex.get("digest", name)), ()))
        if not inner or not _INDEX.match(inner[-1]) or command.startswith("FROM "):
            return None
        key = (service, str(vertex.get("digest", name)))
        step = self._steps.get(key)
        if step is None:
            label = f"[{' '.join(inner)}] {command}"
            step = Step(service, label)
            self._steps[key] = step
            stats.vertices.append(step)
        was_done = bool(step.completed or step.cached)
        # One service's targets share vertices: a step that already ran in one target stays
        # rebuilt when another target reports the same vertex as cached.
        ran = bool(step.completed) and not step.cached
        step.cached = step.cached or (bool(vertex.get("cached")) and not ran)
        step.started = step.started or started
        step.completed = completed or step.completed
        step.error = error or step.error
        return None if was_done else step

    def adopt(self, other: BuildProgress, services: Sequence[str]) -> None:
        """Take these services' stats (and the error and messages) from a later build."""
        for name in services:
            self.services[name] = other.service(name)
        self.error = other.error or self.error
        self.messages += other.messages

    def running(self) -> list[Step]:
        """Steps that started and have not finished yet."""
        return [
            step
            for stats in self.services.values()
            for step in stats.vertices
            if step.started and not step.completed and not step.cached and not step.error
        ]

    def failed_services(self) -> list[str]:
        """Services whose build reported an error of its own (not a cancellation)."""
        return [name for name, stats in self.services.items() if stats.error]
