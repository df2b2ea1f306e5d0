"""The stages every task composes: resolve the project, plan, lint, execute. Each runs alone.

config (``settings``) -> ``resolve`` (compose files, git, ``compose config``) -> ``plan`` (engine
and registry lookups, what need not be built and what the cache will give: ``unchanged``; the
plan itself is pure data) -> ``lint`` -> ``execute`` (the build).
Stages return typed outcomes and print nothing; tasks render them with ``report``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compose_tasks import mask
from compose_tasks.buildplan import _inputs as inputs
from compose_tasks.buildplan import _resolved as resolved
from compose_tasks.buildplan import _unchanged as unchanged
from compose_tasks.buildplan import cachedir, depends, gitinfo
from compose_tasks.buildplan._sources import silent_hosts
from compose_tasks.buildplan.generated import BUILDX_ANSWERS, write_generated
from compose_tasks.buildplan.gitinfo import GitInfo
from compose_tasks.buildplan.model import DEFAULTS, BuildOptions, BuildPlan, Status
from compose_tasks.buildplan.override import override_yaml
from compose_tasks.buildplan.plan import cache_refs, image_repo, make_plan, select
from compose_tasks.docker import commands, compose, engine, registry
from compose_tasks.docker.builder import Builder
from compose_tasks.docker.progress import CACHE_IMPORT, BuildProgress, Step
from compose_tasks.docker.refs import has_registry, registry_host
from compose_tasks.docker.runner import Runner
from compose_tasks.dockerfile import steps
from compose_tasks.dockerfile.instructions import dependency_stages, first_steps, stage_bases
from compose_tasks.dockerfile.lint import Finding, lint_project
from compose_tasks.dockerfile.reader import Reader, display_path
from compose_tasks.dockerfile.steps import Prediction
from compose_tasks.errors import Failed, UserError
from compose_tasks.settings import Settings


@dataclass(frozen=True)
class Project:
    """The compose project as compose resolved it, for the commit that will be built."""

    settings: Settings
    files: tuple[Path, ...]
    git: GitInfo
    data: Mapping[str, Any]
    keep: str = ""  # this resolution for the next build to reuse (``resolved``), when followable
    # the run's Dockerfiles, each read and parsed once (paths shown from the working directory)
    dockerfiles: Reader = field(default_factory=lambda: Reader(Path.cwd()), compare=False)

    @property
    def name(self) -> str:
        return str(self.data.get("name") or self.settings.project_name)


def resolve(
    settings: Settings,
    runner: Runner,
    git: GitInfo | None = None,
    reuse: bool = False,
    services: Sequence[str] = (),
) -> Project:
    """Find the compose files, read git, and resolve the project (no engine, no registry); the
    secrets it holds are masked from then on. A service named in ``services`` behind a profile
    that is not active turns its profiles on, as compose does for a service it is given.

    With ``reuse``, the project is the build view only (name, images, build sections), taken
    from the previous build's resolution while nothing compose reads has changed; a fresh
    resolution is kept by ``execute``. Nothing is written here."""
    files = compose.compose_files(settings)
    git = git or gitinfo.of(settings)
    project = _resolve(settings, runner, files, git, reuse)
    missing = [name for name in services if name not in (project.data.get("services") or {})]
    profiles = _profiles_of(settings, runner, files, git, missing) if missing else []
    if profiles:
        settings = replace(settings, profiles=(*settings.profiles, *profiles))
        project = _resolve(settings, runner, files, git, reuse)
    mask.add(mask.project_secrets(project.data, {**settings.dotenv, **os.environ}))
    return project


def _profiles_of(
    settings: Settings, runner: Runner, files: tuple[Path, ...], git: GitInfo, names: list[str]
) -> list[str]:
    """The profiles, not active yet, that turn these services on (every profile resolved)."""
    every = compose.resolve(runner, replace(settings, profiles=("*",)), files, git.commit)
    services = every.get("services") or {}
    found = [p for name in names for p in (services.get(name) or {}).get("profiles") or ()]
    return [p for p in dict.fromkeys(found) if p not in settings.profiles]


def _resolve(
    settings: Settings, runner: Runner, files: tuple[Path, ...], git: GitInfo, reuse: bool
) -> Project:
    if not reuse:
        return Project(settings, files, git, compose.resolve(runner, settings, files, git.commit))
    argv = commands.compose_of(settings, files)
    stand_in = resolved.placeholder_for(git.commit)  # the same on every commit
    environ = runner.environment({settings.commit_arg: stand_in})
    data = resolved.load(settings.build_dir / resolved.NAME, argv, environ)
    if data is not None:
        return Project(settings, files, git, resolved.with_commit(data, git.commit))
    try:
        paths = resolved.inputs(files, settings.project_dir, [settings.env_file])
        key = resolved.fingerprint(argv, environ, paths)  # before compose reads the files
    except resolved.Unfollowable:
        paths, key = [], ""
    data = resolved.build_view(compose.resolve(runner, settings, files, stand_in))
    kept = resolved.entry(data, key, paths) if key else ""
    return Project(settings, files, git, resolved.with_commit(data, git.commit), kept)


@dataclass(frozen=True)
class Prepared:
    """A plan with what carrying it out needs: the task's engine."""

    project: Project
    plan: BuildPlan
    docker: engine.Engine


