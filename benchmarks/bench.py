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
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script

from benchmarks import big_context, fresh_runner
from benchmarks.affected import AFFECTED_SERVICES, affected_time
from benchmarks.builds import (
    CONFIGS,
    DEPENDENCY_SECONDS,
    FIXTURES,
    SCENARIOS,
    SERVICES,
    Stack,
    run_scenarios,
)
from benchmarks.harness import (
    REGISTRY,
    ROOT,
    Cell,
    clean_env,
    engine_meta,
    invoke_argv,
    quiet_remove,
    sh,
)
from benchmarks.planning import plan_time
from benchmarks.replay import prediction_replay, replay_lines
from benchmarks.tables import (
    big_context_side_by_side,
    composed,
    fresh_side_by_side,
    markdown,
    medians,
    side_by_side,
    summarize,
)
from tests.support import RecordingRegistry  # a registry that logs requests


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
    if args.only == "big-context":
        text = big_context_side_by_side(results)
    elif args.only == "fresh-runner":
        text = fresh_side_by_side(results)
    else:
        text = side_by_side(results, args.repeats)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"engines-{stamp}.md").write_text(text)
    (args.out / f"engines-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    print(f"bench: wrote {args.out / f'engines-{stamp}.md'} and .json", file=sys.stderr)


def only_big_context(args: argparse.Namespace) -> None:
    """The monorepo scenario alone (``benchmarks/big_context.py``)."""
    nonce = uuid.uuid4().hex[:8]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **engine_meta()}
    with tempfile.TemporaryDirectory(prefix="compose-tasks-bench-") as tmp:
        result = big_context.big_context_time(Path(tmp), nonce, args.repeats)
    title = f"# Monorepo context ({meta['date']}, {meta['engine']})"
    text = "\n".join([title, "", *big_context.table(result)]) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (args.out / f"bench-{stamp}.md").write_text(text)
    data = {"meta": meta, "big_context": result}
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    print(text)


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario (default 3)")
    parser.add_argument("--services", type=int, default=100, help="size of the planning fixture")
    parser.add_argument("--registry", default=REGISTRY, help=f"registry host (default {REGISTRY})")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results", help="output folder")
    parser.add_argument(
        "--only",
        choices=["fresh-runner", "big-context"],
        help="run one scenario alone: fresh-runner (a runner with only a registry, one of four "
        "services changed: services built, bytes pulled, time; then the scripted commits, "
        "each built by a fresh runner: the prediction's accuracy); big-context (30 services "
        "on one context of 10,000 files beside 200 MB of ignored node_modules: no-change and "
        "one-file builds against raw compose)",
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
    if args.only == "big-context":
        only_big_context(args)
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
        "medians": medians(fixtures),
        "composed": composed(fixtures),
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
