"""Re-tagging instead of building (``--affected``): a commit that changes one service of many."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks.harness import BASE_IMAGE, clean_env, invoke_argv, ratio, remove_images, sh, timed

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
    # raw compose under a project of its own: its images do not take the tool's tags (each
    # side as a team would run it, alone), the builder cache is the same
    compose = ["docker", "compose", "-p", f"{name}raw", "build"]
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
        remove_images([f"{name}raw-*"], root, f"{name}raw")
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
