"""The work of ``invoke build`` (declared in ``build``): plan, write the override, run
``docker compose build``, promote, report."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from invoke.context import Context

from compose_tasks import mask, report
from compose_tasks.buildplan import pipeline
from compose_tasks.buildplan.model import BuildOptions
from compose_tasks.cli import settings_of
from compose_tasks.docker import engine, trace
from compose_tasks.docker.commands import display_argv
from compose_tasks.docker.runner import Runner
from compose_tasks.errors import CacheGate, Failed


def build(
    c: Context,
    service: list[str] | None = None,
    fresh: bool = False,
    pull: bool = False,
    dry_run: bool = False,
    json: bool = False,
    push: bool = False,
    affected: bool = False,
    rebuild: bool = False,
    require_cache: bool = False,
) -> None:
    """Build the compose project's images with a cache that survives a builder prune."""
    settings = settings_of(
        c,
        pull=pull or None,
        push=push or None,
        affected=affected or None,
        require_cache=require_cache or None,
    )
    docker, clock = engine.Engine(Runner()), pipeline.Clock()
    project = pipeline.resolve(settings, docker.runner, reuse=True, services=service or [])
    clock.lap("resolve")
    options = BuildOptions(
        services=tuple(service or []),
        fresh=fresh,
        pull=pull,
        affected=settings.affected,
        rebuild=rebuild,
    )
    prepared = pipeline.plan(project, docker, options)
    clock.lap("plan")
    plan = prepared.plan
    if dry_run:
        if json:
            report.emit_json({"plan": report.plan_data(plan)})
        else:
            report.say(report.dry_run_text(plan, display_argv(plan.build_argv())))
        return
    report.say(report.plan_text(plan), err=json)
    report.say(f"$ {display_argv(plan.build_argv())}", err=json)
    live = sys.stderr.isatty()
    result = pipeline.execute(
        prepared,
        lambda step: report.say(report.step_line(step), err=json),
        lambda step, seconds: report.say(report.running_line(step, seconds), err=True),
        every=5.0 if live else 15.0,
    )
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:  # GitHub Actions shows it on the job's page
        with Path(summary).open("a", encoding="utf-8") as file:
            file.write(mask.active().text(report.step_summary(plan, result)))
    if json:
        timings = {**clock.laps, **result.seconds}
        calls = [asdict(call) for call in trace.calls()]
        report.emit_json(
            {
                "plan": report.plan_data(plan),
                "result": asdict(result),
                "timings": timings,
                "calls": calls,
            }
        )
    else:
        report.say(report.build_summary(plan, result))
    if not result.ok:
        if result.push_failed:
            raise Failed("push failed: the images are built and tagged here, not in the registry")
        if result.engine_lost:
            raise Failed(docker.gone("build", ":latest not moved"))
        if result.disk_full:
            raise Failed(
                f"build failed ({result.culprits}): the engine's disk is full (no space left on "
                "device); :latest not moved, the caches kept; free space on the engine (docker "
                "system df; docker builder prune, or invoke clear-caches) and build again"
            )
        missing = pipeline.missing_bases(prepared)
        if missing:
            raise Failed(
                f"base image {', '.join(missing)} is not on this engine and could not be pulled: "
                "pull or load it where a registry is reachable (docker pull / docker load), or "
                "make local stand-ins (bash scripts/base-images.sh for the demo)"
            )
        raise Failed(f"build failed ({result.culprits}); :latest not moved")
    gate = pipeline.cache_gate(plan, result) if settings.require_cache else []
    if gate:
        raise CacheGate(f"{len(gate)} miss(es): {'; '.join(gate)}")
