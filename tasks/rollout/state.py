"""Deploy state, kept on the target engine: the lock and the history.

Any runner, laptop or fresh clone pointed at the same engine (``DOCKER_HOST``, ``--context``)
sees the same lock and the same history; a throw-away CI runner loses nothing. What runs now is
read from the running containers (``rollout.running_sha``), not from here.

- Lock: one engine object per project, claimed by name: on a compose host a running idle
  container (``keeper``: a container's name is exclusive, and a running container outlives
  every prune), on a swarm a config (a second create fails). Its labels (fixed at creation:
  engine objects' labels cannot change) say who holds it, for which run (a random id), since
  when, and its lease.
- Lease: the holder renews it while it works, every ``heartbeat`` seconds, stamped by the
  engine's clock: on a compose host it writes the engine's time into the lock container, on a
  swarm it creates a renewal config labelled with its run id and removes its earlier ones.
  Runners with skewed clocks agree. A runner that finds the lock held watches it for a
  renewal: a live holder renews within a heartbeat and is refused at once, never broken
  (renewal is its proof of life, ``--break-lock`` or not); one that stopped renewing (a killed
  CI job) is waited for until its lease runs out. Then the lock belongs to nobody: the runner
  claims the takeover of that run (a marker named after it, a volume or config only one
  creates: of two runners taking it at once exactly one goes on), checks the lock is still
  that run's, removes it, records the interrupted run in the history and claims its own lock.
- History: append-only entries (JSON, masked). On a compose host one file per entry in the
  volume ``compose-tasks-state-<project>``, mounted by a running idle container of that name,
  so no prune removes it (entries that earlier versions kept in volumes are read too); on a
  swarm one config per entry, labelled with the project and holding the entry in a label.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from compose_tasks import mask
from compose_tasks.docker import engine
from compose_tasks.docker.sdk import Kind, Record, Sdk, engine_time
from compose_tasks.errors import Conflict, EngineError, NotFound, UserError
from compose_tasks.rollout import _keeper as keeper

PREFIX = "compose-tasks"
LABEL_KIND = "org.compose-tasks.state"  # lock, history, beat, take (markers), keeper
LABEL_PROJECT = "org.compose-tasks.project"
LABEL_ENTRY = "org.compose-tasks.entry"  # the JSON of a history entry or a lock's holder
LABEL_RUN = "org.compose-tasks.run"  # the run a renewal is of
LEASE_FILE = "lease.json"  # in a compose host's lock container: its last renewal
READ_ATTEMPTS = 8  # of a lock container's lease file, removed under the read by a takeover (5 s)


class Action(StrEnum):
    """What a history entry did."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


class Outcome(StrEnum):
    """How it ended (``interrupted``: its runner died; the next deploy records it)."""

    OK = "ok"
    FAILED = "failed"
    BUILD_FAILED = "build failed"
    INTERRUPTED = "interrupted"


REQUIRED = {"time", "action", "sha", "result"}


@dataclass(frozen=True)
class Target:
    """Where a deploy goes: the engine (as named) and the compose project or stack."""

    host: str
    project: str


def target_of(docker: engine.Engine, project: str) -> Target:
    """The target of this run: the project on the task's engine (``local``: the default)."""
    return Target(docker.host or "local", project)


