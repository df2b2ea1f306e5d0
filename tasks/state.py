"""Deploy state of a target: the lock, the history, and where they live.

Kept per target (compose project and engine) in the state folder, outside the project unless
``state_dir`` is set; details are masked before they are written.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks import mask
from tasks.errors import UserError
from tasks.pipeline import IGNORE_MARK
from tasks.settings import Settings


@dataclass(frozen=True)
class Target:
    """Where a deploy goes: the engine and the compose project."""

    host: str
    project: str

    @property
    def key(self) -> str:
        safe = "".join(ch if ch.isalnum() else "_" for ch in self.host)
        return f"{self.project}@{safe}"


def state_dir(settings: Settings) -> Path:
    """The deploy state folder (outside the project unless ``state_dir`` is set), created."""
    path = settings.state_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        ignore = path / ".gitignore"
        if path.is_relative_to(settings.project_dir) and not ignore.exists():
            ignore.write_text(f"{IGNORE_MARK}: deploy state (history, lock)\n*\n")
    except OSError as exc:
        raise UserError(f"cannot create the deploy state folder {path}: {exc.strerror}") from None
    return path


def history_file(settings: Settings, target: Target) -> Path:
    return state_dir(settings) / f"history-{target.key}.jsonl"


def record(settings: Settings, target: Target, entry: dict[str, Any]) -> None:
    """Append one entry to the target's history (append-only JSON lines)."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": getpass.getuser(),
        "host": target.host,
        "project": target.project,
        **entry,
    }
    with history_file(settings, target).open("a") as handle:
        handle.write(json.dumps(mask.active().data(entry)) + "\n")


def read_history(settings: Settings, target: Target) -> list[dict[str, Any]]:
    """Every entry of the target's history; a corrupt line is a UserError naming it."""
    path = settings.state_dir / f"history-{target.key}.jsonl"  # read only: never created here
    if not path.exists():
        return []
    entries = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the deploy history {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not {"time", "action", "sha", "result"} <= entry.keys():
            raise UserError(
                f"corrupt deploy history {path} line {number}: not a history entry "
                "(fix or remove that line)"
            )
        entries.append(entry)
    return entries


def last_good(settings: Settings, target: Target, other_than: str = "") -> str:
    """The sha of the newest successful deploy or rollback, other than ``other_than``."""
    for entry in reversed(read_history(settings, target)):
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


def _read_lock(path: Path) -> dict[str, Any]:
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return held if isinstance(held, dict) else {}


def _holder_gone(held: Mapping[str, Any]) -> bool:
    """Whether a lock's holder provably no longer runs: same machine, its pid is gone."""
    pid = held.get("pid")
    if held.get("machine") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    return not _pid_alive(pid)


@contextlib.contextmanager
def deploy_lock(settings: Settings, target: Target, break_lock: bool) -> Iterator[None]:
    """Hold the target's lock (exclusive create); a live or unknown holder is never broken."""
    path = state_dir(settings) / f"lock-{target.key}.json"
    holder = {
        "pid": os.getpid(),
        "user": getpass.getuser(),
        "machine": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if path.exists():
        held = _read_lock(path)
        who = f"{held.get('user', '?')}@{held.get('machine', '?')} (pid {held.get('pid', '?')})"
        since = held.get("since", "?")
        if not _holder_gone(held):
            hint = (
                " (its holder cannot be proven gone: remove the file by hand once you are sure)"
                if break_lock
                else ""
            )
            raise UserError(
                f"deploy of {target.project} is locked by {who} since {since}{hint}: {path}"
            )
        if not break_lock:
            raise UserError(
                f"stale deploy lock: {who} since {since} is no longer running;"
                " rerun with --break-lock"
            )
        path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise UserError(f"deploy of {target.project} was locked by another run just now") from None
    except OSError as exc:
        raise UserError(f"cannot create the deploy lock {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(holder))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def target_of(project: str) -> Target:
    """The target of this run: the project on the engine ``DOCKER_HOST`` names (or local)."""
    return Target(os.environ.get("DOCKER_HOST") or "local", project)
