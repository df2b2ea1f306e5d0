"""Replaying a series of commits and comparing the predicted cache hits with the build's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BASE_IMAGE,
    clean_env,
    invoke_argv,
    prune_builder,
    ratio,
    remove_images,
    sh,
)

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
