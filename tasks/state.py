"""Deploy state, kept on the target engine: the lock and the history.

Any runner, laptop or fresh clone pointed at the same engine (``DOCKER_HOST``, ``--context``)
sees the same lock and the same history; a throw-away CI runner loses nothing. What runs now is
read from the running containers (``rollout.running_sha``), not from here.

- Lock: one engine object per project, created exclusively by name (a second create fails): a
  network on a compose host, a config on a swarm. Its labels say who holds it, where, since
  when. A holder that is alive, or that cannot be proven gone, is never broken.
- History: one engine object per entry (a volume on a compose host, a config on a swarm),
  labelled with the project and holding the entry as JSON in a label: append-only, and neither
  needs an image or a container.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tasks import engine, mask
from tasks.errors import Conflict, NotFound, UserError
from tasks.sdk import Kind, Record, Sdk

PREFIX = "compose-tasks"
LABEL_KIND = "org.compose-tasks.state"  # "lock" | "history"
LABEL_PROJECT = "org.compose-tasks.project"
LABEL_ENTRY = "org.compose-tasks.entry"  # the JSON of a history entry or a lock's holder
REQUIRED = {"time", "action", "sha", "result"}


@dataclass(frozen=True)
class Target:
    """Where a deploy goes: the engine (as named) and the compose project or stack."""

    host: str
    project: str


def target_of(docker: engine.Engine, project: str) -> Target:
    """The target of this run: the project on the task's engine (``local``: the default)."""
    return Target(docker.host or "local", project)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class EngineState:
    """The lock and history of one project on its engine (``swarm``: as swarm configs)."""

    def __init__(self, api: Sdk, target: Target, swarm: bool = False) -> None:
        self.api = api
        self.target = target
        self.swarm = swarm
        self.lock_name = f"{PREFIX}-lock-{target.project}"

    def _labels(self, kind: str, entry: Mapping[str, Any]) -> dict[str, str]:
        text = json.dumps(mask.active().data(dict(entry)), sort_keys=True)
        return {LABEL_KIND: kind, LABEL_PROJECT: self.target.project, LABEL_ENTRY: text}

    def _kind(self, state: str) -> Kind:
        """What the lock or the history is kept in on this target."""
        if self.swarm:
            return "config"
        return "network" if state == "lock" else "volume"

    def _find(self, state: str) -> list[Record]:
        query = {LABEL_KIND: state, LABEL_PROJECT: self.target.project}
        return self.api.records(self._kind(state), query)

    @staticmethod
    def _entry(item: Record) -> dict[str, Any]:
        try:
            entry = json.loads(item.labels.get(LABEL_ENTRY, ""))
        except ValueError:
            return {}
        return entry if isinstance(entry, dict) else {}

    # --- lock ------------------------------------------------------------------------------

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock, or None."""
        found = [item for item in self._find("lock") if item.name == self.lock_name]
        return self._entry(found[0]) if found else None

    def acquire(self, holder: Mapping[str, Any]) -> bool:
        """Take the lock; False when somebody holds it (creation is exclusive)."""
        try:
            self.api.create(self._kind("lock"), self.lock_name, self._labels("lock", holder))
        except Conflict:
            return False
        return True

    def release(self) -> None:
        for item in self._find("lock"):
            if item.name == self.lock_name:
                with contextlib.suppress(NotFound):
                    self.api.remove(item.kind, item.name)

    # --- history ---------------------------------------------------------------------------

    def record(self, entry: Mapping[str, Any]) -> None:
        """Append one entry (masked) to the target's history."""
        full = {
            "time": _now(),
            "user": getpass.getuser(),
            "machine": socket.gethostname(),
            "host": self.target.host,
            "project": self.target.project,
            **entry,
        }
        full["detail"] = str(full.get("detail", ""))[:300]
        name = f"{PREFIX}-history-{self.target.project}-{uuid.uuid4().hex[:12]}"
        self.api.create(self._kind("history"), name, self._labels("history", full))

    def history(self) -> list[dict[str, Any]]:
        """Every entry, oldest first; an object that is not an entry is a UserError."""
        entries = []
        for item in self._find("history"):
            entry = self._entry(item)
            if not entry.keys() >= REQUIRED:
                raise UserError(
                    f"corrupt deploy history on the target: {item.name} holds no history entry "
                    "(remove that object)"
                )
            entries.append(entry)
        return sorted(entries, key=lambda entry: str(entry["time"]))

    def last_good(self, other_than: str = "") -> str:
        """The sha of the newest successful deploy or rollback, other than ``other_than``."""
        for entry in reversed(self.history()):
            if entry.get("result") == "ok" and entry.get("sha") != other_than:
                return str(entry["sha"])
        return ""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_gone(held: Mapping[str, Any]) -> bool:
    """Whether a lock's holder provably no longer runs: same machine, its pid is gone."""
    pid = held.get("pid")
    if held.get("machine") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    return not _pid_alive(pid)


@contextlib.contextmanager
def deploy_lock(state: EngineState, break_lock: bool) -> Iterator[None]:
    """Hold the target's lock; a live or unknown holder is never broken."""
    holder = {
        "pid": os.getpid(),
        "user": getpass.getuser(),
        "machine": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    project = state.target.project
    if not state.acquire(holder):
        held = state.holder() or {}
        who = f"{held.get('user', '?')}@{held.get('machine', '?')} (pid {held.get('pid', '?')})"
        since = held.get("since", "?")
        if not holder_gone(held):
            hint = " (its holder cannot be proven gone)" if break_lock else ""
            raise UserError(f"deploy of {project} is locked by {who} since {since}{hint}")
        if not break_lock:
            raise UserError(
                f"stale deploy lock: {who} since {since} is no longer running;"
                " rerun with --break-lock"
            )
        state.release()
        if not state.acquire(holder):
            raise UserError(f"deploy of {project} was locked by another run just now")
    try:
        yield
    finally:
        state.release()
