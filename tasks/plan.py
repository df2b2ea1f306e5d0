"""The build plan: pure data from the resolved compose project, settings and git state.

Nothing here talks to Docker: image lookups come in as a function, so the plan can be built,
printed (``--dry-run``, ``--json``) and unit-tested without an engine.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tasks import cachedir, mask
from tasks.commands import compose, extra_env_file
from tasks.errors import UserError
from tasks.lint import Finding, ignored
from tasks.refs import (
    BUILDCACHE_TAG,
    LABEL_COMMIT,
    LABEL_INLINE,
    cache_entry,
    has_registry,
    ownership,
    split_ref,
)
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.gitinfo import GitInfo

INLINE_ARG = "BUILDKIT_INLINE_CACHE"
OVERRIDE_NAME = "compose.build.yml"
CACHE_DIR = "cache folder"  # origins of the cache folder strategy's entries
REGISTRY_CACHE = "registry cache"


@dataclass(frozen=True)
class Found:
    """Where a cache ref exists, and whether it carries inline cache metadata (None: unknown)."""

    where: str  # "local" | "registry" | "unverified"
    inline: bool | None


@dataclass(frozen=True)
class Builder:
    """How compose will build, and which cache backends it can export."""

    name: str
    exports: tuple[str, ...]
    bake: bool
    containerd: bool = False  # the engine stores images in containerd
    # False on engines whose BuildKit crashes dockerd ("concurrent map writes") when builds that
    # share steps export inline cache at the same time: Engine 20.10 (seen here), 23.0 (reported)
    parallel_inline: bool = True
    # Whether a cache_from image ref may be an image on this engine: only BuildKit inside a
    # classic-store engine reads its local images; on the containerd store (and in a
    # docker-container builder) a cache_from ref is always looked up in its registry.
    local_images: bool = True

    @property
    def cache_dirs(self) -> bool:
        """Whether the builder exports a local cache folder (every stage, ``mode=max``)."""
        return "local" in self.exports

    def no_local_images(self) -> str:
        """Why a local image is no cache source here (empty: it is one)."""
        if self.local_images:
            return ""
        if self.containerd and (not self.bake or self.name.endswith("driver docker")):
            return (
                "a local image is no cache source on the containerd image store (BuildKit "
                "looks a cache_from image up in its registry)"
            )
        return "a local image is no cache source for a builder with its own BuildKit"

    def describe(self) -> str:
        return f"{self.name} (cache export: {', '.join(self.exports) or 'none'})"


def builder_from(
    buildx_inspect: str | None, containerd: bool, parallel_inline: bool = True
) -> Builder:
    """Compose uses buildx bake when buildx exists; the docker driver exports only inline cache.

    ``buildx_inspect`` is the output of ``docker buildx inspect``, None when buildx is missing.
    """
    if buildx_inspect is None:
        exports = ("inline", "registry", "local") if containerd else ("inline",)
        name = "compose internal builder (buildx not installed)"
        return Builder(name, exports, False, containerd, parallel_inline, not containerd)
    driver = next(
        (
            line.split(":", 1)[1].strip()
            for line in buildx_inspect.splitlines()
            if line.strip().startswith("Driver:")
        ),
        "docker",
    )
    name = f"buildx bake, driver {driver}"
    if driver == "docker" and not containerd:
        return Builder(name, ("inline",), True, containerd, parallel_inline)
    capable = ("inline", "registry", "local", "gha")
    if driver == "docker":  # the engine's own BuildKit, containerd image store
        return Builder(name, capable, True, containerd, parallel_inline, local_images=False)
    # another driver builds in its own BuildKit, not the engine's
    return Builder(name, capable, True, containerd, local_images=False)


BUILDX_NEEDED = (0, 17)  # compose refuses to build beside an older buildx ...
BUILDX_CHECKED_SINCE = (2, 40)  # ... since this compose (docker/compose#13295)


def parse_version(text: str) -> tuple[int, ...]:
    """``v2.40.3-desktop.1`` or ``0.29.1+ds1`` -> (2, 40, 3) / (0, 29, 1)."""
    parts = []
    for piece in text.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0].split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def buildx_version(text: str) -> tuple[int, ...]:
    """The version in ``docker buildx version`` output (``github.com/docker/buildx v0.13.1 …``)."""
    words = text.split()
    return parse_version(words[1]) if len(words) > 1 else ()


def buildx_mismatch(buildx: tuple[int, ...], compose: tuple[int, ...]) -> str:
    """Why this compose cannot build beside this buildx (empty: it can)."""
    if not buildx or buildx >= BUILDX_NEEDED or compose < BUILDX_CHECKED_SINCE:
        return ""
    need = ".".join(map(str, BUILDX_NEEDED))
    return (
        f"docker buildx {'.'.join(map(str, buildx))} is older than {need}, which compose "
        f"{'.'.join(map(str, compose))} needs to build: upgrade buildx to {need} or later, or "
        "remove the old buildx plugin (compose then builds with its internal builder)"
    )


# (ref, ask its registry too, a local image counts) -> where it is
Locate = Callable[[str, bool, bool], Found | None]


class Status(StrEnum):
    """What became of a cache entry."""

    LOCAL = "local image"  # an image on this engine
    REGISTRY = "registry"  # an image its registry confirmed
    UNVERIFIED = "unverified"  # its registry could not be reached: kept, the builder may find it
    BACKEND = "cache backend"  # a non-image cache (local dir, gha) the builder reads or writes
    DROPPED = "dropped"  # left out of the build; ``reason`` says why


@dataclass(frozen=True)
class CacheSource:
    """One cache_from (or cache_to) entry and what became of it."""

    entry: str  # as compose takes it: a bare ref or "type=...,key=value"
    origin: str  # "compose file" | "branch tag" | "latest"
    status: Status
    reason: str = ""  # why it was dropped, or what kind of backend it is
    inline: bool | None = None  # a local image built with inline cache metadata (None: unknown)

    @property
    def kept(self) -> bool:
        return self.status is not Status.DROPPED

    def describe(self) -> str:
        """Status and reason as one phrase: ``dropped: no such image …``."""
        return f"{self.status}: {self.reason}" if self.reason else str(self.status)


@dataclass(frozen=True)
class StageTarget:
    """A dependency stage built as its own image so that its layers carry inline cache."""

    service: str  # the extra compose service in the override: ``<service>--cache-<stage>``
    stage: str
    ref: str  # ``<image>:cache-<stage>``


STAGE_SEPARATOR = "--cache-"


@dataclass(frozen=True)
class ServicePlan:
    """What one service's build will do."""

    name: str
    image: str  # repository, no tag
    build_ref: str  # image:<commit tag>, what compose builds
    promote: tuple[str, ...]  # refs moved to the build after every service succeeded
    sources: tuple[CacheSource, ...]
    exports: tuple[CacheSource, ...]  # the compose file's cache_to entries, kept or dropped
    args: Mapping[str, str]  # build args the tool adds
    labels: Mapping[str, str]
    context: str
    dockerfile: str
    # how the cache survives a prune: "inline", "stage images", "cache folder", "cache_to"
    strategy: str = "inline"
    stages: tuple[StageTarget, ...] = ()  # dependency stages built as their own cache images
    build: Mapping[str, Any] = field(default_factory=dict)  # the compose build section, resolved
    cache_dir: str = ""  # the local cache folder it imports from ("": none)

    @property
    def cache_from(self) -> list[str]:
        return [source.entry for source in self.sources if source.kept]

    @property
    def cache_to(self) -> list[str]:
        return [export.entry for export in self.exports if export.kept]


