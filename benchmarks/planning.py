"""Planning a generated 100-service project against one ``docker compose config``."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from benchmarks.builds import DOCKERFILE
from benchmarks.harness import clean_env, invoke_argv, ratio, remove_images, sh, timed


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
    config, cold, warm, startup, bare, ours = [], [], [], [], [], []
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
            bare.append(timed([sys.executable, "-c", "import invoke"], root, env)[0])
            ours.append(timed([sys.executable, "-c", "import compose_tasks.app"], root, env)[0])
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
        "import_invoke_seconds": round(statistics.median(bare), 3),
        "import_tasks_seconds": round(statistics.median(ours), 3),  # invoke's included
        "startup_over_import_seconds": round(
            statistics.median(startup) - statistics.median(bare), 3
        ),
    }
