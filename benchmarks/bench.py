"""Benchmark: the seed's configuration (raw ``docker compose build``) against ``invoke build``.

Both drive the same fixture stacks (two services, each with a slow dependency step and a code
layer after ``ARG GIT_COMMIT_HASH``, a bare ``cache_from: <image>:latest`` as the seed had), in
two copies with their own project names and file contents, so neither can feed the other's
cache (``invoke``'s copy names its images under the registry, to push them). Two fixtures:
``single`` (one stage) and ``multi`` (deps -> build -> runtime, the install in a stage the final
image reaches only through ``COPY --from``). Every scenario runs once per
repeat for each configuration; the table shows the median wall time and the cached/total step
counts. The fresh-runner scenario removes every local image, the builder cache and the user's
cache folder (where the local build caches live); ``invoke``
pushed to the registry before (``--push``), the seed has nothing to push. The phases of a warm
no-change ``invoke build`` come from its own ``--json`` timings. Also measures planning a
generated 100-service project (with and without the kept resolution) against one ``docker
compose config``, and the cost of starting the tasks at all (``invoke --list``). Measured
commands may cache bytecode, as they do after an install. ``--engines host,containerd,classic``
runs the whole benchmark on each engine (``host``: the one the CLI talks to; the others are
``scripts/engines.sh``'s, in their namespaces) and puts them side by side.

Needs a Docker engine, Compose v2, ``busybox:1.36`` (``nox -s images``) and a registry
(``--registry``, default 127.0.0.1:5000, which ``scripts/setup.sh`` starts). Run:
``nox -s bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks import fresh_runner  # noqa: E402
from compose_tasks.docker.progress import BuildProgress  # noqa: E402
from tests.support import RecordingRegistry  # noqa: E402 - a registry that logs requests

BASE_IMAGE = "busybox:1.36"
SERVICES = ("api", "web")
DEPENDENCY_SECONDS = 3
DOCKERFILE = f"""\
FROM {BASE_IMAGE}
WORKDIR /app
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep {DEPENDENCY_SECONDS}
ARG GIT_COMMIT_HASH=unknown
COPY src/ ./src/
RUN echo "$GIT_COMMIT_HASH" > /app/VERSION && cat src/main.txt >> /app/VERSION
"""
MULTI_DOCKERFILE = f"""\
FROM {BASE_IMAGE} AS deps
WORKDIR /app
COPY deps.txt ./
RUN cp deps.txt /deps-installed && sleep {DEPENDENCY_SECONDS}
FROM deps AS build
ARG GIT_COMMIT_HASH=unknown
COPY src/ ./src/
RUN echo "$GIT_COMMIT_HASH" > /app/VERSION && cat src/main.txt >> /app/VERSION
FROM {BASE_IMAGE}
COPY --from=build /app/VERSION /VERSION
"""
FIXTURES = {"single": DOCKERFILE, "multi": MULTI_DOCKERFILE}
REGISTRY = "127.0.0.1:5000"  # --registry changes it
SCENARIOS = (
    ("cold", "cold: no image, builder cache empty"),
    ("no-change", "no change at all"),
    ("code-change", "code-only change (new commit)"),
    ("builder-pruned", "builder cache pruned, previous image present"),
    ("after-clear", "right after invoke clear-caches"),
    ("fresh-runner", "fresh runner, --rebuild: no local image, builder cache or cache folder"),
)
CONFIGS = ("seed", "invoke")
CONFIG_TITLES = {"seed": "seed config, raw compose", "invoke": "invoke build"}


@dataclass
class Sample:
    seconds: float
    cached: int
    total: int
    timings: dict[str, float] = field(default_factory=dict)  # invoke build's own phases


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


class Stack:
    """One copy of the fixture project, driven one way."""

    def __init__(
        self, base: Path, config: str, nonce: str, fixture: str, registry: str = REGISTRY
    ) -> None:
        self.config = config
        self.name = f"bench{fixture}{config}{nonce}"
        self.root = base / fixture / config
        # the user's cache folder (local build caches, kept resolution): a fresh runner has none
        self.home_cache = base / "xdg" / f"{fixture}-{config}"
        self.env = {**clean_env(), "XDG_CACHE_HOME": str(self.home_cache)}
        self.registry = registry
        # invoke's copy names its images under the registry, so that it can push them
        prefix = f"{registry}/{self.name}/" if config == "invoke" else ""
        self.edits = 0
        services = ""
        for service in SERVICES:
            # Distinct paths per service: no step is shared between the two services.
            self.write(f"{service}/Dockerfile", FIXTURES[fixture].replace("/app", f"/{service}"))
            self.write(f"{service}/deps.txt", f"dependency list of {self.name}-{service}\n")
            self.write(f"{service}/.dockerignore", ".git\n")
            self.write(f"{service}/src/main.txt", f"{service} v0\n")
            image = f"{prefix}{self.name}-{service}:latest"  # its own image, as the seed had
            services += (
                f"  {service}:\n    image: {image}\n    build:\n      context: ./{service}\n"
                f"      args:\n        GIT_COMMIT_HASH: ${{GIT_COMMIT_HASH:-unknown}}\n"
                f"      cache_from:\n        - {image}\n"
            )
        self.write("compose.yaml", f"name: {self.name}\nservices:\n{services}")
        sh(["git", "init", "-q", "-b", "main"], self.root)
        sh(["git", "config", "user.email", "bench@example.invalid"], self.root)
        sh(["git", "config", "user.name", "bench"], self.root)
        self.commit()

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self) -> None:
        sh(["git", "add", "-A"], self.root)
        sh(["git", "commit", "-qm", f"change {self.edits}"], self.root)

    def change_code(self) -> None:
        self.edits += 1
        for service in SERVICES:
            self.write(f"{service}/src/main.txt", f"{service} v{self.edits}\n")
        self.commit()

    def remove_images(self) -> None:
        patterns = [f"{self.name}-*", f"{self.registry}/{self.name}/*"]
        remove_images(patterns, self.root, self.name)

    def forget_local_cache(self) -> None:
        """What a new CI runner lacks besides images: the user's cache folder."""
        shutil.rmtree(self.home_cache, ignore_errors=True)

    def clear(self) -> None:
        sh(invoke_argv("clear-caches", "--yes"), self.root, self.env)

    def push(self) -> None:
        """What a CI run does after its build: push to the shared registry (``invoke`` only)."""
        if self.config == "invoke":
            sh(invoke_argv("build", "--push"), self.root, self.env)

    def build(self, rebuild: bool = False) -> Sample:
        """Build once the configuration's way; wall time and cached/total steps (``rebuild``:
        even when ``invoke build`` finds this commit's images up to date)."""
        if self.config == "seed":
            sha = sh(["git", "rev-parse", "HEAD"], self.root).stdout.strip()
            argv = ["docker", "compose", "--progress", "json", "build"]
            seconds, done = timed(argv, self.root, {**self.env, "GIT_COMMIT_HASH": sha})
            progress = BuildProgress()
            for line in (done.stdout + done.stderr).splitlines():
                progress.feed(line)
            stats = [progress.service(service) for service in SERVICES]
            return Sample(seconds, sum(s.cached for s in stats), sum(s.total for s in stats))
        flags = ["--rebuild"] if rebuild else []
        seconds, done = timed(invoke_argv("build", "--json", *flags), self.root, self.env)
        data = json.loads(done.stdout)
        rows = data["result"]["services"]
        cached, total = sum(r["cached"] for r in rows), sum(r["steps"] for r in rows)
        return Sample(seconds, cached, total, data["timings"])


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


