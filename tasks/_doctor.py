"""The work of ``invoke doctor`` (declared in ``doctor``): can this machine and project build with
a working cache? A line a check."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit

from compose_tasks import report
from compose_tasks.buildplan import gitinfo, pipeline
from compose_tasks.buildplan.model import BuildOptions, BuildPlan, CacheSource, Status
from compose_tasks.buildplan.plan import select
from compose_tasks.cli import settings_of
from compose_tasks.docker import commands, compose, engine, registry
from compose_tasks.docker.builder import Builder, buildx_mismatch, buildx_version, parse_version
from compose_tasks.docker.refs import cache_entry
from compose_tasks.docker.runner import Runner
from compose_tasks.dockerfile.lint import Finding
from compose_tasks.dockerfile.reader import display_path
from compose_tasks.errors import EngineError, UserError
from compose_tasks.rollout import rolling
from compose_tasks.settings import Orchestrator, Settings

OVERRIDE_TAG_SINCE = (2, 24)  # compose's `!override` YAML tag, which the generated override uses
BAKE_SINCE = (2, 37)  # compose builds through `buildx bake` when buildx exists


class Verdict(StrEnum):
    """A check's result; ``skip``: an earlier failure makes it moot."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One result: ok, warn, fail (or skip when an earlier failure makes it moot)."""

    name: str
    status: Verdict
    detail: str
    remedy: str = ""


def check_engine(docker: engine.Engine) -> tuple[Check, bool]:
    """The engine answers, and which version it runs: (check, reachable)."""
    try:
        version = docker.sdk.version()
    except (UserError, EngineError) as exc:
        return Check("engine", Verdict.FAIL, str(exc), "start dockerd, or set DOCKER_HOST"), False
    host = docker.host or "the default socket"
    detail = f"Docker Engine {version.get('Version')} (API {version.get('ApiVersion')}) at {host}"
    return Check("engine", Verdict.OK, detail), True


def check_compose(runner: Runner) -> tuple[Check, tuple[int, ...]]:
    try:
        text = compose.version(runner)
    except UserError as exc:
        return Check("compose", Verdict.FAIL, str(exc), "install Compose v2"), ()
    found = parse_version(text)
    if found < OVERRIDE_TAG_SINCE:
        need = ".".join(map(str, OVERRIDE_TAG_SINCE))
        return (
            Check(
                "compose",
                Verdict.FAIL,
                f"Compose {text} is older than {need}, which the generated override needs",
                f"upgrade Compose to {need} or newer",
            ),
            found,
        )
    return Check("compose", Verdict.OK, f"Compose {text}"), found


def check_buildx(compose_version: tuple[int, ...], runner: Runner) -> Check:
    done = runner.run(commands.buildx_version())
    if not done.ok:
        return Check(
            "buildx",
            Verdict.OK,
            "not installed: compose builds with its internal builder (inline cache only)",
            "",
        )
    version = done.out.strip()
    mismatch = buildx_mismatch(buildx_version(version), compose_version)
    if mismatch:
        return Check("buildx", Verdict.FAIL, mismatch.split(": ", 1)[0], mismatch.split(": ", 1)[1])
    off = os.environ.get("COMPOSE_BAKE", "").lower() in {"0", "false", "no", "off"}
    if compose_version >= BAKE_SINCE and not off:
        return Check("buildx", Verdict.OK, f"{version}: compose builds through buildx bake")
    why = "COMPOSE_BAKE is off" if off else "this compose predates bake builds"
    return Check("buildx", Verdict.OK, f"{version}: compose uses its own builder ({why})")


def check_builder(settings: Settings, docker: engine.Engine) -> tuple[Check, Builder | None]:
    try:
        builder = engine.detect_builder(docker)
    except UserError as exc:
        return Check("builder", Verdict.FAIL, str(exc)), None
    store = (
        "containerd image store" if builder.containerd else "classic image store (no containerd)"
    )
    imports = "image refs (local or registry) with inline metadata"
    if len(builder.exports) > 1:
        imports += ", " + ", ".join(kind for kind in builder.exports if kind != "inline")
    detail = (
        f"{builder.name}; {store}; cache import: {imports}; export: {', '.join(builder.exports)}"
    )
    if not settings.inline_cache and builder.exports == ("inline",):
        return (
            Check(
                "builder",
                Verdict.WARN,
                detail + "; inline_cache is off, so images cannot serve as cache",
                "turn inline_cache back on (INVOKE_STACK_INLINE_CACHE=1)",
            ),
            builder,
        )
    return Check("builder", Verdict.OK, detail), builder