def lint(project: Project, services: Sequence[str]) -> list[Finding]:
    """The Dockerfile cache lint of these services."""
    return lint_project(project.data, services, project.settings.commit_arg, project.dockerfiles)


@dataclass(frozen=True)
class Dockerfiles:
    """What the plan needs from the services' Dockerfiles."""

    stages: dict[str, list[str]]  # named stages each target depends on, to cache as images
    steps: dict[str, frozenset[str] | None]  # ``first_steps`` of each; None: unreadable
    bases: list[str]  # the images their stages start from (no ``$`` refs)
    needs: dict[str, tuple[depends.Need, ...]] = field(default_factory=dict)  # ``depends``
    refs: dict[str, list[str]] = field(default_factory=dict)  # images each reads, ARGs expanded
    paths: dict[str, str] = field(default_factory=dict)  # each Dockerfile, as shown


def dockerfiles_of(project: Project) -> Dockerfiles:
    """What the plan needs from each buildable service's Dockerfile (from the run's reader, as
    every other consumer), and what each is built on."""
    out = Dockerfiles({}, {}, [])
    services = project.data.get("services") or {}
    settings = project.settings
    owners: dict[str, str] = {}
    for name, service in services.items():
        if service.get("build"):
            for registry in dict.fromkeys(["", settings.registry]):
                repo = image_repo(project.name, name, service, registry)
                owners.setdefault(depends.repo_key(repo), name)
    for name, service in services.items():
        build = service.get("build") or {}
        dockerfile = project.dockerfiles.service(name, build) if build else None
        target = str(build.get("target") or "")
        refs: list[str] = []
        if dockerfile is not None:
            needed = dependency_stages(dockerfile, target)
            out.stages[name] = [stage.name for stage in reversed(needed) if stage.name]
            out.bases.extend(ref for ref in stage_bases(dockerfile) if "$" not in ref)
            args = {str(k): str(v) for k, v in (build.get("args") or {}).items() if v is not None}
            args[settings.commit_arg] = project.git.commit
            refs = depends.image_refs(dockerfile, args)
            out.refs[name], out.paths[name] = refs, dockerfile.path
        out.steps[name] = first_steps(dockerfile, target) if dockerfile is not None else None
        if build:
            found = depends.needs_of(name, build, refs, owners)
            out.needs[name] = tuple(
                need for need in found if (services.get(need.service) or {}).get("build")
            )
    return out