def run_scenarios(stack: Stack) -> dict[str, Sample]:
    """One pass over every scenario, in order, for one configuration."""
    out: dict[str, Sample] = {}
    stack.clear()  # also the registry tags an earlier repeat pushed
    stack.remove_images()
    prune_builder(stack.root)
    out["cold"] = stack.build()
    out["no-change"] = stack.build()
    stack.change_code()
    out["code-change"] = stack.build()
    prune_builder(stack.root)
    out["builder-pruned"] = stack.build(rebuild=True)
    stack.clear()
    out["after-clear"] = stack.build()
    stack.push()
    stack.remove_images()
    stack.forget_local_cache()
    prune_builder(stack.root)
    # the registry holds this commit's images: without --rebuild nothing would be built (the
    # fresh_runner scenario measures that decision); here, what the registry cache serves
    out["fresh-runner"] = stack.build(rebuild=True)
    return out


def plan_time(base: Path, nonce: str, count: int, repeats: int) -> dict[str, float | int]:
    """Median time to plan a ``count``-service project against one ``docker compose config``."""
    root = base / "many"
    name = f"benchmany{nonce}"
    (root / "app" / "src").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text(DOCKERFILE)
    (root / "app" / "deps.txt").write_text("deps\n")
    (root / "app" / ".dockerignore").write_text(".git\n")
    (root / "app" / "src" / "main.txt").write_text("v0\n")
    services = "".join(f"  s{index:03d}:\n    build: ./app\n" for index in range(count))
    (root / "compose.yaml").write_text(f"name: {name}\nservices:\n{services}")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"]):
        sh(argv, root)
    sh(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-qm", "x"],
        root,
    )
    cache = base / "many-cache"
    env = {**clean_env(), "XDG_CACHE_HOME": str(cache)}  # where the build folder goes
    config, cold, warm, startup = [], [], [], []
    try:
        sh(invoke_argv("build", "--service", "s000"), root, env)  # keeps the resolved project
        [kept] = cache.glob("compose-tasks/*/build/compose.resolved.json")
        config_argv = ["docker", "compose", "config", "--format", "json"]
        plan_argv = invoke_argv("build", "--dry-run", "--json")
        for _ in range(repeats):
            config.append(timed(config_argv, root)[0])
            warm.append(timed(plan_argv, root, env)[0])  # the kept resolution is reused
            kept.rename(kept.with_suffix(".aside"))
            cold.append(timed(plan_argv, root, env)[0])  # compose config runs
            kept.with_suffix(".aside").rename(kept)
            startup.append(timed(invoke_argv("--list"), root, env)[0])
    finally:
        remove_images([f"{name}-*"], root, name)
    config_s = statistics.median(config)
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    return {
        "services": count,
        "compose_config_seconds": round(config_s, 3),
        "plan_cold_seconds": round(cold_s, 3),
        "plan_seconds": round(warm_s, 3),
        "plan_cold_over_config": ratio(cold_s, config_s),
        "plan_over_config": ratio(warm_s, config_s),
        "startup_seconds": round(statistics.median(startup), 3),
    }


