"""What a build need not do, known before it runs: each service's input digest and step keys
(recorded on its image), the services whose image of this commit is up to date or, with
``affected``, whose inputs an earlier commit's image was built from, and which steps BuildKit
will take from its cache (``steps``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from compose_tasks.buildplan import _fingerprint as fingerprint
from compose_tasks.buildplan import depends
from compose_tasks.buildplan._fingerprint import GitIndex
from compose_tasks.buildplan.model import BuildOptions, BuildPlan, ServicePlan, StageTarget
from compose_tasks.docker import commands, engine, registry
from compose_tasks.docker.refs import (
    LABEL_COMMIT,
    LABEL_IMPORTED,
    LABEL_INLINE,
    LABEL_INPUTS,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_STEPS,
    LABEL_TOOL,
    LABEL_VALUES,
    TOOL,
    cache_entry,
    has_registry,
    owned_by,
    split_ref,
)
from compose_tasks.docker.runner import Runner
from compose_tasks.dockerfile import contexts, steps
from compose_tasks.dockerfile.instructions import Dockerfile, stage_bases
from compose_tasks.dockerfile.reader import Reader
from compose_tasks.dockerfile.steps import PlannedStep


def _dockerfile(service: ServicePlan, reader: Reader) -> tuple[Path, bytes]:
    """A service's Dockerfile: its path and bytes (``dockerfile_inline`` too); a remote
    context's is not here: its path as written stands for it."""
    inline = service.build.get("dockerfile_inline")
    path = Path(service.context) / service.dockerfile
    if inline:
        return path, str(inline).encode()
    if contexts.remote(service.context):
        return path, f"{service.context} {service.dockerfile}".encode()
    return path, reader.read(path)


def _parsed(service: ServicePlan, reader: Reader) -> Dockerfile:
    """A local service's Dockerfile (or ``dockerfile_inline``), parsed (OSError: unreadable)."""
    inline = service.build.get("dockerfile_inline")
    if inline:
        return reader.inline(service.name, str(inline))
    return reader.dockerfile(Path(service.context) / service.dockerfile)


def _bases(service: ServicePlan, reader: Reader) -> list[str]:
    """The images a local Dockerfile (or ``dockerfile_inline``) starts its stages from."""
    if contexts.remote(service.context) and not service.build.get("dockerfile_inline"):
        return []
    return stage_bases(_parsed(service, reader))


@dataclass(frozen=True)
class _Read:
    """One service's inputs as the plan reads them."""

    digest: str  # ``fingerprint.service_digest``; '' when they cannot be known here
    steps: list[PlannedStep]
    values: dict[str, str]  # every ARG and ENV value its stages see
    unknown: str = ""  # why its inputs cannot be known before building (then no digest)


def _named(
    build: Mapping[str, Any],
    docker: engine.Engine,
    index: GitIndex | None,
    built_on: Mapping[str, str],
) -> tuple[dict[str, str], str]:
    """Each named context as the digest takes it (a folder's files, an image's id, a git
    ref's commit, another service's build as that service's digest), and why one cannot be
    known ('' when all can)."""
    named: dict[str, str] = {}
    for name, where in dict(build.get("additional_contexts") or {}).items():
        text = str(where)
        found = contexts.kind(text)
        if found is contexts.Kind.SERVICE:
            named[name] = built_on.get(name, text)
        elif found is contexts.Kind.IMAGE:
            named[name] = f"{text}@{docker.local_id(text.removeprefix('docker-image://'))}"
        elif found is contexts.Kind.FOLDER and Path(text).is_dir():
            named[name] = fingerprint.folder_digest(Path(text), [], index)
        elif found is contexts.Kind.GIT:
            commit, why = contexts.git_commit(docker.runner, text)
            if why:
                return named, f"named context {name}: {why}"
            named[name] = f"{text}@{commit}"
        elif found is contexts.Kind.URL:
            return named, f"named context {name} is a URL ({text}): {_UNSEEN}"
        else:
            named[name] = text
    return named, ""