def check_services(project: Project, services: Sequence[str]) -> None:
    """What the engine would reject about these services (all buildable ones when empty)."""
    shown = ", ".join(display_path(path, project.settings.project_dir) for path in project.files)
    inputs.check_services(project.data, select(project.data, services), shown, project.dockerfiles)


def plan(
    project: Project,
    docker: engine.Engine,
    options: BuildOptions = DEFAULTS,
    builder: Builder | None = None,
) -> Prepared:
    """Plan the build: check what the build would reject, look up every cache source (on
    ``docker``, which ``builder`` describes when known), lint, and digest each service's
    inputs: a service whose image of this commit was built from the same inputs is not built
    again; with ``affected`` (the commit arg left out of the digest) a service built from the
    same inputs at any commit is re-tagged instead. Neither with ``fresh`` or ``rebuild``.
    Changes nothing."""
    services: Sequence[str] = options.services
    check_services(project, services)
    read = dockerfiles_of(project)
    if services:  # and every service they are built on: a build of them needs its result
        services = depends.closure(select(project.data, services), read.needs)
    stages = read.stages
    refs = (
        []
        if options.fresh
        else cache_refs(project.data, project.settings, project.git, services, stages)
    )
    refs += read.bases  # the input digest needs their ids: in the same lookup
    refs += [ref for found in read.refs.values() for ref in found]
    if builder is None:
        builder = engine.detect_builder(docker, refs, kept_buildx(project.settings))
    else:
        docker.prefetch(refs)
    if refs:  # the cache sources' registries, asked at once (where no local image serves)
        looked_up = set(refs)
        sources = cache_refs(project.data, project.settings, project.git, services, stages, True)
        docker.prefetch_remote(
            [
                ref
                for ref in sources
                if has_registry(ref)
                and not (builder.local_images and ref in looked_up and docker.local_id(ref))
            ]
        )
    _check_images(project, select(project.data, services), read, docker)
    _check_platforms(project, select(project.data, services), builder)
    built = make_plan(
        project.data,
        project.settings,
        project.files,
        project.git,
        docker.locate,
        builder,
        replace(options, services=tuple(services)),
        stages,
        read.steps,
    )
    built = link(built, read.needs, builder)
    built = replace(built, lint=tuple(lint(project, built.service_names())))
    built = unchanged.with_inputs(
        project.settings.commit_arg, built, docker, options, project.dockerfiles
    )
    return Prepared(project, built, docker)


def _check_images(
    project: Project, names: Sequence[str], read: Dockerfiles, docker: engine.Engine
) -> None:
    """Every image a Dockerfile reads (``FROM``, ``--from``) that is no stage, named context or
    image of another service must be here or in its registry: else one line before building
    (a registry that cannot be asked lets the build try)."""
    services = project.data.get("services") or {}
    for name in names:
        named = dict((services[name].get("build") or {}).get("additional_contexts") or {})
        built = {need.name for need in read.needs.get(name, ())}
        for ref in read.refs.get(name, []):
            if ref in named or ref in built or "$" in ref:
                continue
            if docker.locate(ref) is None:  # here first, then its registry
                raise UserError(
                    f"service '{name}': {read.paths[name]} reads {ref!r} (FROM or --from), "
                    "which is no stage, named context or image: not on this engine, and its "
                    "registry has none"
                )


def _check_platforms(project: Project, names: Sequence[str], builder: Builder) -> None:
    """A build for several platforms needs a builder that can export one: compose fails it
    late on the docker driver of a classic image store; here it is one line, first."""
    if builder.exports != ("inline",):
        return
    for name in names:
        platforms = project.data["services"][name]["build"].get("platforms") or []
        if len(platforms) > 1:
            raise UserError(
                f"service '{name}': platforms {', '.join(platforms)}: {builder.name} builds "
                "one platform at a time (a multi-platform image needs the containerd image "
                "store or a docker-container builder: docker buildx create --use)"
            )


