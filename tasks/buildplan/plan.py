"""The build plan: pure data from the resolved compose project, settings and git state.

Nothing here talks to Docker: image lookups come in as a function, so the plan can be built,
printed (``--dry-run``, ``--json``) and unit-tested without an engine. The plan's types live in
``model``, the override it writes in ``override``, the builder it plans for in ``builder``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compose_tasks.buildplan import cachedir
from compose_tasks.buildplan._sources import (
    CACHE_DIR,
    REGISTRY_CACHE,
    Locate,
    checked,
    export_of,
    own_exports,
    unanswered,
    warnings_of,
)
from compose_tasks.buildplan.generated import OVERRIDE_NAME
from compose_tasks.buildplan.model import (
    DEFAULTS,
    STAGE_SEPARATOR,
    BuildOptions,
    BuildPlan,
    ServicePlan,
    StageTarget,
)
from compose_tasks.docker.builder import Builder
from compose_tasks.docker.commands import extra_env_file
from compose_tasks.docker.refs import (
    BUILDCACHE_TAG,
    LABEL_COMMIT,
    LABEL_INLINE,
    cache_entry,
    has_registry,
    ownership,
    split_ref,
)
from compose_tasks.dockerfile.dockerignore import ignored
from compose_tasks.errors import UserError
from compose_tasks.settings import Settings

if TYPE_CHECKING:
    from compose_tasks.buildplan.gitinfo import GitInfo

INLINE_ARG = "BUILDKIT_INLINE_CACHE"


def image_repo(project: str, name: str, service: Mapping[str, Any], registry: str = "") -> str:
    """The service's image repository: its ``image:`` without tag, else compose's default;
    with a ``registry`` setting, under it (unless ``image:`` names a registry host itself)."""
    repo = split_ref(str(service["image"]))[0] if service.get("image") else f"{project}-{name}"
    return f"{registry}/{repo}" if registry and not has_registry(repo) else repo


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
    registry_caches: bool = False,
) -> list[str]:
    """Every image ref a plan of ``services`` may look up (to look them up in one go): the
    cache sources and each service's image of this commit; with ``registry_caches``, the
    cache sources only, registry caches (``type=registry``) included."""
    name = str(project.get("name") or settings.project_name)
    refs = []
    for service in select(project, services):
        data = project["services"][service]
        image = image_repo(name, service, data, settings.registry)
        if not registry_caches:
            refs.append(f"{image}:{git.tag}")
        targets = _stage_targets(service, image, (stages or {}).get(service, ()))
        for entry, origin in _candidates(data, image, settings, git, targets):
            ref = cache_entry(entry)[1]
            if ref is not None and (registry_caches or origin != REGISTRY_CACHE):
                refs.append(ref)
    return refs


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
    exports = tuple(export_of(str(entry), builder.exports) for entry in build.get("cache_to") or ())
    inline_only = builder.exports == ("inline",)
    folder = ""
    if builder.cache_dirs and settings.cache_size and not any(e.kept for e in exports):
        folder = str(cachedir.current(settings.cache_dir, name))
        exports = own_exports(folder, image, push)
    stage_targets = _stage_targets(name, image, stages)
    candidates = [
        (entry, origin)
        for entry, origin in _candidates(service, image, settings, git, stage_targets, folder)
        if origin != "stage cache" or (inline_only and settings.inline_cache)
    ]
    sources, exports = unanswered(checked(candidates, locate, builder, fresh), exports)
    inline = settings.inline_cache and not any(export.kept for export in exports)
    args = {settings.commit_arg: git.commit}
    labels = {**ownership(project, name), LABEL_COMMIT: git.commit}
    if inline:
        args[INLINE_ARG] = "1"
        labels[LABEL_INLINE] = "1"
    warnings += warnings_of(name, sources, exports)
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
        if not builder.stage_images:
            warnings.append(
                f"{name}: on this engine (classic image store, Engine 24+) BuildKit's inline "
                "cache serves the dependency stages of a multi-stage build in only some runs "
                "(measured on 28.5: from the registry on a fresh runner 2 of 6 fully cached, "
                "after a prune from local stage images most but not all): the containerd "
                "image store (its cache folder and mode=max registry cache serve every stage) "
                "or a docker-container builder with cache_to mode=max keeps them"
            )
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
    options: BuildOptions = DEFAULTS,
    stages: Mapping[str, Sequence[str]] | None = None,
    steps: Mapping[str, frozenset[str] | None] | None = None,
) -> BuildPlan:
    """Plan a build of ``options.services`` (all buildable ones when empty).

    ``stages`` names, per service, the Dockerfile stages its target depends on (read by the
    caller); with an inline-only builder each becomes its own cache image. ``steps`` are the
    services' ``first_steps`` (unknown: they may share steps).
    """
    name = str(project.get("name") or settings.project_name)
    warnings = [git.warning] if git.warning else []
    fresh, push = options.fresh, options.push or settings.push
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
        for service in select(project, options.services)
    )
    inline = any(INLINE_ARG in service.args for service in plans)
    names = [service.name for service in plans]
    staged = any(service.stages for service in plans)  # a stage target shares its service's steps
    crash_prone = (
        inline and not builder.parallel_inline and (staged or _may_share(names, steps or {}))
    )
    if crash_prone and not staged:
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
        drops_imported=builder.drops_imported,
        fresh=fresh,
        pull=options.pull or settings.pull,
        services=plans,
        push=push,
        serial=crash_prone,
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
