"""``invoke deploy``, ``rollback``, ``history``: health-gated deploys with a lock and a record."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from docker.errors import APIError
from invoke.context import Context
from invoke.tasks import task

from tasks import compose, mask, report
from tasks.build import IGNORE_MARK, Prepared, execute, prepare
from tasks.cli import one_line_errors, settings_of
from tasks.errors import UserError
from tasks.refs import COMPOSE_PROJECT as PROJECT_LABEL
from tasks.refs import COMPOSE_SERVICE as SERVICE_LABEL
from tasks.refs import owned_by, split_ref
from tasks.settings import Settings

DEPLOY_OVERRIDE = "compose.deploy.yml"
POLL = 1.0
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def valid_tag(value: str, flag: str) -> str:
    """An image tag given on the command line, or a UserError."""
    if not _TAG.match(value):
        raise UserError(
            f"invalid {flag} {value!r}: expected an image tag (letters, digits, '_', '.', '-', "
            "at most 128, not starting with '.' or '-')"
        )
    return value


@dataclass(frozen=True)
class Target:
    """Where a deploy goes: the engine and the compose project."""

    host: str
    project: str

    @property
    def key(self) -> str:
        safe = "".join(ch if ch.isalnum() else "_" for ch in self.host)
        return f"{self.project}@{safe}"


def target_of(prepared: Prepared) -> Target:
    return Target(os.environ.get("DOCKER_HOST") or "local", prepared.plan.project)


def use_context(name: str) -> None:
    """Point compose and the SDK at a docker context's engine (ssh:// hosts included)."""
    if not _CONTEXT.match(name):
        raise UserError(f"invalid --context {name!r}: expected a docker context name")
    done = subprocess.run(
        ["docker", "context", "inspect", name, "--format", "{{.Endpoints.docker.Host}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    host = done.stdout.strip()
    if done.returncode != 0 or not host:
        raise UserError(f"unknown docker context '{name}'")
    os.environ["DOCKER_HOST"] = host


# --- state: history and lock -------------------------------------------------------------


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
    path = settings.state_dir / f"history-{target.key}.jsonl"
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


# --- bringing a sha up behind health checks ----------------------------------------------


def _override(prepared: Prepared, settings: Settings, sha: str) -> Path:
    """A compose override pinning every built service to its ``:<sha>`` image."""
    path = settings.build_dir / DEPLOY_OVERRIDE
    services = {
        s.name: {"image": f"{s.image}:{sha}".replace("$", "$$")} for s in prepared.plan.services
    }
    header = "# Generated by 'invoke deploy'; do not edit.\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump({"services": services}, sort_keys=False))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    return path


def up(prepared: Prepared, settings: Settings, sha: str, timeout: float) -> tuple[bool, str]:
    """Start the stack with every built service at ``sha``; wait for health. (ok, why)"""
    plan = prepared.plan
    client = prepared.images.client
    refs = [f"{service.image}:{sha}" for service in plan.services]
    missing = [ref for ref in refs if prepared.images.image_id(ref) is None]
    if missing:
        return False, f"no such image: {', '.join(missing)}"
    files = [*plan.compose_files, str(_override(prepared, settings, sha))]
    argv = [
        *compose.command(plan.project_dir, files, plan.project, plan.profiles, plan.env_file),
        "up",
        "-d",
        "--no-build",
        "--remove-orphans",
    ]
    report.say(f"$ {shlex.join(argv)}", err=True)
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env=compose.environment({plan.commit_var: sha}),
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"compose up exited {done.returncode}"
        return False, why
    return wait_healthy(client, plan.project, timeout, settings)


def wait_healthy(client: Any, project: str, timeout: float, settings: Settings) -> tuple[bool, str]:
    """Wait until every container of the project is healthy (or running without a check)."""
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while True:
        states = {}
        label = {"label": f"{PROJECT_LABEL}={project}"}
        for container in client.containers.list(all=True, filters=label):
            state = container.attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            name = container.labels.get(SERVICE_LABEL, container.name)
            states[name] = health or state.get("Status", "?")
            if state.get("Status") in ("exited", "dead") or health == "unhealthy":
                return False, f"{name} is {states[name]}"
        for name, status in states.items():
            if last.get(name) != status:
                report.say(f"  {name:<14} {status}", err=True)
        last = states
        if states and all(s in ("healthy", "running") for s in states.values()):
            return True, "all services healthy"
        if time.monotonic() > deadline:
            waiting = [n for n, s in states.items() if s not in ("healthy", "running")]
            return False, f"timed out after {timeout:.0f}s waiting for {', '.join(waiting)}"
        time.sleep(POLL)


def diagnose(client: Any, project: str, lines: int = 20) -> str:
    """Health-check output and the last log lines of every container that is not well."""
    out: list[str] = []
    for container in client.containers.list(
        all=True, filters={"label": f"{PROJECT_LABEL}={project}"}
    ):
        state = container.attrs.get("State") or {}
        health = state.get("Health") or {}
        if health.get("Status", "healthy") == "healthy" and state.get("Status") == "running":
            continue
        name = container.labels.get(SERVICE_LABEL, container.name)
        out.append(f"--- {name}: {health.get('Status') or state.get('Status')}")
        for probe in (health.get("Log") or [])[-3:]:
            text = str(probe.get("Output", "")).strip() or "(no output)"
            out.append(f"health check exit {probe.get('ExitCode')}: {text[:300]}")
        logs = container.logs(tail=lines).decode(errors="replace").rstrip()
        out.append(f"last {lines} log lines:\n{logs or '(none)'}")
    return "\n".join(out)


def stop(prepared: Prepared, settings: Settings) -> None:
    """Stop the project's containers (volumes and containers kept)."""
    plan = prepared.plan
    argv = [*compose.command(plan.project_dir, list(plan.compose_files), plan.project), "stop"]
    subprocess.run(argv, capture_output=True, check=False, env=compose.environment({}))


def prune_old(prepared: Prepared, keep: int, protect: set[str]) -> list[str]:
    """Remove the project's sha-tagged images beyond the newest ``keep``, never ``protect``."""
    client = prepared.images.client
    removed: list[str] = []
    for service in prepared.plan.services:
        tagged = []
        for image in client.images.list(name=service.image):
            if not owned_by(image.labels, prepared.plan.project):
                continue
            for ref in image.tags:
                repo, tag = split_ref(ref)
                if repo == service.image and tag not in ("latest", *protect):
                    tagged.append((image.attrs.get("Created", ""), ref))
        for _, ref in sorted(tagged, reverse=True)[keep:]:
            try:
                client.api.remove_image(ref)
            except APIError:
                continue
            removed.append(ref)
    return removed


def running_sha(prepared: Prepared) -> str:
    """The image tag every built service of the project runs now, read from its containers
    (not from a history file, which a fresh checkout or CI runner does not have); '' if none
    or if they disagree."""
    plan = prepared.plan
    images = {service.name: service.image for service in plan.services}
    found: set[str] = set()
    containers = prepared.images.client.containers.list(
        filters={"label": f"{PROJECT_LABEL}={plan.project}", "status": "running"}
    )
    for container in containers:
        service = container.labels.get(SERVICE_LABEL, "")
        if service not in images:
            continue
        repo, tag = split_ref(str((container.attrs.get("Config") or {}).get("Image") or ""))
        found.add(tag if repo == images[service] and tag else "")
    return found.pop() if len(found) == 1 else ""


def release(
    prepared: Prepared, settings: Settings, target: Target, sha: str, action: str, timeout: float
) -> None:
    """Bring ``sha`` up; on failure roll back to what ran before (the running containers, else
    the last good sha of the history). Records every step."""
    client = prepared.images.client
    running = running_sha(prepared)
    previous = running if running and running != sha else last_good(settings, target, sha)
    started = time.monotonic()
    report.say(f"{action} {target.project} at :{sha} (timeout {timeout:.0f}s)", err=True)
    ok, why = up(prepared, settings, sha, timeout)
    seconds = round(time.monotonic() - started, 1)
    record(
        settings,
        target,
        {
            "action": action,
            "sha": sha,
            "result": "ok" if ok else "failed",
            "detail": why,
            "seconds": seconds,
        },
    )
    if ok:
        removed = prune_old(prepared, settings.keep_images, {sha, previous})
        report.say(
            f"{action} ok: :{sha} healthy in {seconds}s"
            + (f"; pruned {len(removed)} old images" if removed else ""),
        )
        return
    report.say(f"{action} of :{sha} failed: {why}", err=True)
    report.say(diagnose(client, target.project), err=True)
    if not previous:
        stop(prepared, settings)
        raise UserError(
            f"{action} of :{sha} failed ({why}); no earlier deploy to roll back to,"
            " the stack is left stopped"
        )
    report.say(f"rolling back to :{previous}", err=True)
    started = time.monotonic()
    back_ok, back_why = up(prepared, settings, previous, timeout)
    record(
        settings,
        target,
        {
            "action": "rollback",
            "sha": previous,
            "result": "ok" if back_ok else "failed",
            "detail": back_why,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    if not back_ok:
        raise UserError(
            f"{action} of :{sha} failed ({why}) and rollback to :{previous} failed too ({back_why})"
        )
    raise UserError(f"{action} of :{sha} failed ({why}); rolled back to :{previous}, healthy")


TARGET_HELP = {
    "context": "deploy to this docker context's engine (default: DOCKER_HOST or local)",
    "timeout": "seconds to wait for health checks (default: setting deploy_timeout)",
    "break-lock": "remove a lock left by a deploy that is no longer running",
}


def valid_timeout(text: str) -> float:
    """The ``--timeout`` flag in seconds (0: the setting), or a UserError."""
    try:
        value = float(text or 0)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:  # also refuses nan and inf
        raise UserError(f"invalid --timeout {text!r}: expected seconds from 1 to 86400")
    return value


def _begin(c: Context, context: str) -> tuple[Settings, Prepared, Target]:
    if context:
        use_context(context)
    settings = settings_of(c)
    prepared = prepare(settings)
    return settings, prepared, target_of(prepared)


@task(
    help={
        "no-build": "deploy existing images instead of building first",
        "sha": "deploy this image tag (a short sha), not the current commit; implies --no-build",
        **TARGET_HELP,
    }
)
@one_line_errors
def deploy(
    c: Context,
    no_build: bool = False,
    sha: str = "",
    timeout: str = "",
    context: str = "",
    break_lock: bool = False,
) -> None:
    """Build, bring the stack up behind health checks, roll back automatically if unhealthy."""
    if sha:
        valid_tag(sha, "--sha")
    valid_timeout(timeout)
    settings, prepared, target = _begin(c, context)
    wait = valid_timeout(timeout) or settings.deploy_timeout
    with deploy_lock(settings, target, break_lock):
        if not (no_build or sha):
            for line in report.warning_lines(prepared.plan):
                report.say(line, err=True)
            result = execute(prepared, settings, quiet=True)
            if not result["ok"]:
                record(
                    settings,
                    target,
                    {
                        "action": "deploy",
                        "sha": prepared.plan.commit_tag,
                        "result": "build failed",
                        "detail": result["error"],
                    },
                )
                raise UserError(
                    f"build failed ({', '.join(result['failed']) or 'compose'}); "
                    "nothing deployed, the running version is untouched"
                )
        release(prepared, settings, target, sha or prepared.plan.commit_tag, "deploy", wait)


@task(help={"to": "redeploy this sha (default: the one before the current deploy)", **TARGET_HELP})
@one_line_errors
def rollback(
    c: Context, to: str = "", timeout: str = "", context: str = "", break_lock: bool = False
) -> None:
    """Redeploy an earlier sha without building, through the same health gate."""
    if to:
        valid_tag(to, "--to")
    valid_timeout(timeout)
    settings, prepared, target = _begin(c, context)
    current = last_good(settings, target)
    sha = to or last_good(settings, target, other_than=current)
    if not sha:
        raise UserError("nothing to roll back to: no earlier successful deploy in the history")
    with deploy_lock(settings, target, break_lock):
        wait = valid_timeout(timeout) or settings.deploy_timeout
        release(prepared, settings, target, sha, "rollback", wait)


@task(help={"json": "print the history as JSON", "context": TARGET_HELP["context"]})
@one_line_errors
def history(c: Context, json: bool = False, context: str = "") -> None:
    """Show every deploy and rollback of this target: sha, time, user, host, result."""
    settings, _, target = _begin(c, context)
    entries = read_history(settings, target)
    if json:
        report.emit_json(entries)
        return
    rows = [
        [
            e["time"],
            e["action"],
            e["sha"],
            e["result"],
            e.get("seconds", ""),
            e["user"],
            e["host"],
            e.get("detail", "")[:60],
        ]
        for e in entries
    ]
    report.say(
        report.table(["time", "action", "sha", "result", "secs", "user", "host", "detail"], rows)
        if rows
        else f"no deploys of {target.project} yet",
    )