def link(
    built: BuildPlan, needs: Mapping[str, tuple[depends.Need, ...]], builder: Builder
) -> BuildPlan:
    """The plan's services after those they are built on, each with its ``needs``. An image of
    another service a Dockerfile names becomes a named context of that service's build where
    the builder takes one (bake); elsewhere the build runs in waves (``depends.waves``)."""
    names = depends.order(built.service_names(), needs)
    by_name = {service.name: service for service in built.services}
    services = tuple(
        replace(
            by_name[name],
            needs=needs.get(name, ()),
            contexts={
                depends.context_name(need.name): f"{depends.SERVICE_PREFIX}{need.service}"
                for need in needs.get(name, ())
                if need.image and builder.bake
            },
        )
        for name in names
    )
    waves = [names] if builder.bake else depends.waves(names, needs)
    return replace(built, services=services, waves=tuple(tuple(wave) for wave in waves))


def prepare(
    settings: Settings, docker: engine.Engine, options: BuildOptions = DEFAULTS
) -> Prepared:
    """Resolve and plan in one call."""
    project = resolve(settings, docker.runner, services=options.services)
    return plan(project, docker, options)


def base_images(prepared: Prepared) -> list[str]:
    """Images named in the services' Dockerfile FROM lines (earlier stages excluded)."""
    found: list[str] = []
    for service in prepared.plan.services:
        try:
            dockerfile = prepared.project.dockerfiles.dockerfile(
                Path(service.context) / service.dockerfile
            )
        except OSError:
            continue
        found += stage_bases(dockerfile)
    return list(dict.fromkeys(found))


def missing_bases(prepared: Prepared) -> list[str]:
    """Base images the Dockerfiles name that are not on this engine (a ``$`` ref is skipped)."""
    return [
        ref
        for ref in base_images(prepared)
        if "$" not in ref and prepared.docker.locate(ref, False) is None
    ]


# --- generated files ---------------------------------------------------------------------


def keep_resolution(project: Project) -> None:
    """Keep a fresh resolution for the next build to reuse (a build writes it, nothing else)."""
    if project.keep:
        write_generated(project.settings, project.settings.build_dir / resolved.NAME, project.keep)


