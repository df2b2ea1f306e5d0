"""The stages every task composes: resolve the project, plan, lint, execute. Each runs alone.

config (``settings``) -> ``resolve`` (compose files, git, ``compose config``) -> ``plan`` (engine
and registry lookups; the plan itself is pure data) -> ``lint`` -> ``execute`` (the build).
Stages return typed outcomes and print nothing; tasks render them with ``report``.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks import (
    cachedir,
    commands,
    compose,
    engine,
    fingerprint,
    gitinfo,
    inputs,
    mask,
    resolved,
    steps,
)
from tasks.builder import Builder
from tasks.dockerfile import Dockerfile, dependency_stages, first_steps, parse
from tasks.errors import Failed, UserError
from tasks.fingerprint import GitIndex
from tasks.generated import write_generated
from tasks.gitinfo import GitInfo
from tasks.lint import display_path, lint_project, read_dockerfile
from tasks.model import BuildPlan, Finding, ServicePlan
from tasks.override import override_yaml
from tasks.plan import cache_refs, make_plan, select
from tasks.progress import BuildProgress, Step
from tasks.refs import (
    LABEL_COMMIT,
    LABEL_INPUTS,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_STEPS,
    LABEL_TOOL,
    LABEL_VALUES,
    TOOL,
    cache_entry,
    owned_by,
    split_ref,
)
from tasks.runner import Runner
from tasks.settings import Settings
from tasks.steps import PlannedStep, Prediction


@dataclass(frozen=True)
class Project:
    """The compose project as compose resolved it, for the commit that will be built."""

    settings: Settings
    files: tuple[Path, ...]
    git: GitInfo
    data: Mapping[str, Any]
    keep: str = ""  # this resolution for the next build to reuse (``resolved``), when followable

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
    environ = runner.environment({settings.commit_arg: git.commit})
    data = resolved.load(settings.build_dir / resolved.NAME, argv, environ)
    if data is not None:
        return Project(settings, files, git, data)
    try:
        paths = resolved.inputs(files, settings.project_dir, [settings.env_file])
        key = resolved.fingerprint(argv, environ, paths)  # before compose reads the files
    except resolved.Unfollowable:
        paths, key = [], ""
    data = resolved.build_view(compose.resolve(runner, settings, files, git.commit))
    return Project(settings, files, git, data, resolved.entry(data, key, paths) if key else "")


@dataclass(frozen=True)
class Prepared:
    """A plan with what carrying it out needs: the task's engine."""

    project: Project
    plan: BuildPlan
    docker: engine.Engine


def lint(project: Project, services: Sequence[str]) -> list[Finding]:
    """The Dockerfile cache lint of these services."""
    return lint_project(project.data, services, project.settings.commit_arg, Path.cwd())


@dataclass(frozen=True)
class Dockerfiles:
    """What the plan needs from the services' Dockerfiles."""

    stages: dict[str, list[str]]  # named stages each target depends on, to cache as images
    steps: dict[str, frozenset[str] | None]  # ``first_steps`` of each; None: unreadable
    bases: list[str]  # the images their stages start from (no ``$`` refs)


def dockerfiles_of(project: Project) -> Dockerfiles:
    """What the plan needs from each buildable service's Dockerfile (a Dockerfile that several
    services share is parsed once; the lint reads it again, from the same parse)."""
    out = Dockerfiles({}, {}, [])
    for name, service in (project.data.get("services") or {}).items():
        build = service.get("build") or {}
        dockerfile = read_dockerfile(name, build, Path.cwd()) if build else None
        target = str(build.get("target") or "")
        if dockerfile is not None:
            needed = dependency_stages(dockerfile, target)
            out.stages[name] = [stage.name for stage in reversed(needed) if stage.name]
            out.bases.extend(ref for ref in _stage_bases(dockerfile) if "$" not in ref)
        out.steps[name] = first_steps(dockerfile, target) if dockerfile is not None else None
    return out


def check_services(project: Project, services: Sequence[str]) -> None:
    """What the engine would reject about these services (all buildable ones when empty)."""
    shown = ", ".join(display_path(path, project.settings.project_dir) for path in project.files)
    inputs.check_services(project.data, select(project.data, services), shown)


