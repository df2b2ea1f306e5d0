"""Counting build steps from compose's ``--progress=json`` output (BuildKit vertex JSON)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# "[backend 3/6] RUN ..." or "[frontend builder 2/4] COPY ..." (compose prefixes the service).
_STEP = re.compile(
    r"^\[(?P<service>\S+)(?: (?P<stage>[^\]]+?))? (?P<index>\d+)/(?P<count>\d+)\] "
    r"(?P<command>.+)$",
    re.DOTALL,
)
_SERVICE = re.compile(r"^\[(?P<service>[^\] ]+)[\] ]")
CANCELED = "context canceled"


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
    """Step counts of one service's build."""

    steps: list[Step] = field(default_factory=list)
    started: datetime | None = None
    completed: datetime | None = None
    built: bool = False
    error: str = ""

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
        return next((step.label for step in self.steps if not step.cached), "")

    @property
    def seconds(self) -> float:
        if self.started and self.completed:
            return (self.completed - self.started).total_seconds()
        return 0.0


class BuildProgress:
    """Fed compose's output lines, it keeps per-service step stats and reports finished steps."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceStats] = {}
        self._steps: dict[tuple[str, str], Step] = {}
        self.messages: list[str] = []  # non-JSON lines and compose's own messages
        self.error = ""

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
            if step is not None and (step.completed or step.cached) and step not in finished:
                finished.append(step)
        self._compose_message(data)
        return finished

    def _compose_message(self, data: dict[str, Any]) -> None:
        if data.get("status") == "Built" and data.get("id"):
            self.service(str(data["id"])).built = True
        if data.get("error") is True:
            self.error = str(data.get("message", "build failed"))
        elif data.get("level") in ("warning", "error") and data.get("msg"):
            self.messages.append(f"{data['level']}: {data['msg']}")

    def _vertex(self, vertex: dict[str, Any]) -> Step | None:
        name = str(vertex.get("name", ""))
        head = _SERVICE.match(name)
        if head is None:
            return None
        stats = self.service(head["service"])
        started, completed = _time(vertex.get("started")), _time(vertex.get("completed"))
        if started and (stats.started is None or started < stats.started):
            stats.started = started
        if completed and (stats.completed is None or completed > stats.completed):
            stats.completed = completed
        error = str(vertex.get("error") or "")
        if error and CANCELED not in error and not stats.error:
            stats.error = f"{name}: {error}"
        match = _STEP.match(name)
        if match is None or match["command"].startswith("FROM "):
            return None
        key = (head["service"], str(vertex.get("digest", name)))
        step = self._steps.get(key)
        if step is None:
            stage = f"{match['stage']} " if match["stage"] else ""
            label = f"[{stage}{match['index']}/{match['count']}] {match['command']}"
            step = Step(head["service"], label)
            self._steps[key] = step
            stats.steps.append(step)
        was_done = bool(step.completed or step.cached)
        step.cached = step.cached or bool(vertex.get("cached"))
        step.started = step.started or started
        step.completed = completed or step.completed
        step.error = error or step.error
        return None if was_done else step

    def failed_services(self) -> list[str]:
        """Services whose build reported an error of its own (not a cancellation)."""
        return [name for name, stats in self.services.items() if stats.error]