def check_git(settings: Settings) -> tuple[Check, gitinfo.GitInfo]:
    info = gitinfo.of(settings)
    if shutil.which("git") is None and info.source != f"environment {settings.commit_arg}":
        return Check("git", Verdict.WARN, "git is not installed", "install git"), info
    if info.warning:
        return Check(
            "git", Verdict.WARN, info.warning, f"commit the project, or set {settings.commit_arg}"
        ), info
    where = f" on {info.branch}" if info.branch else ""
    detail = f"commit {info.tag}{where} (from {info.source})"
    if info.dirty:
        return (
            Check(
                "git",
                Verdict.WARN,
                detail + ": tracked files changed since the commit",
                "commit or stash the changes before a release build",
            ),
            info,
        )
    return Check("git", Verdict.OK, detail + ", tree clean"), info


def source_check(service: str, source: CacheSource, others_serve: bool = False) -> Check:
    """Whether one cache source can serve the next build."""
    name = f"cache {service}"
    label = f"{source.entry} [{source.origin}]"
    if not source.kept:
        reason = source.reason
        if source.origin == "compose file":
            return Check(
                name,
                Verdict.WARN,
                f"{label}: {reason}; compose would ignore it",
                "fix or remove it",
            )
        if others_serve:
            return Check(name, Verdict.OK, f"{label}: {reason} (another source serves)")
        return Check(
            name, Verdict.WARN, f"{label}: {reason}; the next build is cold", "run invoke build"
        )
    if source.status is Status.UNVERIFIED:
        return Check(
            name,
            Verdict.WARN,
            f"{label}: {source.reason}",
            "check the registry is reachable from here (network, credentials)",
        )
    if source.status is Status.BACKEND:
        return Check(name, Verdict.OK, f"{label}: {source.reason}, read by the builder")
    inline = source.inline
    if source.status is Status.REGISTRY and inline is None:
        _, ref = cache_entry(source.entry)
        inline = registry.inline_cache(ref) if ref else None
    where = source.status
    if inline:
        return Check(name, Verdict.OK, f"{label}: {where} with inline cache metadata, can serve")
    if inline is False:
        return Check(
            name,
            Verdict.WARN,
            f"{label}: {where} without inline cache metadata; it cannot serve once the "
            "builder cache is pruned",
            "rebuild it with invoke build (BUILDKIT_INLINE_CACHE=1)",
        )
    return Check(
        name,
        Verdict.WARN,
        f"{label}: {where}; its cache metadata cannot be read (the registry wants credentials?)",
        "make sure it was built with BUILDKIT_INLINE_CACHE=1",
    )


def plan_checks(plan: BuildPlan) -> list[Check]:
    """A check per cache source of every planned service."""
    checks = []
    for service in plan.services:
        serving = [s for s in service.sources if s.kept]
        checks += [source_check(service.name, s, bool(serving)) for s in service.sources]
        for export in service.exports:
            if export.kept:
                checks.append(
                    Check(f"cache {service.name}", Verdict.OK, f"cache_to {export.entry}")
                )
                continue
            checks.append(
                Check(
                    f"cache {service.name}",
                    Verdict.WARN,
                    f"cache_to {export.entry} {export.describe()}",
                    "create a docker-container buildx builder, or remove cache_to",
                )
            )
    return checks


def rollout_check(services: Mapping[str, Any]) -> Check:
    """Which services a compose-host deploy rolls without downtime and which it recreates: a
    warning when a service the deploy builds (a new image every deploy) can't roll."""
    rolls: list[str] = []
    built: list[str] = []
    other: list[str] = []
    for name, spec in services.items():
        why = rolling.not_rollable(spec)
        if not why:
            rolls.append(name)
        else:
            (built if spec.get("build") else other).append(f"{name} ({why})")
    parts = [f"rolls without downtime: {', '.join(rolls) or 'none'}"]
    if other:
        parts.append(f"recreated when changed: {', '.join(other)}")
    if built:
        parts.append(f"recreated on every deploy: {', '.join(built)}")
        return Check("deploy", Verdict.WARN, "; ".join(parts), rolling.FIX)
    return Check("deploy", Verdict.OK, "; ".join(parts))