@dataclass(frozen=True)
class BuildPlan:
    """Everything ``invoke build`` will run, as data."""

    project: str
    project_dir: str
    compose_files: tuple[str, ...]
    profiles: tuple[str, ...]
    env_file: str
    override_file: str
    commit_var: str
    commit: str
    commit_tag: str
    commit_source: str
    builder: str
    fresh: bool
    pull: bool
    services: tuple[ServicePlan, ...]
    push: bool = False  # push every built ref to its registry after every service built
    serial: bool = False  # build one target at a time (see ``build_argv``)
    warnings: tuple[str, ...] = field(default=())
    lint: tuple[Finding, ...] = field(default=())  # Dockerfile cache lint, filled by the caller

    def service_names(self) -> list[str]:
        return [service.name for service in self.services]

    def pushed_refs(self) -> list[str]:
        """What a push sends: each service's commit tag, cache tags and stage cache images."""
        return [
            ref
            for s in self.services
            for ref in (s.build_ref, *s.promote, *(stage.ref for stage in s.stages))
        ]

    def exported_refs(self) -> list[str]:
        """The registry caches the build itself exports (``cache_to`` of type registry)."""
        refs = (cache_entry(entry)[1] for s in self.services for entry in s.cache_to)
        return [ref for ref in refs if ref]

    def aliases(self) -> dict[str, str]:
        """Extra stage services -> the service they belong to (for counting steps)."""
        return {stage.service: s.name for s in self.services for stage in s.stages}

    def compose_argv(self) -> list[str]:
        """``docker compose`` with the project's files, our override, name and profiles."""
        return compose(
            self.project_dir,
            [*self.compose_files, self.override_file],
            self.project,
            self.profiles,
            self.env_file,
        )

    def build_argv(self, only: Sequence[str] = ()) -> list[str]:
        """The exact build command (of the services in ``only``, when given).

        ``serial`` plans build one target at a time: the BuildKit of older engines crashes
        dockerd ("concurrent map writes" in the inline cache exporter) when concurrent builds
        share steps and export inline cache, which a service and its stage targets always do,
        and so do services built from one Dockerfile.
        """
        parallel = ["--parallel", "1"] if self.serial else []
        argv = [*self.compose_argv(), *parallel, "--progress", "json", "build"]
        if self.fresh:
            argv.append("--no-cache")
        if self.pull:
            argv.append("--pull")
        names = [name for name in self.service_names() if not only or name in only]
        return [*argv, *names, *(alias for alias, s in self.aliases().items() if s in names)]

    def env(self) -> dict[str, str]:
        """Variables exported to the compose process."""
        return {self.commit_var: self.commit}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for service, plan in zip(data["services"], self.services, strict=True):
            service["cache_from"] = plan.cache_from
            service["cache_to"] = plan.cache_to
        data["argv"] = self.build_argv()
        data["override"] = override(self)
        return data