AFFECTED_SERVICES = 10
AFFECTED_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
WORKDIR /app
COPY deps.txt ./
ARG GIT_COMMIT_HASH=unknown
COPY src/ ./src/
RUN echo "$GIT_COMMIT_HASH" > /app/VERSION
"""


def affected_time(base: Path, nonce: str, repeats: int) -> dict[str, float | int]:
    """Ten services, one of them changed by each new commit: ``invoke build --affected`` (which
    builds only that one and re-tags the others) against raw ``docker compose build`` (which
    runs all ten through the builder); and a new commit that changes nothing."""
    root = base / "affected"
    name = f"benchaff{nonce}"
    services = ""
    for index in range(AFFECTED_SERVICES):
        folder = root / f"s{index}"
        (folder / "src").mkdir(parents=True)
        (folder / "Dockerfile").write_text(AFFECTED_DOCKERFILE)
        (folder / "deps.txt").write_text(f"deps {index}\n")
        (folder / "src" / "main.txt").write_text("v0\n")
        services += f"  s{index}:\n    build: ./s{index}\n"
    (root / "compose.yaml").write_text(f"name: {name}\nservices:\n{services}")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    sh(["git", "init", "-q"], root)
    env = {**clean_env(), "XDG_CACHE_HOME": str(base / "affected-cache")}

    def commit(change: bool, run: int) -> None:
        if change:
            (root / "s0" / "src" / "main.txt").write_text(f"v{run}\n")
        sh(["git", "add", "-A"], root)
        sh([*git, "commit", "--allow-empty", "-qm", f"run {run}"], root)

    raw, ours, raw_same, ours_same, built = [], [], [], [], []
    compose = ["docker", "compose", "build"]
    affected = invoke_argv("build", "--affected", "--json")
    try:
        commit(False, 0)
        sh(compose, root, env)
        sh(affected, root, env)
        for run in range(1, repeats + 1):
            commit(True, run)
            raw.append(timed(compose, root, env)[0])
            seconds, done = timed(affected, root, env)
            ours.append(seconds)
            rows = json.loads(done.stdout)["result"]["services"]
            built.append(sum(not row["reused"] for row in rows))
            commit(False, run)
            raw_same.append(timed(compose, root, env)[0])
            ours_same.append(timed(affected, root, env)[0])
    finally:
        remove_images([f"{name}-*"], root, name)
    medians = [statistics.median(times) for times in (raw, ours, raw_same, ours_same)]
    return {
        "services": AFFECTED_SERVICES,
        "compose_seconds": round(medians[0], 3),
        "affected_seconds": round(medians[1], 3),
        "affected_over_compose": ratio(medians[1], medians[0]),
        "built_per_commit": max(built),
        "no_change_compose_seconds": round(medians[2], 3),
        "no_change_affected_seconds": round(medians[3], 3),
        "no_change_affected_over_compose": ratio(medians[3], medians[2]),
    }


REPLAY_DOCKERFILES = {
    # node-like: dependencies, a build stage on top, a static server copying the bundle
    "web": """\