def kept_buildx(settings: Settings) -> dict[str, Any] | None:
    """buildx's answers an earlier build kept (``engine.detect_builder``), if readable."""
    try:
        found = json.loads((settings.build_dir / BUILDX_ANSWERS).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def keep_buildx(prepared: Prepared) -> None:
    """Keep buildx's answers for the next build (a build writes them, nothing else)."""
    answers = prepared.docker.buildx_answers
    settings = prepared.project.settings
    if answers and answers != kept_buildx(settings):
        write_generated(settings, settings.build_dir / BUILDX_ANSWERS, json.dumps(answers))


# --- execute -----------------------------------------------------------------------------


class Clock:
    """Wall time of consecutive phases."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._mark = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Record the time since the previous lap as ``phase``."""
        now = time.perf_counter()
        self.laps[phase] = round(now - self._mark, 3)
        self._mark = now


@dataclass(frozen=True)
class ServiceResult:
    """One service's build, counted from BuildKit's progress."""

    service: str
    image: str
    steps: int
    cached: int
    rebuilt: int
    first_rebuilt: str
    seconds: float
    error: str
    rebuilt_steps: tuple[str, ...] = ()
    reused: str = ""  # not built: the image of a build with the same inputs (re-tagged if another)
    predicted: Prediction | None = None  # what the plan expected of the cache
    exact: bool | None = None  # whether it rebuilt just the predicted steps (None: not built)
    remote: str = ""  # not built, not pulled: the registry's image from the same inputs
    pulled: int = 0  # bytes of layers BuildKit downloaded for it
    output: tuple[str, ...] = ()  # the last lines its failed step printed (masked)


@dataclass(frozen=True)
class BuildResult:
    """What a build did: per-service counts, the cache tags moved, and why it failed."""

    ok: bool
    exit_code: int
    failed: tuple[str, ...]
    services: tuple[ServiceResult, ...]
    promoted: tuple[str, ...]
    messages: tuple[str, ...] = field(default=())
    error: str = ""
    pushed: tuple[str, ...] = ()
    seconds: Mapping[str, float] = field(default_factory=dict)  # wall time per phase
    cache: cachedir.Usage | None = None  # the local cache folders after the build
    dangling: int = 0  # untagged images of ours this build replaced, removed
    retried: tuple[str, ...] = ()  # services built again after the containerd snapshot race
    push_failed: bool = False  # every service built and tagged here; the push did not finish
    engine_lost: bool = False  # the engine stopped answering while it built (restarted, gone)
    disk_full: bool = False  # the engine's disk filled up under the build (a step said so)

    @property
    def culprits(self) -> str:
        """The services whose build failed, for a one-line error (compose's, when none)."""
        return ", ".join(self.failed) or "compose"


# What compose and BuildKit say when the engine goes away under a build (measured on Engine
# 20.10 and 28.5: dockerd stopped or restarted while a step ran)
ENGINE_GONE = (
    "error reading from server",
    "code = unavailable",
    "cannot connect to the docker daemon",
    "connection reset by peer",
    "transport is closing",
)


NO_SPACE = "no space left on device"  # ENOSPC, in a step's output or BuildKit's error


STEP_FAILED = "did not complete successfully"  # a step's own failure: BuildKit answered


def engine_gone(error: str) -> bool:
    """Whether a failed build's words say the engine went away, not that a step failed (when
    one service's step fails, bake cancels the others: their cache writes then end with the
    same "transport is closing" an engine that went away gives)."""
    text = error.lower()
    return any(words in text for words in ENGINE_GONE) and STEP_FAILED not in text


def service_results(built: BuildPlan, progress: BuildProgress) -> tuple[ServiceResult, ...]:
    """Per-service results from the parsed progress."""
    rows = []
    for service in built.services:
        stats = progress.service(service.name)
        rebuilt = tuple(step.label for step in stats.steps if not step.cached)
        prediction = service.prediction
        exact = None
        if prediction is not None and stats.total and not stats.error:
            exact = steps.exact(prediction, rebuilt, stats.total)
        rows.append(
            ServiceResult(
                service.name,
                service.build_ref,
                stats.total,
                stats.cached,
                stats.rebuilt,
                stats.first_rebuilt,
                round(stats.seconds, 2),
                stats.error,
                rebuilt,
                service.reuse,
                prediction,
                exact,
                service.remote,
                stats.pulled,
                tuple(mask.active().text(line) for line in stats.output),
            )
        )
    return tuple(rows)


def cache_gate(built: BuildPlan, result: BuildResult) -> list[str]:
    """What ``--require-cache`` fails a build for, one line each: a cache source the compose
    file declares that could not be read (the plan's lookup, or BuildKit's import), and a step
    the prediction said would come from the cache that ran."""
    found = [
        f"{s.name}: cache source {source.entry} could not be read ({source.describe()})"
        for s in built.services
        for source in s.sources
        if source.origin == "compose file" and source.status in (Status.DROPPED, Status.UNVERIFIED)
    ]
    found += [
        f"{message.removeprefix('warning: ')} (the source is missing, unreachable, of a type "
        "this builder cannot import, or needs credentials)"
        for message in result.messages
        if CACHE_IMPORT in message
    ]
    for row in result.services:
        predicted = row.predicted
        if predicted is None or row.exact is None or row.error:
            continue
        ran = [
            label
            for label in row.rebuilt_steps
            if steps.position_of(label) not in predicted.rebuilt
        ]
        found += [f"{row.service}: {label} ran; predicted from the cache" for label in ran]
    return found


def _waves(built: BuildPlan, names: Sequence[str]) -> list[list[str]]:
    """The services to build, in the plan's waves (one compose build each)."""
    found = [[name for name in wave if name in names] for wave in built.waves or [names]]
    return [wave for wave in found if wave]


def _copy_in_registry(built: BuildPlan) -> tuple[list[str], set[str]]:
    """With push, each service the registry holds up to date gets this commit's tag there (a
    manifest copy: no layer moves); the refs tagged, and the services whose copy the registry
    refused (built instead, as without the registry's image)."""
    copied: list[str] = []
    fallen: set[str] = set()
    for service in built.services:
        if not (service.remote and built.push) or service.remote == service.build_ref:
            continue
        try:
            found = registry.manifest(service.remote)
            if found is None:
                raise OSError(f"{service.remote} is gone")
            registry.copy(found, service.build_ref)
            copied.append(service.build_ref)
        except OSError:
            fallen.add(service.name)
    return copied, fallen


def _promote_in_registry(built: BuildPlan) -> list[str]:
    """After every service built: the cache tags of the services the registry held up to date,
    moved there (manifest copies)."""
    moved: list[str] = []
    for service in built.services:
        if not service.remote:
            continue
        try:
            found = registry.manifest(service.build_ref)
            if found is None:
                raise OSError(f"{service.build_ref} is gone")
            for ref in service.promote:
                if ref != service.remote:
                    registry.copy(found, ref)
                    moved.append(ref)
        except OSError as exc:
            raise UserError(f"registry: moving the tags of {service.name} failed: {exc}") from None
    return moved


def handover(built: BuildPlan, wave: Sequence[str]) -> list[tuple[str, str]]:
    """(this build's image of a service, the ref a Dockerfile of ``wave`` names it by): a
    builder without named contexts reads an image ref from the engine's images."""
    by_name = {service.name: service for service in built.services}
    return [
        (by_name[need.service].reuse or by_name[need.service].build_ref, need.name)
        for name in wave
        for need in by_name[name].needs
        if need.image and need.name != by_name[need.service].build_ref
    ]


# The containerd image store loses a parent snapshot while parallel builds that share layers
# unpack (moby/buildkit#6521, containerd/containerd#10723); the same build then succeeds.
_SNAPSHOT_RACE = ("parent snapshot", "does not exist")


def snapshot_race(error: str) -> bool:
    """Whether a service's build error is the containerd store's snapshot race."""
    return all(part in error for part in _SNAPSHOT_RACE)


def execute(
    prepared: Prepared,
    on_step: Callable[[Step], None] = lambda _: None,
    on_running: Callable[[Step, float], None] | None = None,
    every: float = 15.0,
) -> BuildResult:
    """Write the override, run the build (each finished step to ``on_step``; each step still
    running, with its elapsed seconds, to ``on_running`` every ``every`` seconds without
    output), and move the cache tags only when every service built."""
    built = prepared.plan
    settings = prepared.project.settings
    write_generated(settings, Path(built.override_file), override_yaml(built))
    keep_resolution(prepared.project)
    keep_buildx(prepared)
    folders = [s.name for s in built.services if s.cache_dir]
    if folders:
        try:
            cachedir.prepare(settings.cache_dir, folders)
        except OSError as exc:
            raise Failed(f"cannot prepare {settings.cache_dir}: {exc.strerror}") from None

    def compose_build(names: Sequence[str]) -> tuple[int, BuildProgress]:
        aliases = {alias: s for alias, s in built.aliases().items() if s in names}
        progress = BuildProgress(aliases, names)

        def on_line(line: str) -> None:
            for step in progress.feed(line):
                on_step(step)

        def on_idle() -> None:
            now = datetime.now(UTC)
            for step in progress.running():
                if on_running is not None and step.started is not None:
                    on_running(step, (now - step.started).total_seconds())

        argv = built.build_argv(names)
        return prepared.docker.runner.stream(argv, on_line, built.env(), on_idle, every), progress

    clock = Clock()
    copied, fallen = _copy_in_registry(built)  # before the build: a refusal builds it instead
    if fallen:
        built = replace(
            built,
            services=tuple(
                replace(s, remote="") if s.name in fallen else s for s in built.services
            ),
        )
        write_generated(settings, Path(built.override_file), override_yaml(built))
    names = built.building()
    reused = {service.reuse for service in built.services if service.reuse}
    # nothing to build (every service reused): compose is not run at all
    code, progress = 0, BuildProgress({}, [])
    for number, wave in enumerate(_waves(built, names)):
        if number:  # the images this wave's Dockerfiles name, now the ones just built
            prepared.docker.tag_all(handover(built, wave))
        code, wave_progress = compose_build(wave)
        progress.adopt(wave_progress, wave)
        if code:
            break
    failed = tuple(progress.failed_services())
    retried: tuple[str, ...] = ()
    if code and failed and all(snapshot_race(progress.service(n).error) for n in failed):
        retried = failed  # once, and only these: the race is the engine's, not the build's
        cachedir.prepare(settings.cache_dir, [n for n in retried if n in folders])
        code, again = compose_build(retried)
        progress.adopt(again, retried)
        failed = tuple(progress.failed_services())
    clock.lap("compose build")
    ok = code == 0 and not failed
    cache = None
    if folders:
        done = cachedir.promote(settings.cache_dir, [n for n in folders if n not in failed])
        cache = cachedir.bound(settings.cache_dir, settings.cache_size, done)
    promoted: list[str] = []
    dangling = 0
    if ok:
        # a reused service: its earlier image becomes this commit's too, then the cache tags
        # (those already on it are left: nothing built it again)
        local = [s for s in built.services if not s.remote]
        pairs = [(s.reuse, s.build_ref) for s in local if s.reuse not in ("", s.build_ref)]
        pairs += [(s.reuse or s.build_ref, ref) for s in local for ref in s.promote]
        pairs = [
            (source, target)
            for source, target in pairs
            if source not in reused or not prepared.docker.same_image(source, target)
        ]
        # the tags this build moves: an image left with none of its own is pruned with them
        moved = [target for _, target in pairs] + [
            ref
            for s in built.services
            if s.name in names
            for ref in (s.build_ref, *(t.ref for t in s.stages if not t.current))
        ]
        orphans = prepared.docker.may_orphan(moved, built.project)
        if pairs or orphans:  # nothing to move and no image left untagged: nothing to do
            dangling = prepared.docker.tag_all(pairs, built.project if orphans else "")
        promoted = [ref for _, ref in pairs]
        clock.lap("tags")
    why = ""
    if not ok:
        why = progress.error or (progress.messages[-1] if progress.messages else f"exit {code}")
    pushed: list[str] = list(copied)
    push_failed = False
    if ok and built.push:
        pushed += built.exported_refs()  # the build exported them already
        silent = silent_hosts([source for s in built.services for source in s.sources])
        try:
            for ref in built.pushed_refs():
                if registry_host(ref) in silent:  # Engine 28.5 would wait on it for ever
                    raise UserError(
                        f"docker push {ref} not tried: its registry did not answer in time "
                        "while the build was planned"
                    )
                prepared.docker.runner.check(commands.push(ref), f"docker push {ref}")
                pushed.append(ref)
            pushed += _promote_in_registry(built)
        except UserError as exc:
            ok, why, push_failed = False, str(exc), True
        clock.lap("push")
    rows = service_results(built, progress)
    said = " ".join([why, *(f"{r.error} {' '.join(r.output)}" for r in rows if r.error)])
    build_failed = not ok and not push_failed
    return BuildResult(
        ok,
        code,
        failed,
        rows,
        tuple(promoted),
        tuple(progress.messages[-20:]),
        why,
        tuple(pushed),
        clock.laps,
        cache,
        dangling,
        retried,
        push_failed,
        build_failed and engine_gone(said),
        build_failed and NO_SPACE in said.lower(),
    )