class _Override(list[str]):
    """A sequence written with compose's ``!override`` tag: replaces instead of merging."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Override, lambda dumper, data: dumper.represent_sequence("!override", list(data))
)


def override(plan: BuildPlan) -> dict[str, Any]:
    """The generated compose override as data."""
    services: dict[str, Any] = {}
    for service in plan.services:
        build: dict[str, Any] = {
            "cache_from": service.cache_from,
            "args": dict(service.args),
            "labels": dict(service.labels),
        }
        if service.exports:
            build["cache_to"] = service.cache_to
        services[service.name] = {"image": service.build_ref, "build": build}
        for stage in service.stages:
            extra = {key: value for key, value in service.build.items() if key not in _NOT_COPIED}
            extra.update(build, target=stage.stage)
            extra["args"] = {**dict(service.build.get("args") or {}), **service.args}
            extra.pop("cache_to", None)
            services[stage.service] = {"image": stage.ref, "build": extra}
    return {"services": services}


# Keys of a build section a stage's extra target does not take from its service.
_NOT_COPIED = {"target", "tags", "cache_to", "cache_from", "args", "labels"}


def escaped(value: Any) -> Any:
    """Every string with ``$`` doubled: compose interpolates the files it reads."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {key: escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [escaped(item) for item in value]
    return value


def override_yaml(plan: BuildPlan) -> str:
    """The override as YAML; ``cache_from`` replaces the compose file's list (compose >= 2.24)."""
    data = escaped(override(plan))
    for service in data["services"].values():
        for key in ("cache_from", "cache_to"):
            if key in service["build"]:
                service["build"][key] = _Override(service["build"][key])
    header = "# Generated by 'invoke build'; do not edit. Rewritten on every build.\n"
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False)


def image_repo(project: str, name: str, service: Mapping[str, Any], registry: str = "") -> str:
    """The service's image repository: its ``image:`` without tag, else compose's default;
    with a ``registry`` setting, under it (unless ``image:`` names a registry host itself)."""
    repo = split_ref(str(service["image"]))[0] if service.get("image") else f"{project}-{name}"
    return f"{registry}/{repo}" if registry and not has_registry(repo) else repo