_UNSEEN = "what it holds is known only when BuildKit fetches it, so it is built every time"


def _base_id(built_on: Mapping[str, str], docker: engine.Engine, ref: str) -> str:
    """What an image ref stands for in a step key: another service's build, else its id."""
    return built_on.get(ref) or docker.local_id(ref)


def _read_inputs(
    service: ServicePlan,
    commit_arg: str,
    docker: engine.Engine,
    index: GitIndex | None,
    walked: dict[tuple[Path, tuple[str, ...]], dict[str, str]],
    planned: dict[tuple[Any, ...], tuple[list[PlannedStep], dict[str, str]]],
    built_on: Mapping[str, str],
    reader: Reader,
) -> _Read:
    """A service's input digest (``fingerprint``; without ``commit_arg`` when one is named)
    and its steps' keys. ``walked`` and ``planned`` keep each context's files and each step
    plan for the services sharing them; ``built_on`` gives, for each name its build reads
    another service's result by (``depends.Need.name``), that service's digest."""
    context = Path(service.context)
    build = dict(service.build)
    path, data = _dockerfile(service, reader)
    given = {str(k): str(v) for k, v in dict(build.get("args") or {}).items() if v is not None}
    build["args"] = {k: v for k, v in dict(build.get("args") or {}).items() if k != commit_arg}
    named, unknown = _named(build, docker, index, built_on)
    if unknown:
        return _Read("", [], {}, unknown)
    named.update({f"built on {name}": digest for name, digest in built_on.items()})
    ours = {k: v for k, v in service.args.items() if k != commit_arg}
    if contexts.remote(service.context):
        if contexts.kind(service.context) is contexts.Kind.URL:
            return _Read("", [], {}, f"its build context is a URL ({service.context}): {_UNSEEN}")
        commit, why = contexts.git_commit(docker.runner, service.context)
        if why:
            return _Read("", [], {}, f"its build context: {why}")
        source = f"{service.context}@{commit}"
        digest = fingerprint.service_digest(
            data, source, build, named, ours, {}, [service.strategy]
        )
        return _Read(digest, [], {})  # its Dockerfile is in the repository: no step keys
    text = data.decode(errors="replace")
    bases = {
        ref: _base_id(built_on, docker, ref)
        for ref in stage_bases(_parsed(service, reader))
        if "$" not in ref
    }
    patterns = tuple(fingerprint.ignore_lines(context, path))
    files = walked.get((context, patterns))
    if files is None:
        files = walked[context, patterns] = fingerprint.context_files(context, patterns, index)
    digest = fingerprint.service_digest(
        data, fingerprint.files_digest(files), build, named, ours, bases, [service.strategy]
    )
    args = {**given, **service.args}
    target = str(build.get("target") or "")
    key = (
        text,
        target,
        tuple(sorted(args.items())),
        id(files),
        tuple(sorted(named.items())),
    )
    if key not in planned:  # services sharing a Dockerfile, context and args: one walk
        base_id = functools.partial(_base_id, built_on, docker)
        found = steps.Inputs(args, files, base_id, named)
        planned[key] = steps.plan_steps(_parsed(service, reader), target, found)
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
    lacking: set[str],
) -> steps.Prediction:
    """What BuildKit will take from its cache, against the service's last build here (its
    ``:latest`` image, else any image of it); ``changed`` names the context files changed
    since a commit, asked only when files are the reason; ``lacking``: the keys whose records
    the registry's images hold without layers (``_imports``)."""
    if fresh:
        rebuilt = tuple(step.position for step in read.steps)
        first = read.steps[0].label if read.steps else ""
        return steps.Prediction(len(read.steps), 0, rebuilt, first, "--fresh: no cache")
    mine = sorted(
        (ref for ref, labels in ours.items() if labels.get(LABEL_SERVICE) == service.name),
        key=lambda ref: (split_ref(ref)[1] != "latest", ref),
    )
    labels = ours[mine[0]] if mine else {}
    services = {need.name: need.service for need in service.needs}
    try:
        before = dict(json.loads(labels.get(LABEL_VALUES) or "{}"))
    except ValueError:
        before = {}
    now = steps.value_hashes(read.values)
    previous = steps.decode(labels.get(LABEL_STEPS, ""))
    commit = labels.get(LABEL_COMMIT, "")
    return steps.predict(
        read.steps, known, previous, before, now, lambda: changed(commit), services, lacking
    )


