"""The fresh-runner scenario: a runner that starts with nothing but a registry.

Four services, each with a 4 MB dependency layer behind a slow step, built and pushed by one
runner; then one service changes and a second runner (none of the project's images, an empty
builder cache, no cache folder) builds and pushes again. The seed's configuration (raw
``docker compose build`` with ``cache_from: <image>:latest`` and inline cache, then ``docker
compose push``) against ``invoke build --push --affected``: services built, bytes of the
unchanged services' layers the registry served, bytes of every blob of the changed one (its
own request log), and the wall time.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compose_tasks.docker import registry

SERVICES = 4
DOCKERFILE = """\
FROM busybox:1.36
COPY deps.txt /deps.txt
RUN head -c 4000000 /dev/urandom > /dependency.bin && sleep 2
ARG GIT_COMMIT_HASH=unknown
COPY main.txt /main.txt
"""
Run = Callable[[list[str], Path, dict[str, str]], subprocess.CompletedProcess[str]]


def _project(root: Path, name: str, seed_registry: str) -> None:
    """The fixture; with ``seed_registry`` the seed's compose file (cache_from its own
    ``:latest`` in the registry, inline cache), else a plain one for the tool."""
    services = ""
    for index in range(SERVICES):
        folder = root / f"s{index}"
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text(DOCKERFILE)
        (folder / "deps.txt").write_text(f"deps {index} {name}\n")
        (folder / "main.txt").write_text("v0\n")
        if seed_registry:
            image = f"{seed_registry}/{name}-s{index}:latest"
            services += (
                f"  s{index}:\n    image: {image}\n    build:\n      context: ./s{index}\n"
                f"      cache_from: [{image}]\n      args: {{BUILDKIT_INLINE_CACHE: '1'}}\n"
            )
        else:
            services += f"  s{index}:\n    build: ./s{index}\n"
    (root / "compose.yaml").write_text(f"name: {name}\nservices:\n{services}")


def measure(
    base: Path,
    nonce: str,
    repeats: int,
    hub: Any,
    run: Run,
    invoke_argv: Callable[..., list[str]],
    env: dict[str, str],
    remove_images: Callable[[list[str], Path], None],
) -> dict[str, Any]:
    """The scenario for both configurations, ``repeats`` times each; medians and counts.
    ``hub`` is a registry that logs its requests (``blob_bytes``, ``start_counting``)."""
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid"]
    out: dict[str, Any] = {}
    for config in ("seed", "invoke"):
        rows: list[dict[str, float | int]] = []
        for repeat in range(repeats):
            name = f"bfr{config[0]}{nonce}{repeat}"
            root = base / f"fresh-{config}-{repeat}"
            prefix = f"{hub.address}/{name}"
            _project(root, name, prefix if config == "seed" else "")
            run(["git", "init", "-q"], root, env)
            run(["git", "add", "-A"], root, env)
            run([*git, "commit", "-qm", "four services"], root, env)
            cache = {"XDG_CACHE_HOME": str(base / f"fresh-cache-{config}-{repeat}")}
            tool = {**env, **cache, "INVOKE_STACK_REGISTRY": prefix}
            if config == "seed":
                steps = [["docker", "compose", "build"], ["docker", "compose", "push"]]
            else:
                steps = [invoke_argv("build", "--push", "--affected", "--json")]
            for argv in steps:  # runner A
                run(argv, root, tool)
            (root / "s0" / "main.txt").write_text("v1\n")  # one service changes
            run([*git, "commit", "-qam", "s0 changed"], root, env)
            remove_images([f"{prefix}/*", f"{name}-*"], root)  # runner B: nothing local
            run(["docker", "builder", "prune", "-af"], root, env)
            tool = {**tool, "XDG_CACHE_HOME": str(base / f"fresh-cache-b-{config}-{repeat}")}
            hub.start_counting()
            start = time.perf_counter()
            built, exact = SERVICES, 0
            for argv in steps:
                done = run(argv, root, tool)
                if config == "invoke":
                    result = json.loads(done.stdout)["result"]["services"]
                    built = sum(not (row["remote"] or row["reused"]) for row in result)
                    exact = sum(row["exact"] is True for row in result)
            seconds = time.perf_counter() - start
            unchanged = 0  # the layers of the images the unchanged services ran before
            for index in range(1, SERVICES):
                ref = f"{prefix}/{name}-s{index}:latest"
                unchanged += hub.blob_bytes(f"/{name}-s{index}/", registry.layers(ref))
            rows.append(
                {
                    "seconds": round(seconds, 2),
                    "built": built,
                    "unchanged_bytes": unchanged,
                    "changed_bytes": hub.blob_bytes(f"/{name}-s0/"),  # layers and config
                    "predicted_exactly": exact,  # of the services built (invoke only)
                }
            )
            remove_images([f"{prefix}/*", f"{name}-*"], root)
        out[config] = {key: statistics.median(row[key] for row in rows) for key in rows[0]} | {
            "samples": rows
        }
    out["invoke_over_seed"] = round(out["invoke"]["seconds"] / out["seed"]["seconds"], 2)
    return out


def table(result: dict[str, Any]) -> list[str]:
    """The scenario's Markdown table."""
    lines = [
        f"Fresh runner ({SERVICES} services, one changed; built and pushed by another runner "
        "before; this runner has only the registry):",
        "",
        "| configuration | services built | bytes pulled, unchanged services | bytes pulled, "
        "changed service | time |",
        "|---|---:|---:|---:|---:|",
    ]
    for config, title in (("seed", "seed config (compose build + push)"), ("invoke", "invoke "
                          "build --push --affected")):  # fmt: skip
        row = result[config]
        lines.append(
            f"| {title} | {row['built']:.0f} | {row['unchanged_bytes']:.0f} | "
            f"{row['changed_bytes']:.0f} | {row['seconds']:.2f} s |"
        )
    exact = sum(row["predicted_exactly"] for row in result["invoke"]["samples"])
    built = sum(row["built"] for row in result["invoke"]["samples"])
    lines.append(f"\ninvoke ÷ seed, fresh runner: {result['invoke_over_seed']}")
    lines.append(f"prediction on the fresh runner: {exact} of {built} service builds exact")
    return lines