def _source(entry: str, origin: str, locate: Locate, builder: Builder) -> CacheSource:
    """Check one entry. Entries the compose file names are asked of their registry (Docker Hub
    when the ref names none); refs the tool derives only when they name a registry host. A
    local image counts only where the builder reads local images."""
    kind, ref = cache_entry(entry)
    if ref is None:
        if kind not in builder.exports:
            why = f"'{kind}' cache needs a buildx builder with a docker-container driver"
            return CacheSource(entry, origin, Status.DROPPED, why)
        if origin == CACHE_DIR and not cachedir.filled(Path(_field(entry, "src"))):
            return CacheSource(entry, origin, Status.DROPPED, "empty: no build exported here yet")
        return CacheSource(entry, origin, Status.BACKEND, f"{kind} cache")
    remote = origin == "compose file" or has_registry(ref)
    if not builder.local_images and not remote:
        return CacheSource(entry, origin, Status.DROPPED, builder.no_local_images())
    found = locate(ref, remote, builder.local_images)
    if found is None:
        if builder.local_images:
            why = "no such image locally or in its registry"
        elif has_registry(ref):
            why = "no such image in its registry"
        else:  # a Docker Hub ref: the builder asks Docker Hub, whatever this engine holds
            why = f"not on Docker Hub, and {builder.no_local_images()}"
        return CacheSource(entry, origin, Status.DROPPED, why)
    if found.where == "unverified":
        why = "its registry could not be reached; kept, the builder may still find it"
        if not builder.local_images and not has_registry(ref):
            why += f" there ({builder.no_local_images()})"
        return CacheSource(entry, origin, Status.UNVERIFIED, why)
    status = Status.LOCAL if found.where == "local" else Status.REGISTRY
    return CacheSource(entry, origin, status, inline=found.inline)


def _field(entry: str, key: str) -> str:
    """One ``key=value`` field of a cache entry."""
    return next(
        (part[len(key) + 1 :] for part in entry.split(",") if part.startswith(f"{key}=")), ""
    )


def _export(entry: str, exports: Sequence[str]) -> CacheSource:
    """A compose ``cache_to`` entry, dropped when the builder cannot export its type."""
    kind, _ = cache_entry(entry)
    if kind in exports:
        return CacheSource(entry, "compose file", Status.BACKEND, f"{kind} cache export")
    return CacheSource(
        entry,
        "compose file",
        Status.DROPPED,
        f"this builder cannot export '{kind}' cache (compose would fail the build; "
        "needs a buildx builder with a docker-container driver or the containerd image store)",
    )


def _checked(
    candidates: Sequence[tuple[str, str]], locate: Locate, builder: Builder, fresh: bool
) -> list[CacheSource]:
    """Each distinct candidate (entry, origin), checked (all dropped with ``--fresh``)."""
    sources: list[CacheSource] = []
    for entry, origin in candidates:
        if any(entry == seen.entry for seen in sources):
            continue
        if fresh:
            why = "--fresh builds without cache"
            sources.append(CacheSource(entry, origin, Status.DROPPED, why))
        else:
            sources.append(_source(entry, origin, locate, builder))
    return sources


def _source_warnings(
    name: str, sources: Sequence[CacheSource], exports: Sequence[CacheSource]
) -> list[str]:
    """What a user should know about a service's cache entries."""
    out = [
        f"{name}: cache_to {export.entry} {export.describe()}"
        for export in exports
        if not export.kept
    ]
    secrets = mask.active()
    for source in sources:
        if source.kept and secrets.text(source.entry) != source.entry:
            out.append(
                f"{name}: cache entry {secrets.text(source.entry)} holds a secret; it is written "
                "to the generated override (mode 0600) and shown masked"
            )
        if source.kept and source.inline is False:
            out.append(
                f"{name}: cache source {source.entry} has no inline cache metadata; "
                "it can only serve after a build with BUILDKIT_INLINE_CACHE=1"
            )
    return out


def _stage_targets(name: str, image: str, stages: Sequence[str]) -> tuple[StageTarget, ...]:
    return tuple(
        StageTarget(f"{name}{STAGE_SEPARATOR}{stage}", stage, f"{image}:cache-{stage}")
        for stage in stages
    )


def _candidates(
    service: Mapping[str, Any],
    image: str,
    settings: Settings,
    git: GitInfo,
    stage_targets: Sequence[StageTarget],
    folder: str = "",
) -> list[tuple[str, str]]:
    """A service's possible cache entries with their origins, in priority order."""
    build = service.get("build") or {}
    candidates = [(str(entry), "compose file") for entry in build.get("cache_from") or ()]
    if folder:
        candidates.append((f"type=local,src={folder}", CACHE_DIR))
        if has_registry(image):
            candidates.append((f"type=registry,ref={image}:{BUILDCACHE_TAG}", REGISTRY_CACHE))
    if settings.branch_tag and git.branch:
        candidates.append((f"{image}:{git.branch}", "branch tag"))
    candidates.append((f"{image}:latest", "latest"))
    return candidates + [(target.ref, "stage cache") for target in stage_targets]