def _exports(service: ServicePlan) -> bool:
    """Whether the service's build exports a registry cache (``cache_to`` type=registry)."""
    return any(cache_entry(entry)[1] for entry in service.cache_to)


def _serves(
    service: ServicePlan, digest: str, labels: Mapping[str, str], project: str, commit: str
) -> bool:
    """Whether an image of ours (by its labels) was built for this service from these inputs
    (and, unless ``commit`` is '', for this commit)."""
    return (
        bool(digest)
        and owned_by(labels, project)
        and labels.get(LABEL_SERVICE) == service.name
        and labels.get(LABEL_INPUTS) == digest
        and (not commit or labels.get(LABEL_COMMIT) == commit)
    )


def _same_inputs(
    service: ServicePlan,
    digest: str,
    ours: Mapping[str, Mapping[str, str]],
    project: str,
    commit: str,
) -> str:
    """An image of ours of this service built from these inputs: the commit's own tag first
    ('' when the inputs cannot be known)."""
    stages = {stage.ref for stage in service.stages}  # same labels, another stage's content
    mine = [
        ref
        for ref, labels in ours.items()
        if split_ref(ref)[0] == service.image
        and ref not in stages
        and _serves(service, digest, labels, project, commit)
    ]
    return min(mine, key=lambda ref: (ref != service.build_ref, ref), default="")


@dataclass(frozen=True)
class _Remote:
    """What the registry holds of a service: its last pushed image's ref and labels."""

    ref: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    problem: str = ""  # why the registry could not say


def _in_registry(service: ServicePlan) -> _Remote:
    """The service's last pushed image: its branch tag, else ``:latest`` (one manifest and one
    config read each, no layer)."""
    for ref in sorted(service.promote, key=lambda ref: split_ref(ref)[1] == "latest"):
        try:
            found = registry.image_labels(ref)
        except OSError as exc:
            return _Remote(problem=f"{ref}: {exc}")
        except ValueError:
            continue  # not an image (a cache manifest): look no further there
        if found is not None:
            return _Remote(ref, found)
    return _Remote()


def _registry_lookups(built: BuildPlan, reads: list[_Read], wanted: list[bool]) -> list[_Remote]:
    """``_in_registry`` of the services ``wanted`` marks, all at once."""
    todo = [s for s, want in zip(built.services, wanted, strict=True) if want]
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = dict(zip([s.name for s in todo], pool.map(_in_registry, todo), strict=True))
    return [found.get(s.name, _Remote()) for s in built.services]