FROM {base} AS deps
WORKDIR /web-{nonce}
COPY package.txt ./
RUN cp package.txt installed.txt
FROM deps AS build
COPY src/ ./src/
RUN cat installed.txt src/* > bundle.txt
FROM {base}
COPY --from=build /web-{nonce}/bundle.txt /srv/bundle.txt
ARG GIT_COMMIT_HASH=unknown
RUN echo "$GIT_COMMIT_HASH" > /srv/version
""",
    # go-like: the builder embeds the commit in the binary, the final image is the binary
    "api": """\
FROM {base} AS builder
WORKDIR /api-{nonce}
COPY go.mod ./
RUN cp go.mod downloaded.txt
COPY . .
ARG GIT_COMMIT_HASH=unknown
RUN cat downloaded.txt main.txt > app && echo "$GIT_COMMIT_HASH" >> app
FROM {base}
COPY --from=builder /api-{nonce}/app /app
""",
    # context: . (the project root) with a .dockerignore, an arg from .env, an ENV
    "worker": """\
FROM {base}
ENV MODE=batch
WORKDIR /worker-{nonce}
COPY worker/ ./
ARG LEVEL=1
RUN echo "level $LEVEL $MODE" > level.txt
""",
    # build.target: a stage before the last
    "docs": """\
FROM {base} AS docs
WORKDIR /docs-{nonce}
COPY pages/ ./
RUN cat *.txt > site.txt
FROM docs AS unused
RUN echo never built
""",
}


def replay_commits(root: Path, base: str) -> list[tuple[str, Callable[[], None]]]:
    """The scripted history: each entry changes one input (or nothing) and commits."""

    def write(relative: str, text: str) -> Callable[[], None]:
        def change() -> None:
            (root / relative).write_text(text)

        return change

    def edit(relative: str, old: str, new: str) -> Callable[[], None]:
        def change() -> None:
            path = root / relative
            path.write_text(path.read_text().replace(old, new))

        return change

    def retag_base() -> None:
        sh(["docker", "run", "--name", f"{root.name}-base", base, "touch", "/new"], root)
        sh(["docker", "commit", f"{root.name}-base", base], root)
        sh(["docker", "rm", "-f", f"{root.name}-base"], root)

    return [
        ("first build", lambda: None),
        ("new commit, nothing changed", lambda: None),
        ("a web source file", write("web/src/app.txt", "app v2\n")),
        ("the api's dependency list", write("api/go.mod", "module api v2\n")),
        ("a file .dockerignore excludes", write("worker/notes.md", "notes v2\n")),
        ("an arg from .env", write(".env", "LEVEL=3\n")),
        ("a RUN line in a Dockerfile", edit("docs/Dockerfile", "cat *.txt", "cat -n *.txt")),
        ("a docs page", write("docs/pages/b.txt", "page b\n")),
        ("the base image re-tagged", retag_base),
        ("a step added mid-Dockerfile", edit("api/Dockerfile", "COPY . .", "RUN true\nCOPY . .")),
        ("an untracked file (no commit)", write("web/src/untracked.txt", "new\n")),
        ("a compose arg", edit("compose.yaml", "MODE_ARG: a", "MODE_ARG: b")),
    ]


def prediction_replay(base: Path, nonce: str, registry: str = "") -> dict[str, Any]:
    """Replay a scripted history of commits on a four-service project (multi-stage, ``context:
    .``, ``build.target``, args from ``.env``) with ``invoke build``, and count the service
    builds whose prediction (which steps rebuild, how many come from cache) was exact.

    With ``registry`` each commit is built by a fresh runner: ``invoke build --push --affected``
    (unchanged services re-tagged in the registry, the rest built) with none
    of the project's images, an empty builder cache and no cache folder, so the prediction has
    only what the previous commit's runner pushed (its labels and cache manifests)."""
    fresh = "fresh" if registry else ""
    root = base / f"replay{fresh}{nonce}"
    image = f"benchbase{fresh}{nonce}:1"
    sh(["docker", "tag", BASE_IMAGE, image], base)
    for service, text in REPLAY_DOCKERFILES.items():
        folder = root / ("docs" if service == "docs" else service)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Dockerfile").write_text(text.format(base=image, nonce=nonce))
    # contents unique to the run: BuildKit matches COPY --from by content, across projects
    (root / "web" / "package.txt").write_text(f"left-pad {nonce}\n")
    (root / "web" / "src").mkdir()
    (root / "web" / "src" / "app.txt").write_text("app v1\n")
    (root / "api" / "go.mod").write_text(f"module api{nonce}\n")
    (root / "api" / "main.txt").write_text("package main\n")
    (root / "worker" / "job.txt").write_text("job\n")
    (root / "worker" / "notes.md").write_text("notes\n")
    (root / ".dockerignore").write_text("**/*.md\n.git\n")
    (root / "docs" / "pages").mkdir(parents=True)
    (root / "docs" / "pages" / "a.txt").write_text("page a\n")
    (root / ".env").write_text("LEVEL=2\n")
    (root / "compose.yaml").write_text(
        f"name: {root.name}\nservices:\n"
        "  web:\n    build: ./web\n"
        "  api:\n    build: ./api\n"
        "  worker:\n    build:\n      context: .\n      dockerfile: worker/Dockerfile\n"
        "      args:\n        LEVEL: ${LEVEL}\n        MODE_ARG: a\n"
        "  docs:\n    build:\n      context: ./docs\n      target: docs\n"
    )
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    sh(["git", "init", "-q"], root)
    env = {**clean_env(), "XDG_CACHE_HOME": str(base / f"replay{fresh}-cache")}
    prefix = f"{registry}/{root.name}"
    mine = [f"{root.name}-*", f"{prefix}/*"]
    argv = invoke_argv("build", "--json", *(["--push", "--affected"] if registry else []))
    builds: list[dict[str, Any]] = []
    try:
        for number, (title, change) in enumerate(replay_commits(root, image)):
            change()
            if "no commit" not in title:
                sh(["git", "add", "-A"], root)
                sh([*git, "commit", "--allow-empty", "-qm", title], root)
            if registry:  # a new runner: only the registry and the base image
                remove_images(mine, root, root.name)
                prune_builder(root)
                cache = str(base / f"replay{fresh}-cache-{number}")
                env = {**env, "XDG_CACHE_HOME": cache, "INVOKE_STACK_REGISTRY": prefix}
            done = sh(argv, root, env)
            for row in json.loads(done.stdout)["result"]["services"]:
                if row["exact"] is None:
                    continue
                predicted = row["predicted"]
                builds.append(
                    {
                        "commit": title,
                        "service": row["service"],
                        "exact": row["exact"],
                        "predicted": f"{predicted['cached']}/{predicted['steps']}",
                        "actual": f"{row['cached']}/{row['steps']}",
                        "predicted_rebuilt": predicted["rebuilt"],
                        "rebuilt": row["rebuilt_steps"],
                    }
                )
    finally:
        remove_images(mine, root, root.name)
        sh(["docker", "rmi", image], base)  # the tag only: the first one is busybox's image
    exact = sum(build["exact"] for build in builds)
    return {
        "commits": len(replay_commits(root, image)),
        "service_builds": len(builds),
        "exact": exact,
        "exact_ratio": ratio(exact, len(builds)),
        "missed": [build for build in builds if not build["exact"]],
    }


