"""What every benchmark scenario shares: running and timing commands, samples, engines."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


BASE_IMAGE = "busybox:1.36"


REGISTRY = "127.0.0.1:5000"  # --registry changes it


@dataclass
class Sample:
    seconds: float
    cached: int
    total: int
    timings: dict[str, float] = field(default_factory=dict)  # invoke build's own phases
    # invoke build's commands and engine calls (``calls`` of ``--json``), seconds by kind
    calls: dict[str, float] = field(default_factory=dict)


_COMPOSE_VERBS = {"build", "config", "push", "pull", "up", "version", "images", "ls", "ps"}


def call_kind(what: str) -> str:
    """A traced call's kind: an engine call's first word, a command's program and its sub
    command (``docker compose build``, ``docker image tag``, ``git diff``)."""
    if what.startswith("engine: "):
        return "engine: " + what.split()[1]
    program, *rest = what.split()
    words = [word for word in rest if re.fullmatch(r"[a-z][a-z-]*", word)]
    if words[:1] == ["compose"]:
        verbs = [word for word in words if word in _COMPOSE_VERBS]
        return f"{program} compose {verbs[-1] if verbs else ''}".strip()
    return " ".join([program, *words[: 2 if program == "docker" else 1]])


def by_kind(calls: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent per kind of call (calls at once each count whole), ``count: <kind>``, and
    ``covered``: the wall time during which any call ran."""
    out: dict[str, float] = {}
    spans = sorted((float(c["at"]), float(c["at"]) + float(c["seconds"])) for c in calls)
    covered, reached = 0.0, float("-inf")
    for start, end in spans:
        covered += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    for call in calls:
        kind = call_kind(str(call["what"]))
        out[kind] = round(out.get(kind, 0.0) + float(call["seconds"]), 4)
        out[f"count: {kind}"] = out.get(f"count: {kind}", 0) + 1
    return {**out, "covered": round(covered, 4)} if calls else out


@dataclass
class Cell:
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(sample.seconds for sample in self.samples)

    @property
    def steps(self) -> str:
        seen = sorted({f"{s.cached}/{s.total}" for s in self.samples})
        return " or ".join(seen)


def sh(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv; exit with its output when it fails."""
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr + done.stdout)[-2000:]
        sys.exit(f"bench: {' '.join(argv)} failed ({done.returncode}):\n{tail}")
    return done


def timed(
    argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = sh(argv, cwd, env)
    return time.perf_counter() - start, done


def clean_env() -> dict[str, str]:
    """The environment for measured commands: no commit override, and Python may cache bytecode
    (as after any install; a sandbox's PYTHONDONTWRITEBYTECODE would recompile every run)."""
    drop = {"GIT_COMMIT_HASH", "PYTHONDONTWRITEBYTECODE"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def invoke_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "invoke", "-r", str(ROOT), *args]


def remove_images(patterns: Sequence[str], cwd: Path, project: str = "") -> None:
    """Remove every local image whose reference matches one of ``patterns``, and with
    ``project`` the untagged images its rebuilds left behind (compose's project label)."""
    filters = [f"reference={pattern}" for pattern in patterns]
    if project:
        filters.append(f"label=com.docker.compose.project={project}")
    listed: list[str] = []
    for query in filters:
        listed += sh(["docker", "images", "-q", "--filter", query], cwd).stdout.split()
    if listed:
        sh(["docker", "rmi", "-f", *sorted(set(listed))], cwd)


def prune_builder(cwd: Path) -> None:
    sh(["docker", "builder", "prune", "-af"], cwd)


def ratio(top: float, bottom: float) -> float:
    return round(top / bottom, 2) if bottom else float("nan")


def version(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def engine_meta() -> dict[str, str]:
    """What the current engine is: versions, image store, builder."""
    store = version(["docker", "info", "--format", "{{json .DriverStatus}}"])
    buildx = version(["docker", "buildx", "version"]).split()
    return {
        "engine": "Engine " + version(["docker", "version", "--format", "{{.Server.Version}}"]),
        "compose": "Compose " + version(["docker", "compose", "version", "--short"]),
        "store": "containerd image store" if "containerd" in store else "classic image store",
        "buildx": f"buildx {buildx[1]}" if len(buildx) > 1 else "no buildx",
    }


def quiet_remove(patterns: list[str], cwd: Path) -> None:
    remove_images(patterns, cwd)