def lint_checks(findings: Sequence[Finding], count: int) -> list[Check]:
    """A warning per lint finding, or one ok line."""
    if not findings:
        return [
            Check("dockerfile", Verdict.OK, f"{count} build(s) linted: no cache problems found")
        ]
    return [
        Check(f"dockerfile {f.rule}", Verdict.WARN, f"{f.where}: {f.message}", f.remedy)
        for f in findings
    ]


def diagnose(load: Callable[[], Settings], services: Sequence[str]) -> list[Check]:
    """Every check, in order; a failure skips only the checks that depend on it."""
    checks: list[Check] = []
    try:
        settings = load()
    except UserError as exc:
        return [Check("settings", Verdict.FAIL, str(exc), "run invoke config to see every source")]
    checks.append(Check("settings", Verdict.OK, f"valid (project dir {settings.project_dir})"))
    docker = engine.Engine(Runner())
    runner = docker.runner
    engine_check, reachable = check_engine(docker)
    compose_check, compose_version = check_compose(runner)
    checks += [engine_check, compose_check]
    if compose_version:
        checks.append(check_buildx(compose_version, runner))
    builder = None
    if reachable:
        builder_check, builder = check_builder(settings, docker)
        checks.append(builder_check)
    git_check, git = check_git(settings)
    checks.append(git_check)
    if compose_check.status is Verdict.FAIL:
        return checks
    try:
        project = pipeline.resolve(settings, runner, git, services=services)
    except UserError as exc:
        return [*checks, Check("project", Verdict.FAIL, str(exc), "see docker compose config")]
    try:
        names = select(project.data, services)
    except UserError as exc:
        return [*checks, Check("project", Verdict.FAIL, str(exc), "name a service with a build")]
    shown = ", ".join(display_path(path, settings.project_dir) for path in project.files)
    checks.append(
        Check("project", Verdict.OK, f"{project.name}: builds {', '.join(names)} ({shown})")
    )
    if settings.orchestrator is Orchestrator.COMPOSE:
        checks.append(rollout_check(project.data.get("services") or {}))
    try:
        pipeline.check_services(project, names)
    except UserError as exc:
        return [*checks, Check("build input", Verdict.FAIL, str(exc), "the build would stop here")]
    findings = None
    if builder is None:
        checks.append(Check("cache", Verdict.SKIP, "cache sources not checked: no engine"))
    else:
        try:
            options = BuildOptions(services=tuple(names))
            prepared = pipeline.plan(project, docker, options, builder=builder)
        except UserError as exc:
            checks.append(Check("cache", Verdict.FAIL, str(exc)))
        else:
            checks += plan_checks(prepared.plan)
            findings = list(prepared.plan.lint)
    if findings is None:
        findings = pipeline.lint(project, names)
    return checks + lint_checks(findings, len(names))


def render(checks: Sequence[Check]) -> str:
    lines = []
    width = max(len(check.name) for check in checks)
    for check in checks:
        lines.append(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
        if check.remedy and check.status is not Verdict.OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.remedy}")
    shown = (Verdict.OK, Verdict.WARN, Verdict.FAIL)
    counts = {status: sum(c.status is status for c in checks) for status in shown}
    lines.append("doctor: " + ", ".join(f"{counts[status]} {status}" for status in shown))
    return "\n".join(lines)


def doctor(
    c: Context, service: list[str] | None = None, strict: bool = False, json: bool = False
) -> None:
    """Check the engine, compose, builder, git, settings, cache sources and Dockerfiles."""
    checks = diagnose(lambda: settings_of(c), service or [])
    failed = [check for check in checks if check.status is Verdict.FAIL]
    warned = [check for check in checks if check.status is Verdict.WARN]
    if json:
        report.emit_json({"ok": not failed, "checks": [asdict(check) for check in checks]})
    else:
        report.say(render(checks))
    if failed or (strict and warned):
        raise Exit(code=1)