def ratio(top: float, bottom: float) -> float:
    return round(top / bottom, 2) if bottom else float("nan")


def summarize(
    cells: dict[str, dict[str, Cell]], multi: dict[str, dict[str, Cell]]
) -> dict[str, float]:
    return {
        "invoke_over_seed_fresh_runner": ratio(
            cells["invoke"]["fresh-runner"].median, cells["seed"]["fresh-runner"].median
        ),
        "multi_invoke_over_seed_builder_pruned": ratio(
            multi["invoke"]["builder-pruned"].median, multi["seed"]["builder-pruned"].median
        ),
        "multi_invoke_over_seed_fresh_runner": ratio(
            multi["invoke"]["fresh-runner"].median, multi["seed"]["fresh-runner"].median
        ),
        "multi_cold_invoke_over_seed": ratio(
            multi["invoke"]["cold"].median, multi["seed"]["cold"].median
        ),
        "seed_warm_over_cold": ratio(
            cells["seed"]["no-change"].median, cells["seed"]["cold"].median
        ),
        "invoke_warm_over_cold": ratio(
            cells["invoke"]["no-change"].median, cells["invoke"]["cold"].median
        ),
        "invoke_over_seed_no_change": ratio(
            cells["invoke"]["no-change"].median, cells["seed"]["no-change"].median
        ),
        "invoke_over_seed_builder_pruned": ratio(
            cells["invoke"]["builder-pruned"].median, cells["seed"]["builder-pruned"].median
        ),
    }


