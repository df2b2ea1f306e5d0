"""Development sessions: lint, types, unit and engine tests, benchmarks."""

from __future__ import annotations

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
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


def run_typecheck(session: nox.Session) -> None:
    session.run("mypy")


def run_tests(session: nox.Session) -> None:
    session.run("pytest", "-m", "not engine", *session.posargs)


def run_integration(session: nox.Session) -> None:
    session.run("pytest", "-m", "engine", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """Ruff over the code and tests."""
    session.install("ruff")
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
def ci(session: nox.Session) -> None:
    """Everything CI checks: lint, types, then unit and engine tests in one pytest run."""
    install(session)
    run_lint(session)
    run_typecheck(session)
    session.run("pytest", *session.posargs)


@nox.session(python=False, default=False)
def images(session: nox.Session) -> None:
    """Create the local base-image stand-ins the Dockerfiles name."""
    session.run("bash", "scripts/base-images.sh", external=True)


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Build benchmark: seed config vs invoke build, and plan time (needs the engine)."""
    install(session)
    session.run("python", "benchmarks/bench.py", *session.posargs)