def _json(text: str | bytes) -> dict[str, Any]:
    """The JSON object in ``text``; empty when it holds none."""
    try:
        entry = json.loads(text)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class EngineState:
    """The lock and history of one project on its engine (``swarm``: as swarm configs)."""

    def __init__(self, api: Sdk, target: Target, swarm: bool = False) -> None:
        self.api = api
        self.target = target
        self.swarm = swarm
        self.lock_name = f"{PREFIX}-lock-{target.project}"
        self.keeper_name = f"{PREFIX}-state-{target.project}"

    def _labels(self, kind: str, entry: Mapping[str, Any]) -> dict[str, str]:
        text = json.dumps(mask.active().data(dict(entry)), sort_keys=True)
        return {LABEL_KIND: kind, LABEL_PROJECT: self.target.project, LABEL_ENTRY: text}

    def _kind(self, state: str) -> Kind:
        """What a piece of state is kept in on this target: swarm configs on a swarm; on a
        compose host the lock is a running container, the history files in a volume a running
        container mounts (both kept by prunes) and the takeover markers volumes."""
        if self.swarm:
            return Kind.CONFIG
        return Kind.CONTAINER if state == "lock" else Kind.VOLUME

    def _find(self, state: str) -> list[Record]:
        query = {LABEL_KIND: state, LABEL_PROJECT: self.target.project}
        return self.api.records(self._kind(state), query)

    @staticmethod
    def _entry(item: Record) -> dict[str, Any]:
        return _json(item.labels.get(LABEL_ENTRY, ""))

    # --- lock ------------------------------------------------------------------------------

    def lock(self) -> Record | None:
        """The lock object, when somebody holds it."""
        found = [item for item in self._find("lock") if item.name == self.lock_name]
        return found[0] if found else None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock, or None."""
        found = self.lock()
        return self._entry(found) if found else None

    def _claim(self, name: str, labels: Mapping[str, str], run: str) -> bool:
        """Create the marker ``name`` for ``run``; whether ``run`` owns it. A swarm config's
        name is exclusive (a second create fails); a volume's create returns the one that
        exists with its first creator's labels, so the labels say who won (the engine creates
        it once)."""
        try:
            self.api.create(self._kind("take"), name, labels)
        except Conflict:
            return False
        found = self.api.records(self._kind("take"), labels)  # ``labels`` name ``run``
        return any(item.name == name for item in found)

    def acquire(self, holder: Mapping[str, Any]) -> bool:
        """Take the lock for ``holder["run"]``; False when somebody holds it."""
        run = str(holder.get("run") or "")
        labels = {**self._labels("lock", holder), LABEL_RUN: run}
        if self.swarm:
            return self._claim(self.lock_name, labels, run)
        try:  # a container's name is exclusive, and a running one outlives every prune
            self.api.run_idle(self.lock_name, keeper.image(self.api), labels, {})
        except Conflict:
            return False
        return True

    def beats(self, run: str) -> list[Record]:
        """The renewals of the holder ``run`` (a swarm's; a compose host renews inside the
        lock container)."""
        if not self.swarm:
            return []
        query = {LABEL_KIND: "beat", LABEL_PROJECT: self.target.project, LABEL_RUN: run}
        return self.api.records(Kind.CONFIG, query)

    def renew(self, run: str, count: int) -> None:
        """One renewal of the lease, stamped by the engine's clock: on a compose host written
        into the lock container; on a swarm a new config, the holder's earlier ones removed."""
        if not self.swarm:
            stamp = {"run": run, "count": count, "at": self.api.now().isoformat()}
            self.api.put_file(self.lock_name, "/", LEASE_FILE, json.dumps(stamp).encode())
            return
        name = f"{PREFIX}-beat-{self.target.project}-{run[:12]}-{count}"
        labels = {LABEL_KIND: "beat", LABEL_PROJECT: self.target.project, LABEL_RUN: run}
        self.api.create(Kind.CONFIG, name, labels)
        for item in self.beats(run):
            if item.name != name:
                with contextlib.suppress(NotFound):
                    self.api.remove(item.kind, item.name)

    def _stamp(self, lock: Record, run: str) -> datetime | None:
        """The engine time the lock container's holder ``run`` last wrote into it, if any."""
        stamp = _json(self._lease_file(lock.name))
        if stamp.get("run") != run:
            return None
        return engine_time(str(stamp.get("at") or ""))

    def _lease_file(self, name: str) -> bytes:
        """The lease file of the lock container ``name`` (empty when there is none). A
        container another runner removes while this one reads it makes the engine answer an
        error (measured on Engine 28.5: 500, "RWLayer of container … is nil"): read again,
        the container is gone or another holder's."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return self.api.read_files(name, f"/{LEASE_FILE}").get(LEASE_FILE, b"")
            except NotFound:
                return b""
            except EngineError:
                if attempt == READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return b""

    def renewed(self, lock: Record, run: str) -> datetime | None:
        """When the lease of ``lock`` was last renewed (taken, at first), by the engine's clock."""
        if not run:
            times = []
        elif self.swarm:
            times = [item.created for item in self.beats(run) if item.created]
        else:
            times = [found] if (found := self._stamp(lock, run)) else []
        return max([*times, *([lock.created] if lock.created else [])], default=None)

    def take(self, stale: str, run: str) -> bool:
        """Remove an expired lock (of the run ``stale``) for ``run``. Of runners taking it at
        once exactly one goes on: it claims the takeover of ``stale`` (a marker only one
        creates), checks the lock is still that run's, and removes it."""
        marker = f"{PREFIX}-take-{self.target.project}-{stale[:16] or 'legacy'}"
        labels = {LABEL_KIND: "take", LABEL_PROJECT: self.target.project, LABEL_RUN: run}
        if not self._claim(marker, labels, run):
            return False
        now = self.lock()
        if now is None or str(self._entry(now).get("run") or "") != stale:
            return False
        with contextlib.suppress(NotFound):
            self.api.remove(now.kind, now.name)
        return True

    def release(self, run: str = "") -> None:
        """Give the lock back (only one ``run`` holds, with a run), its renewals and the
        takeover markers it made."""
        found = self.lock()
        if found is not None and (not run or self._entry(found).get("run") == run):
            with contextlib.suppress(NotFound):
                self.api.remove(found.kind, found.name)
        query = {LABEL_KIND: "take", LABEL_PROJECT: self.target.project, LABEL_RUN: run}
        mine = [*self.beats(run), *self.api.records(self._kind("take"), query)] if run else []
        for item in mine:
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
        unique = uuid.uuid4().hex[:12]
        if self.swarm:
            name = f"{PREFIX}-history-{self.target.project}-{unique}"
            self.api.create(Kind.CONFIG, name, self._labels("history", full))
            return
        labels = {LABEL_KIND: "keeper", LABEL_PROJECT: self.target.project}
        keeper.keeper(self.api, self.keeper_name, labels)
        text = json.dumps(mask.active().data(full), sort_keys=True)
        stamp = re.sub(r"\D", "", str(full["time"])[:26])  # its time, to the microsecond
        self.api.put_file(
            self.keeper_name, keeper.STATE_DIR, f"{stamp}-{unique}.json", text.encode()
        )

    def history(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (a compose host's, with those earlier versions kept in
        volumes); an object that is not an entry is a UserError."""
        found = [(item.name, self._entry(item)) for item in self._find("history")]
        if not self.swarm:
            with contextlib.suppress(NotFound):  # no keeper: no deploy recorded here yet
                files = self.api.read_files(self.keeper_name, keeper.STATE_DIR)
                found += [
                    (f"{self.keeper_name}:{name}", _json(data)) for name, data in files.items()
                ]
        for name, entry in found:
            if not entry.keys() >= REQUIRED:
                raise UserError(
                    f"corrupt deploy history on the target: {name} holds no history entry "
                    "(remove that object)"
                )
        return sorted((entry for _, entry in found), key=lambda entry: str(entry["time"]))

    def last_good(self, other_than: str = "") -> str:
        """The sha of the newest successful deploy or rollback, other than ``other_than``."""
        for entry in reversed(self.history()):
            if entry.get("result") == Outcome.OK and entry.get("sha") != other_than:
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


@dataclass(frozen=True)
class Lease:
    """How long a lock holds without renewal, and how often its live holder renews it."""

    seconds: float = 60.0
    heartbeat: float = 10.0


def _who(held: Mapping[str, Any]) -> str:
    return f"{held.get('user', '?')}@{held.get('machine', '?')} (pid {held.get('pid', '?')})"


class _Heartbeat:
    """Renews the lease every ``lease.heartbeat`` seconds until stopped."""

    def __init__(self, state: EngineState, run: str, lease: Lease) -> None:
        self.state, self.run, self.lease = state, run, lease
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.count = 0

    def _run(self) -> None:
        while not self.stopped.wait(self.lease.heartbeat):
            self.count += 1
            with contextlib.suppress(Exception):  # an engine that does not answer: next beat
                self.state.renew(self.run, self.count)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


@contextlib.contextmanager
def deploy_lock(
    state: EngineState,
    break_lock: bool,
    lease: Lease | None = None,
    doing: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Iterator[None]:
    """Hold the target's lock for ``doing`` (its action and sha), renewing its lease while it
    runs. A lock whose lease ran out (or whose holder provably ended, on this machine) belongs
    to nobody: it is taken, its interrupted run recorded in the history. A live holder is never
    broken, ``break_lock`` or not: renewal is its proof of life."""
    lease = lease or Lease()
    run = uuid.uuid4().hex
    holder = {
        "run": run,
        "pid": os.getpid(),
        "user": getpass.getuser(),
        "machine": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "lease": lease.seconds,
        "heartbeat": lease.heartbeat,
        **dict(doing or {}),
    }
    if not state.acquire(holder):
        _take_expired(state, break_lock, lease, holder, log)
    try:
        with _Heartbeat(state, run, lease):
            yield
    finally:
        try:
            state.release(run)
        except EngineError as exc:  # an engine gone away: what went wrong before is the news
            log(f"the deploy lock was not given back ({exc}): the next deploy takes it over")


def _watch(
    state: EngineState,
    lock: Record,
    run: str,
    lease: float,
    beat: float,
    who: str,
    log: Callable[[str], None],
) -> float:
    """Seconds since the lock's last renewal, after watching it: a live holder renews within
    a heartbeat (returned at once); one that stopped (a killed runner) is waited for until its
    lease runs out, so the next deploy needs no retry."""
    first = state.renewed(lock, run)
    ago = _unrenewed(state, lock, run)
    give_up = time.monotonic() + lease + 2 * beat + 2  # a clock that stands still: no forever
    while ago <= lease and time.monotonic() < give_up:
        if state.renewed(lock, run) != first:
            return _unrenewed(state, lock, run)  # renewed meanwhile: alive
        if ago > 2 * beat + 1:  # no renewal for two heartbeats: it stopped
            log(f"the deploy lock of {who} has not been renewed for {ago:.0f}s: waiting up to "
                f"{lease - ago + 1:.0f}s for its lease to run out")  # fmt: skip
            time.sleep(lease - ago + 1)
            return _unrenewed(state, lock, run)
        time.sleep(min(1.0, beat / 2))
        ago = _unrenewed(state, lock, run)
    return ago


def _unrenewed(state: EngineState, lock: Record, run: str) -> float:
    """Seconds since the lock's last renewal, on the engine's clock."""
    renewed = state.renewed(lock, run)
    return (state.api.now() - renewed).total_seconds() if renewed else float("inf")


def _take_expired(
    state: EngineState,
    break_lock: bool,
    lease: Lease,
    holder: Mapping[str, Any],
    log: Callable[[str], None],
) -> None:
    """The lock is held: take it if its lease ran out, else a UserError naming the holder."""
    project = state.target.project
    lock = state.lock()
    if lock is None:  # released meanwhile
        if state.acquire(holder):
            return
        raise UserError(f"deploy of {project} was locked by another run just now")
    held = state._entry(lock)
    if not held:
        raise UserError(
            f"the deploy lock of {project} on the target ({lock.kind} {lock.name}) holds no "
            f"holder (edited by hand?): remove it (docker {lock.kind} rm {lock.name}) once no "
            "deploy runs"
        )
    run = str(held.get("run") or "")
    seconds = float(held.get("lease") or lease.seconds)
    beat = float(held.get("heartbeat") or lease.heartbeat)
    who, since = _who(held), held.get("since", "?")
    gone = holder_gone(held)
    if run and not gone:
        ago = _watch(state, lock, run, seconds, beat, who, log)
    else:
        ago = _unrenewed(state, lock, run)
    if ago <= seconds and not gone:
        hint = " (--break-lock never breaks a live holder)" if break_lock else ""
        raise UserError(
            f"deploy of {project} is locked by {who} since {since}: its lease was renewed "
            f"{ago:.0f}s ago (it expires {seconds:.0f}s after the last renewal){hint}"
        )
    if not state.take(run, str(holder["run"])):
        raise UserError(f"deploy of {project}: another run took the expired lock just now")
    why = "its process ended" if ago <= seconds else f"its lease expired ({ago:.0f}s unrenewed)"
    acquired = state.acquire(holder)  # a runner arriving just now may have claimed it first
    state.record(  # whoever removed the lock records the run it interrupted
        {
            "action": str(held.get("action") or Action.DEPLOY),
            "sha": str(held.get("sha") or "?"),
            "result": Outcome.INTERRUPTED,
            "detail": f"{who} since {since}: {why}; lock removed by {_who(holder)}",
        }
    )
    for item in state.beats(run) if run else []:
        with contextlib.suppress(NotFound):
            state.api.remove(item.kind, item.name)
    if not acquired:
        raise UserError(f"deploy of {project} was locked by another run just now")
    log(f"took over the deploy lock of {who} since {since}: {why}")