def markdown(
    meta: dict[str, str], fixtures: dict[str, dict[str, dict[str, Cell]]],
    ratios: dict[str, float], plan: dict[str, float | int], repeats: int,
    affected: dict[str, float | int], replay: dict[str, Any],
) -> str:  # fmt: skip
    lines = [
        f"# Build benchmark ({meta['date']})",
        "",
        f"{meta['engine']}, {meta['compose']}, {meta['cpus']} CPUs. Fixture: {len(SERVICES)} "
        f"services, dependency step sleeps {DEPENDENCY_SECONDS} s, code layer after "
        f"ARG GIT_COMMIT_HASH. Wall time is the median of {repeats} runs; steps are cached/total "
        "over both services (FROM not counted).",
        "",
        "| fixture | scenario | seed config, raw compose | cached | invoke build | cached |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for fixture, cells in fixtures.items():
        for key, title in SCENARIOS:
            seed, ours = cells["seed"][key], cells["invoke"][key]
            lines.append(
                f"| {fixture} | {title} | {seed.median:.2f} s | {seed.steps} | "
                f"{ours.median:.2f} s | {ours.steps} |"
            )
    lines += [
        "",
        "| ratio | value |",
        "|---|---:|",
        f"| warm/cold, seed (no change ÷ cold) | {ratios['seed_warm_over_cold']} |",
        f"| warm/cold, invoke build | {ratios['invoke_warm_over_cold']} |",
        f"| invoke/seed, no-change build | {ratios['invoke_over_seed_no_change']} |",
        f"| invoke/seed, builder pruned | {ratios['invoke_over_seed_builder_pruned']} |",
        f"| invoke/seed, fresh runner | {ratios['invoke_over_seed_fresh_runner']} |",
        "| multi-stage: invoke/seed, builder pruned | "
        f"{ratios['multi_invoke_over_seed_builder_pruned']} |",
        "| multi-stage: invoke/seed, fresh runner | "
        f"{ratios['multi_invoke_over_seed_fresh_runner']} |",
        "| multi-stage: invoke/seed, cold (cost of the stage cache targets) | "
        f"{ratios['multi_cold_invoke_over_seed']} |",
        "",
        f"Planning a generated {plan['services']}-service project (`invoke build --dry-run "
        "--json`: settings, git, the resolved project, one image lookup for every ref, Dockerfile "
        f"lint, the JSON plan): {plan['plan_seconds']:.2f} s reusing the resolved project, "
        f"{plan['plan_cold_seconds']:.2f} s when compose config must run, against "
        f"{plan['compose_config_seconds']:.2f} s for one `docker compose config` (ratios "
        f"{plan['plan_over_config']} and {plan['plan_cold_over_config']}). Starting the tasks "
        f"and doing nothing (`invoke --list`: Python, invoke, the task modules) takes "
        f"{plan['startup_seconds']:.2f} s.",
        "",
        f"Affected-only builds: {affected['services']} services, each new commit changing one. "
        f"`invoke build --affected` {affected['affected_seconds']:.2f} s (built "
        f"{affected['built_per_commit']} service, re-tagged the rest) against "
        f"{affected['compose_seconds']:.2f} s for raw `docker compose build` (ratio "
        f"{affected['affected_over_compose']}); a new commit that changes nothing: "
        f"{affected['no_change_affected_seconds']:.2f} s (compose not run) against "
        f"{affected['no_change_compose_seconds']:.2f} s (ratio "
        f"{affected['no_change_affected_over_compose']}).",
        "",
        f"Prediction: {replay['commits']} scripted commits (each changing one input: a source "
        "file, a dependency list, an ignored file, an arg from `.env`, a RUN line, the base "
        "image, a step added, an untracked file, a compose arg) on four services (multi-stage, "
        "`context: .`, `build.target`): the plan's prediction (which steps rebuild, how many "
        f"come from cache) was exact for {replay['exact']} of {replay['service_builds']} service "
        f"builds ({replay['exact_ratio']:.0%}).",
        *missed(replay),
        "",
        "Where a warm no-change `invoke build` spends its time (single fixture, medians; "
        "`timings` of `invoke build --json`, the rest is process start, imports and exit):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *breakdown(fixtures["single"]["invoke"]["no-change"]),
    ]
    return "\n".join(lines) + "\n"


def missed(replay: dict[str, Any]) -> list[str]:
    """One line per service build the prediction missed."""
    return [
        f"- missed: {m['commit']}, {m['service']}: predicted {m['predicted']} cached "
        f"(rebuilt {', '.join(m['predicted_rebuilt']) or 'nothing'}), got {m['actual']} "
        f"(rebuilt {', '.join(m['rebuilt']) or 'nothing'})"
        for m in replay["missed"]
    ]


def replay_lines(replay: dict[str, Any]) -> list[str]:
    """The fresh-runner replay: its accuracy and misses."""
    return [
        f"Prediction on fresh runners: the same {replay['commits']} commits, each built and "
        "pushed (`invoke build --push --affected`) by a new runner with only the registry and "
        "the base image (no image of the project, empty builder cache, no cache folder): exact for "
        f"{replay['exact']} of {replay['service_builds']} service builds "
        f"({replay['exact_ratio']:.0%}).",
        *missed(replay),
    ]


def breakdown(cell: Cell) -> list[str]:
    """Table rows: the median of each phase, and of the wall time outside them."""
    phases = list(cell.samples[0].timings)
    rows = []
    for phase in phases:
        rows.append(
            f"| {phase} | {statistics.median(s.timings[phase] for s in cell.samples):.3f} |"
        )
    rest = statistics.median(s.seconds - sum(s.timings.values()) for s in cell.samples)
    rows.append(f"| process start, imports, settings, exit | {rest:.3f} |")
    rows.append(f"| total (wall) | {cell.median:.3f} |")
    return rows


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


def compare_engines(names: Sequence[str], args: argparse.Namespace) -> None:
    """The whole benchmark on each engine, one after another, and one side-by-side table."""
    results: dict[str, dict[str, object]] = {}
    for name in names:
        out = args.out / "engines" / name
        child = [
            sys.executable, __file__, "--repeats", str(args.repeats), "--services",
            str(args.services), "--registry", args.registry, "--out", str(out),
            *(["--only", args.only] if args.only else []),
        ]  # fmt: skip
        if name != "host":
            child = ["bash", str(ROOT / "scripts" / "engines.sh"), "run", name, *child]
        print(f"bench: engine {name}", file=sys.stderr)
        done = subprocess.run(child, stdout=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            sys.exit(f"bench: the run on engine {name} failed ({done.returncode})")
        newest = max(out.glob("bench-*.json"))
        results[name] = json.loads(newest.read_text())
    text = fresh_side_by_side(results) if args.only else side_by_side(results, args.repeats)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"engines-{stamp}.md").write_text(text)
    (args.out / f"engines-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    print(f"bench: wrote {args.out / f'engines-{stamp}.md'} and .json", file=sys.stderr)


def fresh_side_by_side(results: dict[str, Any]) -> str:
    """The fresh-runner scenario per engine, one row per engine and configuration."""
    lines = [
        f"# Fresh runner on {len(results)} engines ({time.strftime('%Y-%m-%d')})",
        "",
        f"{fresh_runner.SERVICES} services, one changed; another runner built and pushed them "
        "before; this runner has only the registry. Medians.",
        "",
        "| engine | configuration | services built | bytes pulled, unchanged | bytes pulled, "
        "changed | time | predicted exactly |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, data in results.items():
        found = data["fresh_runner"]
        for config in ("seed", "invoke"):
            row = found[config]
            samples = row["samples"]
            exact = sum(s["predicted_exactly"] for s in samples)
            predicted = f"{exact}/{sum(s['built'] for s in samples)}" if config == "invoke" else "-"
            lines.append(
                f"| {name} ({data['meta'].get('store', '?')}) | {config} | {row['built']:.0f} | "
                f"{row['unchanged_bytes']:.0f} | {row['changed_bytes']:.0f} | "
                f"{row['seconds']:.2f} s | {predicted} |"
            )
    lines += ["", "Prediction on fresh runners, the scripted commits (each built by a new runner):"]
    for name, data in results.items():
        replay = data["prediction_fresh_runner"]
        lines.append(f"- {name}: {replay['exact']} of {replay['service_builds']} exact")
        lines += [f"  {line}" for line in missed(replay)]
    return "\n".join(lines) + "\n"


def side_by_side(results: dict[str, Any], repeats: int) -> str:
    """One row per scenario, the seed's and invoke's time and cached steps per engine."""
    names = list(results)
    lines = [f"# Build benchmark on {len(names)} engines ({time.strftime('%Y-%m-%d')})", ""]
    for name in names:
        meta = results[name]["meta"]
        lines.append(
            f"- **{name}**: {meta['engine']}, {meta.get('store', '?')}, {meta.get('buildx', '?')}, "
            f"{meta['compose']}"
        )
    lines += [
        "",
        f"Wall time: median of {repeats} runs; cached/total steps over both services.",
        "",
        "| fixture | scenario | "
        + " | ".join(f"{n}: seed | {n}: invoke build" for n in names)
        + " |",
        "|---|---|" + "---:|---:|" * len(names),
    ]
    for fixture in FIXTURES:
        for key, title in SCENARIOS:
            cells = []
            for name in names:
                for config in CONFIGS:
                    samples = results[name]["builds"][fixture][config][key]
                    median = results[name]["medians"][fixture][config][key]
                    steps = " or ".join(sorted({f"{s['cached']}/{s['total']}" for s in samples}))
                    cells.append(f"{median:.2f} s, {steps}")
            lines.append(f"| {fixture} | {title} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in results[names[0]]["ratios"]:
        lines.append(
            f"| {key} | " + " | ".join(str(results[n]["ratios"][key]) for n in names) + " |"
        )
    plan_keys = ("plan_over_config", "startup_seconds")
    for key in plan_keys:
        lines.append(f"| {key} | " + " | ".join(str(results[n]["plan"][key]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def only_fresh_runner(args: argparse.Namespace) -> None:
    """The fresh-runner scenario alone (``benchmarks/fresh_runner.py``), on its own registry."""
    nonce = uuid.uuid4().hex[:8]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **engine_meta()}
    with tempfile.TemporaryDirectory(prefix="compose-tasks-bench-") as tmp:
        base = Path(tmp)
        hub = RecordingRegistry(base)
        result = fresh_runner.measure(
            base, nonce, args.repeats, hub, sh, invoke_argv, clean_env(), quiet_remove
        )
        print("bench: replaying scripted commits, each on a fresh runner", file=sys.stderr)
        replay = prediction_replay(base, nonce, hub.address)
    text = "\n".join([f"# Fresh runner ({meta['date']}, {meta['engine']})", "",
                      *fresh_runner.table(result), "", *replay_lines(replay)]) + "\n"  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"bench-{stamp}.md").write_text(text)
    data = {"meta": meta, "fresh_runner": result, "prediction_fresh_runner": replay}
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


def quiet_remove(patterns: list[str], cwd: Path) -> None:
    remove_images(patterns, cwd)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--services", type=int, default=100, help="size of the planning fixture")
    parser.add_argument("--registry", default=REGISTRY, help=f"registry host (default {REGISTRY})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output folder")
    parser.add_argument(
        "--only",
        choices=["fresh-runner"],
        help="run one scenario alone: fresh-runner (a runner with only a registry, one of four "
        "services changed: services built, bytes pulled, time; then the scripted commits, "
        "each built by a fresh runner: the prediction's accuracy)",
    )
    parser.add_argument(
        "--engines",
        default="",
        help="compare engines side by side: host and scripts/engines.sh names, comma separated "
        "(e.g. host,containerd,classic)",
    )
    args = parser.parse_args(argv)
    if args.engines:
        compare_engines([name.strip() for name in args.engines.split(",") if name.strip()], args)
        return
    if args.repeats < 1 or args.services < 1:
        parser.error("--repeats and --services must be at least 1")
    if args.only == "fresh-runner":
        only_fresh_runner(args)
        return
    print("bench: prunes the engine's whole builder cache between scenarios", file=sys.stderr)
    nonce = uuid.uuid4().hex[:8]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **engine_meta(),
        "cpus": str(os.cpu_count()),
        "python": platform.python_version(),
    }
    fixtures = {
        fixture: {c: {k: Cell() for k, _ in SCENARIOS} for c in CONFIGS} for fixture in FIXTURES
    }
    with tempfile.TemporaryDirectory(prefix="compose-tasks-bench-") as tmp:
        base = Path(tmp)
        stacks = [
            (f, c, Stack(base, c, nonce, f, args.registry)) for f in FIXTURES for c in CONFIGS
        ]
        try:
            for run in range(args.repeats):
                for fixture, config, stack in stacks:
                    print(
                        f"bench: run {run + 1}/{args.repeats}, {fixture}, {config}", file=sys.stderr
                    )
                    for key, sample in run_scenarios(stack).items():
                        fixtures[fixture][config][key].samples.append(sample)
            print(f"bench: planning {args.services} services", file=sys.stderr)
            plan = plan_time(base, nonce, args.services, args.repeats)
            print(f"bench: affected-only builds of {AFFECTED_SERVICES} services", file=sys.stderr)
            affected = affected_time(base, nonce, args.repeats)
            print("bench: replaying scripted commits against the build prediction", file=sys.stderr)
            replay = prediction_replay(base, nonce)
        finally:
            for _, _, stack in stacks:
                stack.remove_images()
    ratios = summarize(fixtures["single"], fixtures["multi"])
    text = markdown(meta, fixtures, ratios, plan, args.repeats, affected, replay)
    data = {
        "meta": meta,
        "repeats": args.repeats,
        "fixture": {"services": list(SERVICES), "dependency_seconds": DEPENDENCY_SECONDS},
        "builds": {
            fixture: {
                config: {key: [asdict(s) for s in cell.samples] for key, cell in scenarios.items()}
                for config, scenarios in cells.items()
            }
            for fixture, cells in fixtures.items()
        },
        "medians": {
            fixture: {
                config: {key: round(cell.median, 3) for key, cell in scenarios.items()}
                for config, scenarios in cells.items()
            }
            for fixture, cells in fixtures.items()
        },
        "ratios": ratios,
        "plan": plan,
        "affected": affected,
        "prediction": replay,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"bench-{stamp}.md").write_text(text)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)
    print(f"bench: wrote {args.out / f'bench-{stamp}.md'} and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
