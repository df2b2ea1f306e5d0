"""The build scenarios: the seed's configuration (raw ``docker compose build``) against
``invoke build`` on the fixture stacks, cold, warm and after changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.harness import (
    BASE_IMAGE,
    REGISTRY,
    Sample,
    by_kind,
    clean_env,
    invoke_argv,
    prune_builder,
    remove_images,
    sh,
    timed,
)
from compose_tasks.docker.progress import BuildProgress

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
        return Sample(seconds, cached, total, data["timings"], by_kind(data.get("calls", [])))


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