def cache_refs(
    project: Mapping[str, Any],
    settings: Settings,
    git: GitInfo,
    services: Sequence[str] = (),
    stages: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """Every image ref a plan of ``services`` may look up (to look them up in one go)."""
    name = str(project.get("name") or settings.project_name)
    refs = []
    for service in select(project, services):
        data = project["services"][service]
        image = image_repo(name, service, data, settings.registry)
        targets = _stage_targets(service, image, (stages or {}).get(service, ()))
        for entry, origin in _candidates(data, image, settings, git, targets):
            ref = cache_entry(entry)[1]
            if ref is not None and origin != REGISTRY_CACHE:
                refs.append(ref)
    return refs


def _own_exports(folder: str, image: str, push: bool) -> tuple[CacheSource, ...]:
    """The cache exports of the cache folder strategy: the service's next cache folder, and its
    registry cache tag when the build pushes."""
    exports = [
        CacheSource(
            f"type=local,dest={folder}{cachedir.NEXT},mode=max",
            CACHE_DIR,
            Status.BACKEND,
            "local cache export, every stage",
        )
    ]
    if push and has_registry(image):
        entry = f"type=registry,ref={image}:{BUILDCACHE_TAG},mode=max"
        exports.append(CacheSource(entry, REGISTRY_CACHE, Status.BACKEND, "registry cache export"))
    return tuple(exports)


def _service_plan(
    project: str,
    name: str,
    service: Mapping[str, Any],
    settings: Settings,
    git: GitInfo,
    locate: Locate,
    builder: Builder,
    fresh: bool,
    warnings: list[str],
    stages: Sequence[str] = (),
    push: bool = False,
) -> ServicePlan:
    build = service.get("build") or {}
    image = image_repo(project, name, service, settings.registry)
    exports = tuple(_export(str(entry), builder.exports) for entry in build.get("cache_to") or ())
    inline_only = builder.exports == ("inline",)
    folder = ""
    if builder.cache_dirs and settings.cache_size and not any(e.kept for e in exports):
        folder = str(cachedir.current(settings.cache_dir, name))
        exports = _own_exports(folder, image, push)
    stage_targets = _stage_targets(name, image, stages)
    candidates = [
        (entry, origin)
        for entry, origin in _candidates(service, image, settings, git, stage_targets, folder)
        if origin != "stage cache" or (inline_only and settings.inline_cache)
    ]
    sources = _checked(candidates, locate, builder, fresh)
    inline = settings.inline_cache and not any(export.kept for export in exports)
    args = {settings.commit_arg: git.commit}
    labels = {**ownership(project, name), LABEL_COMMIT: git.commit}
    if inline:
        args[INLINE_ARG] = "1"
        labels[LABEL_INLINE] = "1"
    warnings += _source_warnings(name, sources, exports)
    promote = [f"{image}:latest"]
    if settings.branch_tag and git.branch:
        promote.append(f"{image}:{git.branch}")
    strategy = "inline"
    if folder:
        strategy = "cache folder"
    elif any(export.kept for export in exports):
        strategy = "cache_to"
    elif stage_targets and inline and inline_only:
        strategy = "stage images"
    elif stage_targets and not builder.cache_dirs:
        warnings.append(
            f"{name}: stages {', '.join(t.stage for t in stage_targets)} are not cached by "
            "inline cache (final stage only): after a builder prune they rebuild"
        )
    return ServicePlan(
        name=name,
        image=image,
        build_ref=f"{image}:{git.tag}",
        promote=tuple(promote),
        sources=tuple(sources),
        exports=exports,
        args=args,
        labels=labels,
        context=str(build.get("context", "")),
        dockerfile=str(build.get("dockerfile", "Dockerfile")),
        strategy=strategy,
        stages=stage_targets if strategy == "stage images" else (),
        build=dict(build),
        cache_dir=folder,
    )


def context_warnings(plan: BuildPlan) -> list[str]:
    """A build folder inside a build context that its .dockerignore does not exclude."""
    folder = Path(plan.override_file).parent
    out = []
    for service in plan.services:
        context = Path(plan.project_dir, service.context or ".").resolve()
        if not folder.is_relative_to(context):
            continue
        inside = folder.relative_to(context).as_posix()
        try:
            patterns = (context / ".dockerignore").read_text(errors="replace").splitlines()
        except OSError:
            patterns = []
        if not ignored(patterns, inside):
            out.append(
                f"{service.name}: build_dir {inside} lies in its build context and .dockerignore "
                "does not exclude it: the generated override busts the cache and enters the "
                f"image; add '{inside}' to {context / '.dockerignore'} or unset build_dir"
            )
    return out


def check_sources(name: str, build: Mapping[str, Any]) -> None:
    """A local build context and its Dockerfile must exist; say which is missing, in one line."""
    context = str(build.get("context") or ".")
    if "://" in context or context.startswith("git@") or build.get("dockerfile_inline"):
        return
    folder = Path(context)
    if not folder.is_dir():
        raise UserError(f"service '{name}': build context {folder} is not a folder")
    dockerfile = folder / str(build.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_file():
        raise UserError(
            f"service '{name}': no Dockerfile at {dockerfile} (set build.dockerfile or add it)"
        )


def select(project: Mapping[str, Any], wanted: Sequence[str]) -> list[str]:
    """Services with a build section, narrowed to ``wanted``; unknown names are an error."""
    services: Mapping[str, Any] = project.get("services") or {}
    buildable = [name for name, svc in services.items() if svc.get("build")]
    for name in wanted:
        if name not in services:
            raise UserError(f"unknown service '{name}' (services: {', '.join(services) or 'none'})")
        if name not in buildable:
            raise UserError(
                f"service '{name}' has no build section (buildable: "
                f"{', '.join(buildable) or 'none'})"
            )
    chosen = [name for name in buildable if not wanted or name in wanted]
    if not chosen:
        raise UserError("the compose project has no service with a build section")
    return chosen


def _few(names: Sequence[str], shown: int = 4) -> str:
    """Names for a message: the first few, then how many more."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def _may_share(names: Sequence[str], steps: Mapping[str, frozenset[str] | None]) -> bool:
    """Whether two of these services' builds may share a step (unknown Dockerfiles may)."""
    seen: set[str] = set()
    for name in names:
        found = steps.get(name)
        if found is None:
            return len(names) > 1
        if seen & found:
            return True
        seen |= found
    return False


def make_plan(
    project: Mapping[str, Any],
    settings: Settings,
    files: Sequence[Path],
    git: GitInfo,
    locate: Locate,
    builder: Builder,
    services: Sequence[str] = (),
    fresh: bool = False,
    pull: bool = False,
    stages: Mapping[str, Sequence[str]] | None = None,
    push: bool = False,
    steps: Mapping[str, frozenset[str] | None] | None = None,
) -> BuildPlan:
    """Plan a build of ``services`` (all buildable ones when empty).

    ``stages`` names, per service, the Dockerfile stages its target depends on (read by the
    caller); with an inline-only builder each becomes its own cache image. ``steps`` are the
    services' ``first_steps`` (unknown: they may share steps).
    """
    name = str(project.get("name") or settings.project_name)
    warnings = [git.warning] if git.warning else []
    push = push or settings.push
    plans = tuple(
        _service_plan(
            name,
            service,
            project["services"][service],
            settings,
            git,
            locate,
            builder,
            fresh,
            warnings,
            (stages or {}).get(service, ()),
            push,
        )
        for service in select(project, services)
    )
    inline = any(INLINE_ARG in service.args for service in plans)
    names = [service.name for service in plans]
    crash_prone = inline and not builder.parallel_inline and _may_share(names, steps or {})
    if crash_prone:
        warnings.append(
            f"services {_few(names)} may share build steps, and this engine's BuildKit "
            "crashes dockerd when builds sharing steps export inline cache at once "
            "(moby/moby#40752, #44918): they build one at a time (Engine 24+ builds them in "
            "parallel)"
        )
    plan = BuildPlan(
        project=name,
        project_dir=str(settings.project_dir),
        compose_files=tuple(str(path) for path in files),
        profiles=settings.profiles,
        env_file=extra_env_file(settings),
        override_file=str(settings.build_dir / OVERRIDE_NAME),
        commit_var=settings.commit_arg,
        commit=git.commit,
        commit_tag=git.tag,
        commit_source=git.source,
        builder=builder.describe(),
        fresh=fresh,
        pull=pull or settings.pull,
        services=plans,
        push=push,
        serial=crash_prone or any(service.stages for service in plans),
        warnings=tuple(warnings),
    )
    if plan.push:
        local = [s.image for s in plan.services if not has_registry(s.image)]
        if local:
            raise UserError(
                f"--push needs a registry: {', '.join(local)} names none (set "
                "INVOKE_STACK_REGISTRY, e.g. 127.0.0.1:5000/team, or give image: a registry host)"
            )
    return replace(plan, warnings=(*plan.warnings, *context_warnings(plan)))


def display_argv(argv: Sequence[str]) -> str:
    """A command for display, with secret values masked."""
    return mask.active().text(shlex.join(argv))