def plan(
    project: Project,
    docker: engine.Engine,
    services: Sequence[str] = (),
    fresh: bool = False,
    pull: bool = False,
    builder: Builder | None = None,
    push: bool = False,
    affected: bool = False,
    rebuild: bool = False,
) -> Prepared:
    """Plan the build: check what the build would reject, look up every cache source (on
    ``docker``, which ``builder`` describes when known), lint, and digest each service's
    inputs: a service whose image of this commit was built from the same inputs is not built
    again; with ``affected`` (the commit arg left out of the digest) a service built from the
    same inputs at any commit is re-tagged instead. Neither with ``fresh`` or ``rebuild``.
    Changes nothing."""
    check_services(project, services)
    read = dockerfiles_of(project)
    stages = read.stages
    refs = (
        [] if fresh else cache_refs(project.data, project.settings, project.git, services, stages)
    )
    refs += read.bases  # the input digest needs their ids: in the same lookup
    if builder is None:
        builder = engine.detect_builder(docker, refs)
    else:
        docker.prefetch(refs)
    built = make_plan(
        project.data,
        project.settings,
        project.files,
        project.git,
        docker.locate,
        builder,
        services,
        fresh,
        pull,
        stages,
        push,
        read.steps,
    )
    built = replace(built, lint=tuple(lint(project, built.service_names())))
    built = with_inputs(project, built, docker, fresh, affected, rebuild)
    return Prepared(project, built, docker)


def _bases(path: Path, text: str) -> list[str]:
    """The images a Dockerfile's stages start from (earlier stages and scratch left out)."""
    return _stage_bases(parse(text, str(path)))


def _stage_bases(dockerfile: Dockerfile) -> list[str]:
    names: set[str] = set()
    found: list[str] = []
    for stage in dockerfile.stages:
        if stage.base.lower() not in names and stage.base != "scratch":
            found.append(stage.base)
        if stage.name:
            names.add(stage.name.lower())
    return found


def _dockerfile(service: ServicePlan) -> tuple[Path, bytes]:
    """A service's Dockerfile: its path and bytes (``dockerfile_inline`` too)."""
    inline = service.build.get("dockerfile_inline")
    path = Path(service.context) / service.dockerfile
    return path, str(inline).encode() if inline else path.read_bytes()


def _text(found: tuple[Path, bytes]) -> tuple[Path, str]:
    return found[0], found[1].decode(errors="replace")


@dataclass(frozen=True)
class _Read:
    """One service's inputs as the plan reads them."""

    digest: str  # ``fingerprint.service_digest``
    steps: list[PlannedStep]
    values: dict[str, str]  # every ARG and ENV value its stages see


def _read_inputs(
    service: ServicePlan,
    commit_arg: str,
    docker: engine.Engine,
    index: GitIndex | None,
    walked: dict[tuple[Path, tuple[str, ...]], dict[str, str]],
    planned: dict[tuple[Any, ...], tuple[list[PlannedStep], dict[str, str]]],
) -> _Read:
    """A service's input digest (``fingerprint``; without ``commit_arg`` when one is named)
    and its steps' keys. ``walked`` and ``planned`` keep each context's files and each step
    plan for the services sharing them."""
    context = Path(service.context)
    build = dict(service.build)
    path, data = _dockerfile(service)
    given = {str(k): str(v) for k, v in dict(build.get("args") or {}).items() if v is not None}
    build["args"] = {k: v for k, v in dict(build.get("args") or {}).items() if k != commit_arg}
    named = {}
    for name, where in dict(build.get("additional_contexts") or {}).items():
        folder = Path(str(where))
        local = "://" not in str(where) and ":" not in str(where)[:2] and folder.is_dir()
        named[name] = fingerprint.folder_digest(folder, [], index) if local else str(where)
    text = data.decode(errors="replace")
    bases = {ref: docker.local_id(ref) for ref in _bases(path, text) if "$" not in ref}
    ours = {k: v for k, v in service.args.items() if k != commit_arg}
    patterns = tuple(fingerprint.ignore_lines(context, path))
    files = walked.get((context, patterns))
    if files is None:
        files = walked[context, patterns] = fingerprint.context_files(context, patterns, index)
    digest = fingerprint.service_digest(
        data, fingerprint.files_digest(files), build, named, ours, bases, [service.strategy]
    )
    args = {**given, **service.args}
    target = str(build.get("target") or "")
    key = (text, target, tuple(sorted(args.items())), id(files), tuple(sorted(named.items())))
    if key not in planned:  # services sharing a Dockerfile, context and args: one walk
        found = steps.Inputs(args, files, docker.local_id, named)
        planned[key] = steps.plan_steps(parse(text, str(path)), target, found)
    return _Read(digest, *planned[key])