def with_inputs(
    commit_arg: str,
    built: BuildPlan,
    docker: engine.Engine,
    options: BuildOptions,
    reader: Reader,
) -> BuildPlan:
    """The plan with each service's input digest (without the commit arg: an ordinary build
    records what ``affected`` compares) and step keys on its image (labels), what the cache
    will give each step, and, unless ``fresh`` or ``rebuild``, the services an image of ours
    with the same digest serves not built: this commit's image, or with ``affected`` any
    commit's (re-tagged; the engine's list of our images is read only when this commit's and
    the promoted tags' images do not serve them all: on the containerd store that list takes
    a quarter of a second). With no image of a service here, its registry's last pushed image
    (branch tag, else ``:latest``) is read: one built from the same inputs is not built and
    not pulled (``remote``)."""
    fresh, affected, rebuild = options.fresh, options.affected, options.rebuild
    mine = [ref for service in built.services for ref in (service.build_ref, *service.promote)]
    images = [
        str(where).removeprefix("docker-image://")
        for service in built.services
        for where in dict(service.build.get("additional_contexts") or {}).values()
        if contexts.kind(str(where)) is contexts.Kind.IMAGE
    ]
    bases = [ref for s in built.services for ref in _bases(s, reader) if "$" not in ref]
    staged = [stage.ref for service in built.services for stage in service.stages]
    docker.prefetch([*mine, *staged, *bases, *images])
    indexes: list[GitIndex] = []  # one per repository, the project's first
    reads: list[_Read] = []
    owners: list[GitIndex | None] = []
    done: dict[str, _Read] = {}  # services are in build order: those built on come first
    walked: dict[tuple[Path, tuple[str, ...]], dict[str, str]] = {}
    planned: dict[tuple[Any, ...], tuple[list[PlannedStep], dict[str, str]]] = {}
    for service in built.services:
        context = Path(service.context).resolve()
        index = next((i for i in indexes if context.is_relative_to(i.root)), None)
        if index is None and not contexts.remote(service.context):
            index = fingerprint.git_index(docker.runner, context)
            indexes += [index] if index else []
        left_out = commit_arg  # the commit is compared by its label (``_serves``)
        unknown = [n.service for n in service.needs if not done[n.service].digest]
        if unknown:
            read = _Read("", [], {}, f"it is built on {unknown[0]}, whose inputs are not known")
        else:
            built_on = {
                n.name: f"{depends.SERVICE_PREFIX}{n.service}@{done[n.service].digest}"
                for n in service.needs
            }
            read = _read_inputs(service, left_out, docker, index, walked, planned, built_on, reader)
        done[service.name] = read
        reads.append(read)
        owners.append(index)
    ours: dict[str, dict[str, str]] = {}  # images of ours: this commit's and :latest, or all
    if not fresh:  # looked up already (``prefetch``)
        for ref in mine:
            labels = docker.labels(ref)
            if labels is not None and owned_by(labels, built.project):
                ours[ref] = labels
    # a registry cache the build exports goes out with a build only: with push, it builds
    commit = "" if affected else built.commit

    def serving() -> list[str]:
        return [
            ""
            if rebuild or (built.push and _exports(s))
            else _same_inputs(s, read.digest, ours, built.project, commit)
            for s, read in zip(built.services, reads, strict=True)
        ]

    found = serving()
    if affected and not fresh and not all(found):  # any image of ours may serve: list them all
        ours = docker.labelled({LABEL_TOOL: TOOL, LABEL_PROJECT: built.project})
        found = serving()
    local = {row[1] for held in ours.values() for row in steps.decode(held.get(LABEL_STEPS, ""))}
    # no image here serves: the registry may hold one (a fresh runner), read, never pulled
    ask = [
        not (fresh or rebuild or ref or not read.digest or not has_registry(s.image))
        and not any(labels.get(LABEL_SERVICE) == s.name for labels in ours.values())
        for s, read, ref in zip(built.services, reads, found, strict=True)
    ]
    remotes = _registry_lookups(built, reads, ask) if any(ask) else [_Remote()] * len(reads)
    remote = [
        r.ref if _serves(s, read.digest, r.labels, built.project, commit) else ""
        for s, read, r in zip(built.services, reads, remotes, strict=True)
    ]
    remote = _built_on_here(built, found, remote)
    seen = {**ours, **{r.ref: dict(r.labels) for r in remotes if r.ref}}
    known, intact, lacking = set(local), set(local), set[str]()
    for r in remotes:  # a registry's image, with the steps its inline cache lacks the layers of
        held = {row[1] for row in steps.decode(r.labels.get(LABEL_STEPS, ""))}
        known |= held
        intact |= held - _imported(r.labels)
        lacking |= held & _imported(r.labels)
    lacking -= intact
    problems = [f"registry: {r.problem}; built as before" for r in remotes if r.problem]
    predictions = [
        None
        if ref or there or read.unknown or (not read.steps and contexts.remote(service.context))
        else _prediction(
            service,
            read,
            seen,
            known,
            fresh,
            functools.partial(_changed, docker.runner, index, context=Path(service.context)),
            lacking,
        )
        for service, read, ref, there, index in zip(
            built.services, reads, found, remote, owners, strict=True
        )
    ]
    services = tuple(
        replace(
            service,
            labels={
                **service.labels,
                LABEL_INPUTS: read.digest,
                LABEL_STEPS: steps.encode(read.steps),
                LABEL_VALUES: json.dumps(steps.value_hashes(read.values), separators=(",", ":")),
                **_imports(built, service, read.steps, predicted, local),
            },
            inputs=read.digest,
            stages=tuple(
                replace(stage, current=not fresh and _stage_current(stage, read, docker, built))
                for stage in service.stages
            ),
            reuse=ref,
            remote=there,
            always=read.unknown,
            prediction=predicted,
        )
        for service, read, ref, there, predicted in zip(
            built.services, reads, found, remote, predictions, strict=True
        )
    )
    warnings = (*built.warnings, *dict.fromkeys(problems))
    return replace(built, services=services, affected=affected, warnings=warnings)


