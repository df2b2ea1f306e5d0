"""The build plan as plain data: what becomes of each cache entry, each service's build, the
whole build, and the Dockerfile lint's findings. ``plan`` makes it; everything else reads it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from compose_tasks.buildplan.depends import Need
from compose_tasks.docker.commands import compose
from compose_tasks.docker.refs import cache_entry
from compose_tasks.dockerfile.lint import Finding
from compose_tasks.dockerfile.steps import Prediction


@dataclass(frozen=True)
class BuildOptions:
    """What one build is asked for (the task's flags over the settings): made once by the task
    and passed by keyword to where each option acts."""

    services: tuple[str, ...] = ()  # empty: every buildable service
    fresh: bool = False  # no cache sources
    pull: bool = False  # pull newer base images
    push: bool = False  # push the images (and registry caches)
    affected: bool = False  # an image built from the same inputs at any commit is re-tagged
    rebuild: bool = False  # build even what is up to date


DEFAULTS = BuildOptions()  # every buildable service, no flag


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
    # its image here was built from exactly the steps this build plans for the stage: not built
    current: bool = False


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
    inputs: str = ""  # the digest of its build inputs (``fingerprint``), recorded as a label
    # not built: the local image built from the same inputs (re-tagged if another commit's)
    reuse: str = ""
    prediction: Prediction | None = None  # what the cache will give each step (``steps``)
    needs: tuple[Need, ...] = ()  # the services it is built on (``depends``)
    # named contexts the tool adds: an image of another service, as that service's build
    contexts: Mapping[str, str] = field(default_factory=dict)
    always: str = ""  # why its inputs cannot be known here, so it is built every time
    # not built, not pulled: the registry's image of this service built from the same inputs
    # (its manifest is copied to this commit's tag with push)
    remote: str = ""

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
    affected: bool = False  # services whose inputs did not change are re-tagged, not built
    # consecutive builds: a service after the images it is built on, where the builder cannot
    # take another service's build as a named context (one wave when it can)
    waves: tuple[tuple[str, ...], ...] = ()
    drops_imported: bool = False  # ``Builder.drops_imported``

    def service_names(self) -> list[str]:
        return [service.name for service in self.services]

    def building(self) -> list[str]:
        """The services compose builds: all but those reused from an earlier build."""
        return [s.name for s in self.services if not s.reuse and not s.remote]

    def pushed_refs(self) -> list[str]:
        """What a push sends: each service's commit tag, cache tags and stage cache images."""
        return [
            ref
            for s in self.services
            if not s.remote  # its tags are set in the registry itself
            for ref in (s.build_ref, *s.promote, *(stage.ref for stage in s.stages))
        ]

    def exported_refs(self) -> list[str]:
        """The registry caches the build itself exports (``cache_to`` of type registry)."""
        refs = (cache_entry(e)[1] for s in self.services if not s.remote for e in s.cache_to)
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
        names = [name for name in self.building() if not only or name in only]
        stages = [
            stage.service
            for s in self.services
            if s.name in names
            for stage in s.stages
            if not stage.current
        ]
        return [*argv, *names, *stages]

    def env(self) -> dict[str, str]:
        """Variables exported to the compose process."""
        return {self.commit_var: self.commit}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for service, plan in zip(data["services"], self.services, strict=True):
            service["cache_from"] = plan.cache_from
            service["cache_to"] = plan.cache_to
        data["argv"] = self.build_argv()
        return data
