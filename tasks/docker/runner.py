"""The one way to run external commands (``docker``, ``docker compose``, ``git``): argv lists.

Every subprocess of the tool goes through a ``Runner``; its errors map to one-line ``UserError``s
with the command's first meaningful line, secrets masked. Tests pass a stand-in with the same
methods, so orchestration is checked without a daemon.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from compose_tasks import mask
from compose_tasks.docker import probe, trace
from compose_tasks.errors import UserError

NOT_FOUND = 127  # the shell's code for a command that is not installed


@dataclass(frozen=True)
class Result:
    """A finished command."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


def meaningful_line(text: str) -> str:
    """The first line of an error output that is not a warning (compose prefixes those)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if not line.upper().startswith(("WARN", "WARNING"))]
    return mask.active().text((errors or lines or [""])[0])


def error_line(text: str) -> str:
    """The error a command ended with: its last line that says error or failed (compose prints
    progress lines first), else ``meaningful_line``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [line for line in lines if re.search(r"\b(error|failed)\b", line, re.IGNORECASE)]
    return mask.active().text(said[-1]) if said else meaningful_line(text)


def missing(argv: Sequence[str]) -> str:
    """What to say when a command is not installed."""
    if argv[:2] == ["docker", "compose"]:
        return "the docker CLI is not installed (needed for 'docker compose')"
    return f"{argv[0]} is not installed"


def traced(argv: Sequence[str]) -> str:
    """A command as the run's trace names it: whole, masked."""
    return mask.active().text(shlex.join(argv))


class Runner:
    """Runs argv lists with the process environment, the runner's ``base`` (``DOCKER_HOST`` of
    a docker context, say) and each call's ``env``; never through a shell."""

    base: Mapping[str, str] = MappingProxyType({})

    def __init__(self, base: Mapping[str, str] | None = None) -> None:
        self.base = dict(base or {})
        self._socket: str | None = None

    def environment(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return {**os.environ, **self.base, **(env or {})}

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """Run to the end and capture the output; a command that is not installed gives 127."""
        try:
            with trace.timed(traced(argv)):
                done = subprocess.run(
                    list(argv),
                    capture_output=True,
                    text=True,
                    errors="replace",
                    env=self.environment(env),
                    cwd=cwd,
                    check=False,
                )
        except OSError:
            return Result(tuple(argv), NOT_FOUND, "", missing(list(argv)))
        return Result(tuple(argv), done.returncode, done.stdout, done.stderr)

    def engine_info(self) -> probe.Info | None:
        """The engine's version and storage driver straight from its local socket, or None
        (no local socket, no answer): then the CLI is asked (``docker.probe``)."""
        return probe.info(self.environment(None))

    def api_socket(self) -> str:
        """The engine's local unix socket, as the CLI would reach it ('' when the CLI would use
        a context or another transport: then the CLI or SDK is used, ``docker.probe``); read
        once per runner."""
        if self._socket is None:
            self._socket = probe.socket_path(self.environment(None))
        return self._socket

    def run_all(self, argvs: Sequence[Sequence[str]]) -> list[Result]:
        """Run several commands at once (each as ``run``); results in the same order."""
        slots: dict[int, Result] = {}
        errors: list[BaseException] = []

        def one(index: int) -> None:
            try:
                slots[index] = self.run(argvs[index])
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(argvs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        return [slots[index] for index in range(len(argvs))]

    def check(
        self,
        argv: Sequence[str],
        what: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> str:
        """Run and return stdout; a failure is a UserError: ``<what> failed: <first line>``."""
        done = self.run(argv, env, cwd)
        if done.code == NOT_FOUND and not done.out:
            raise UserError(done.err)
        if not done.ok:
            why = meaningful_line(done.err) or meaningful_line(done.out) or f"exit {done.code}"
            raise UserError(f"{what} failed: {why}")
        return done.out

    def stream(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        on_idle: Callable[[], None] | None = None,
        idle: float = 15.0,
    ) -> int:
        """Run, passing each merged stdout/stderr line to ``on_line``; return the exit code.

        ``on_idle`` is called whenever ``idle`` seconds pass without a line (long steps)."""
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=self.environment(env),
                bufsize=1,
            )
        except OSError:
            raise UserError(missing(list(argv))) from None
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        with proc, trace.timed(traced(argv)):
            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            while True:
                try:
                    line = lines.get(timeout=idle)
                except queue.Empty:
                    if on_idle is not None:
                        on_idle()
                    continue
                if line is None:
                    break
                on_line(line)
            reader.join()
            return proc.wait()
