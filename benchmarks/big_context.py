"""A monorepo-sized project: 30 services built from one context of 10,000 files, beside a
200 MB ``node_modules`` that ``.dockerignore`` (and ``.gitignore``) leave out. A commit that
changes nothing, and one that changes one file of one service: ``invoke build`` against raw
``docker compose build`` on the same builder. The tool must not read every file each time."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

from benchmarks.harness import BASE_IMAGE, clean_env, invoke_argv, ratio, remove_images, sh, timed

BIG_SERVICES = 30
FILES = 10_000  # in the shared context, spread over the services' folders and a shared one
MODULES_BYTES = 200 * 1024 * 1024  # node_modules, ignored by the build and by git
MODULE_FILE = 100 * 1024

BIG_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY services/{name}/deps.txt ./
ARG GIT_COMMIT_HASH=unknown
COPY shared/ ./shared/
COPY services/{name}/ ./
"""


def write_project(root: Path, name: str) -> None:
    """The monorepo: ``services/sNN`` (a Dockerfile, deps and sources), ``shared/``, and
    ``node_modules`` of random bytes; every service's context is the repository's root."""
    per = FILES // (BIG_SERVICES + 1)
    compose = f"name: {name}\nservices:\n"
    for index in range(BIG_SERVICES):
        service = f"s{index:02d}"
        folder = root / "services" / service
        (folder / "src").mkdir(parents=True)
        (folder / "Dockerfile").write_text(BIG_DOCKERFILE.format(base=BASE_IMAGE, name=service))
        (folder / "deps.txt").write_text(f"deps of {service}\n")
        for number in range(per - 2):
            (folder / "src" / f"f{number:04d}.txt").write_text(f"{service} {number}\n")
        compose += (
            f"  {service}:\n    build:\n      context: .\n"
            f"      dockerfile: services/{service}/Dockerfile\n"
        )
    (root / "shared").mkdir()
    for number in range(FILES - per * BIG_SERVICES + 2 * BIG_SERVICES):
        (root / "shared" / f"lib{number:04d}.txt").write_text(f"shared {number}\n")
    modules = root / "node_modules"
    for number in range(MODULES_BYTES // MODULE_FILE):
        package = modules / f"pkg{number // 50:03d}"
        package.mkdir(parents=True, exist_ok=True)
        (package / f"m{number:04d}.js").write_bytes(os.urandom(MODULE_FILE))
    (root / ".dockerignore").write_text("node_modules\n.git\n")
    (root / ".gitignore").write_text("node_modules/\n")
    (root / "compose.yaml").write_text(compose)


def table(result: dict[str, float | int]) -> list[str]:
    """The scenario as a markdown table."""
    return [
        f"Monorepo: {result['services']} services on one context of {result['files']} files, "
        f"{result['ignored_mb']} MB of node_modules ignored; {result['built_per_commit']} "
        "service(s) built by invoke per one-file commit.",
        "",
        "| build | raw compose | invoke build | invoke / compose |",
        "|---|---|---|---|",
        f"| cold | {result['cold_compose_seconds']:.2f} s | {result['cold_invoke_seconds']:.2f} s "
        f"| {ratio(float(result['cold_invoke_seconds']), float(result['cold_compose_seconds']))} |",
        f"| no change | {result['no_change_compose_seconds']:.2f} s "
        f"| {result['no_change_invoke_seconds']:.2f} s | {result['no_change_over_compose']} |",
        f"| one file of one service changed | {result['one_changed_compose_seconds']:.2f} s "
        f"| {result['one_changed_invoke_seconds']:.2f} s | {result['one_changed_over_compose']} |",
    ]


def big_context_time(base: Path, nonce: str, repeats: int) -> dict[str, float | int]:
    """No-change and one-service-changed builds of the monorepo: medians and ratios."""
    root = base / "big-context"
    root.mkdir(parents=True)
    name = f"benchbig{nonce}"
    write_project(root, name)
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    sh(["git", "init", "-q"], root)
    env = {**clean_env(), "XDG_CACHE_HOME": str(base / "big-context-cache")}
    changed = root / "services" / "s07" / "src" / "f0001.txt"

    def commit(run: int, change: bool) -> None:
        if change:
            changed.write_text(f"changed in run {run}\n")
        sh(["git", "add", "-A"], root)
        sh([*git, "commit", "--allow-empty", "-qm", f"run {run}"], root)

    compose = ["docker", "compose", "build"]
    ours = invoke_argv("build", "--json")
    raw_same, ours_same, raw_one, ours_one, built = [], [], [], [], []
    try:
        commit(0, False)
        cold_raw = timed(compose, root, env)[0]
        cold_ours = timed(ours, root, env)[0]
        for run in range(1, repeats + 1):
            raw_same.append(timed(compose, root, env)[0])
            ours_same.append(timed(ours, root, env)[0])
            commit(run, True)
            raw_one.append(timed(compose, root, env)[0])
            seconds, done = timed(ours, root, env)
            ours_one.append(seconds)
            rows = json.loads(done.stdout)["result"]["services"]
            built.append(sum(not (row["reused"] or row["remote"]) for row in rows))
    finally:
        remove_images([f"{name}-*"], root, name)
    medians = [statistics.median(times) for times in (raw_same, ours_same, raw_one, ours_one)]
    return {
        "services": BIG_SERVICES,
        "files": FILES,
        "ignored_mb": MODULES_BYTES // (1024 * 1024),
        "cold_compose_seconds": round(cold_raw, 3),
        "cold_invoke_seconds": round(cold_ours, 3),
        "no_change_compose_seconds": round(medians[0], 3),
        "no_change_invoke_seconds": round(medians[1], 3),
        "no_change_over_compose": ratio(medians[1], medians[0]),
        "one_changed_compose_seconds": round(medians[2], 3),
        "one_changed_invoke_seconds": round(medians[3], 3),
        "one_changed_over_compose": ratio(medians[3], medians[2]),
        "built_per_commit": max(built),
    }