def _stage_current(
    stage: StageTarget, read: _Read, docker: engine.Engine, built: BuildPlan
) -> bool:
    """Whether the stage's cache image here was built from exactly the steps planned now for
    its stage (each key chains every step and stage before it), its inline cache complete:
    building it again would give the same image."""
    labels = docker.labels(stage.ref)
    if read.unknown or labels is None or not owned_by(labels, built.project):
        return False
    word = stage.stage.lower()

    def of_stage(rows: Iterable[tuple[str, str]]) -> dict[str, str]:
        return {at: key for at, key in rows if steps.stage_of(at).lower() == word}

    now = of_stage((step.position, step.key) for step in read.steps)
    before = of_stage((row[0], row[1]) for row in steps.decode(labels.get(LABEL_STEPS, "")))
    return bool(now) and now == before and not set(now.values()) & _imported(labels)


def _imported(labels: Mapping[str, str]) -> set[str]:
    """The step keys an image's label says its inline cache lacks (``_imports``)."""
    try:
        found = json.loads(labels.get(LABEL_IMPORTED) or "[]")
    except ValueError:
        return set()
    return {str(key) for key in found} if isinstance(found, list) else set()


def _imports(
    built: BuildPlan,
    service: ServicePlan,
    planned: list[PlannedStep],
    predicted: steps.Prediction | None,
    local: set[str],
) -> dict[str, str]:
    """The label naming the steps this build will take from a registry's cache (predicted
    cached, known from no image here) that its image's inline cache will lack: on a builder
    that drops them (``Builder.drops_imported``), those a later step of the same stage is built
    on (measured: a stage taken whole from the cache exports its records intact). The next
    runner reading this image knows they will run."""
    if not (built.drops_imported and LABEL_INLINE in service.labels and predicted):
        return {}
    rebuilt = set(predicted.rebuilt)
    keys = [
        step.key
        for at, step in enumerate(planned)
        if step.position not in rebuilt
        and step.key not in local
        and any(
            later.position in rebuilt
            and steps.stage_of(later.position) == steps.stage_of(step.position)
            for later in planned[at + 1 :]
        )
    ]
    return {LABEL_IMPORTED: json.dumps(keys, separators=(",", ":"))} if keys else {}


def _built_on_here(built: BuildPlan, found: list[str], remote: list[str]) -> list[str]:
    """``remote`` less the services a service built here is built on (its build reads their
    image: they are built too, from the cache)."""
    names = [s.name for s in built.services]
    kept = list(remote)
    for index in reversed(range(len(names))):  # dependents come after what they are built on
        if found[index] or kept[index]:
            continue
        for need in built.services[index].needs:
            kept[names.index(need.service)] = ""
    return kept