def _changed(runner: Runner, index: GitIndex | None, commit: str, context: Path) -> set[str]:
    """The context's files (relative to it) changed since ``commit``, untracked ones too."""
    if index is None or not commit or not context.resolve().is_relative_to(index.root):
        return set()
    where = context.resolve().relative_to(index.root).as_posix()
    root = str(index.root)
    diff, others = runner.run_all(
        [
            commands.git("-C", root, "diff", "--name-only", "-z", commit, "--", where),
            commands.git("-C", root, "ls-files", "--others", "--exclude-standard", "-z", where),
        ]
    )
    found = [*diff.out.split("\0"), *others.out.split("\0")] if diff.ok and others.ok else []
    prefix = "" if where == "." else f"{where}/"
    return {path.removeprefix(prefix) for path in found if path.startswith(prefix) and path}


def _prediction(
    service: ServicePlan,
    read: _Read,
    ours: Mapping[str, Mapping[str, str]],
    known: set[str],
    fresh: bool,
    changed: Callable[[str], set[str]],
) -> steps.Prediction:
    """What BuildKit will take from its cache, against the service's last build here (its
    ``:latest`` image, else any image of it); ``changed`` names the context files changed
    since a commit, asked only when files are the reason."""
    if fresh:
        rebuilt = tuple(step.position for step in read.steps)
        first = read.steps[0].label if read.steps else ""
        return steps.Prediction(len(read.steps), 0, rebuilt, first, "--fresh: no cache")
    mine = sorted(
        (ref for ref, labels in ours.items() if labels.get(LABEL_SERVICE) == service.name),
        key=lambda ref: (split_ref(ref)[1] != "latest", ref),
    )
    labels = ours[mine[0]] if mine else {}
    try:
        before = dict(json.loads(labels.get(LABEL_VALUES) or "{}"))
    except ValueError:
        before = {}
    now = steps.value_hashes(read.values)
    previous = steps.decode(labels.get(LABEL_STEPS, ""))
    found = steps.predict(read.steps, known, previous, before, now)
    if found.why.startswith("files changed in"):
        files = changed(labels.get(LABEL_COMMIT, ""))
        found = steps.predict(read.steps, known, previous, before, now, files)
    return found


def _exports(service: ServicePlan) -> bool:
    """Whether the service's build exports a registry cache (``cache_to`` type=registry)."""
    return any(cache_entry(entry)[1] for entry in service.cache_to)


def _same_inputs(service: ServicePlan, digest: str, ours: Mapping[str, Mapping[str, str]]) -> str:
    """An image of ours of this service built from these inputs: the commit's own tag first."""
    mine = [
        ref
        for ref, labels in ours.items()
        if split_ref(ref)[0] == service.image
        and labels.get(LABEL_SERVICE) == service.name
        and labels.get(LABEL_INPUTS) == digest
    ]
    return min(mine, key=lambda ref: (ref != service.build_ref, ref), default="")


def with_inputs(
    project: Project,
    built: BuildPlan,
    docker: engine.Engine,
    fresh: bool,
    affected: bool,
    rebuild: bool = False,
) -> BuildPlan:
    """The plan with each service's input digest and step keys on its image (labels), what
    the cache will give each step, and, unless ``fresh`` or ``rebuild``, the services an image
    of ours with the same digest serves not built (re-tagged when that image is another
    commit's: ``affected`` leaves the commit arg out)."""
    mine = [ref for service in built.services for ref in (service.build_ref, *service.promote)]
    docker.prefetch(
        [
            *mine,
            *(
                ref
                for service in built.services
                for ref in _bases(*_text(_dockerfile(service)))
                if "$" not in ref
            ),
        ]
    )
    indexes: list[GitIndex] = []  # one per repository, the project's first
    reads, owners = [], []
    walked: dict[tuple[Path, tuple[str, ...]], dict[str, str]] = {}
    planned: dict[tuple[Any, ...], tuple[list[PlannedStep], dict[str, str]]] = {}
    for service in built.services:
        context = Path(service.context).resolve()
        index = next((i for i in indexes if context.is_relative_to(i.root)), None)
        if index is None:
            index = fingerprint.git_index(docker.runner, context)
            indexes += [index] if index else []
        left_out = project.settings.commit_arg if affected else ""
        reads.append(_read_inputs(service, left_out, docker, index, walked, planned))
        owners.append(index)
    ours: dict[str, dict[str, str]] = {}  # images of ours: this commit's and :latest, or all
    if affected and not fresh:  # every image of ours may serve: one lookup of them all
        ours = docker.labelled({LABEL_TOOL: TOOL, LABEL_PROJECT: built.project})
    elif not fresh:
        for ref in mine:
            labels = docker.labels(ref)
            if labels is not None and owned_by(labels, built.project):
                ours[ref] = labels
    known = {row[1] for held in ours.values() for row in steps.decode(held.get(LABEL_STEPS, ""))}
    # a registry cache the build exports goes out with a build only: with push, it builds
    found = [
        "" if rebuild or (built.push and _exports(s)) else _same_inputs(s, read.digest, ours)
        for s, read in zip(built.services, reads, strict=True)
    ]
    services = tuple(
        replace(
            service,
            labels={
                **service.labels,
                LABEL_INPUTS: read.digest,
                LABEL_STEPS: steps.encode(read.steps),
                LABEL_VALUES: json.dumps(steps.value_hashes(read.values), separators=(",", ":")),
            },
            inputs=read.digest,
            reuse=ref,
            prediction=None
            if ref
            else _prediction(
                service,
                read,
                ours,
                known,
                fresh,
                functools.partial(_changed, docker.runner, index, context=Path(service.context)),
            ),
        )
        for service, read, ref, index in zip(built.services, reads, found, owners, strict=True)
    )
    return replace(built, services=services, affected=affected)


def prepare(
    settings: Settings,
    docker: engine.Engine,
    services: Sequence[str] = (),
    fresh: bool = False,
    pull: bool = False,
    push: bool = False,
    affected: bool = False,
    rebuild: bool = False,
) -> Prepared:
    """Resolve and plan in one call."""
    project = resolve(settings, docker.runner, services=services)
    return plan(project, docker, services, fresh, pull, None, push, affected, rebuild)


def base_images(plan: BuildPlan) -> list[str]:
    """Images named in the services' Dockerfile FROM lines (earlier stages excluded)."""
    found: list[str] = []
    for service in plan.services:
        path = Path(service.context) / service.dockerfile
        try:
            text = path.read_text()
        except OSError:
            continue
        found += _bases(path, text)
    return list(dict.fromkeys(found))


def missing_bases(prepared: Prepared) -> list[str]:
    """Base images the Dockerfiles name that are not on this engine (a ``$`` ref is skipped)."""
    return [
        ref
        for ref in base_images(prepared.plan)
        if "$" not in ref and prepared.docker.locate(ref, False) is None
    ]


# --- generated files ---------------------------------------------------------------------


def keep_resolution(project: Project) -> None:
    """Keep a fresh resolution for the next build to reuse (a build writes it, nothing else)."""
    if project.keep:
        write_generated(project.settings, project.settings.build_dir / resolved.NAME, project.keep)


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
            )
        )
    return tuple(rows)


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
    names = built.building()
    reused = {service.reuse for service in built.services if service.reuse}
    # nothing to build (every service reused): compose is not run at all
    code, progress = compose_build(names) if names else (0, BuildProgress({}, []))
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
        pairs = [(s.reuse, s.build_ref) for s in built.services if s.reuse not in ("", s.build_ref)]
        pairs += [(s.reuse or s.build_ref, ref) for s in built.services for ref in s.promote]
        pairs = [
            (source, target)
            for source, target in pairs
            if source not in reused or not prepared.docker.same_image(source, target)
        ]
        if pairs or names:  # nothing built, nothing to move: no image of ours was replaced
            dangling = prepared.docker.tag_all(pairs, built.project)
        promoted = [ref for _, ref in pairs]
        clock.lap("tags")
    why = ""
    if not ok:
        why = progress.error or (progress.messages[-1] if progress.messages else f"exit {code}")
    pushed: list[str] = []
    if ok and built.push:
        pushed += built.exported_refs()  # the build exported them already
        try:
            for ref in built.pushed_refs():
                prepared.docker.runner.check(commands.push(ref), f"docker push {ref}")
                pushed.append(ref)
        except UserError as exc:
            ok, why = False, str(exc)
        clock.lap("push")
    return BuildResult(
        ok,
        code,
        failed,
        service_results(built, progress),
        tuple(promoted),
        tuple(progress.messages[-20:]),
        why,
        tuple(pushed),
        clock.laps,
        cache,
        dangling,
        retried,
    )
