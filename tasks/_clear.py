"""The work of ``invoke clear-caches`` (declared in ``clear``): remove exactly the cache sources
the build plan uses, nothing else."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from invoke.context import Context

from compose_tasks import report
from compose_tasks.buildplan import cachedir
from compose_tasks.buildplan.generated import generated_files, remove_generated
from compose_tasks.buildplan.model import BuildOptions, BuildPlan, Status
from compose_tasks.buildplan.pipeline import Prepared, base_images, prepare
from compose_tasks.cli import settings_of
from compose_tasks.docker import engine, registry
from compose_tasks.docker.refs import (
    BUILDCACHE_TAG,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    LABEL_PROJECT,
    LABEL_SERVICE,
    cache_entry,
    has_registry,
    not_ours_reason,
    owned_by,
    split_ref,
)
from compose_tasks.docker.runner import Runner
from compose_tasks.docker.sdk import ImageInfo, Sdk
from compose_tasks.errors import Conflict, EngineError, Failed, NotFound, UserError, first_line
from compose_tasks.settings import Settings
from compose_tasks.sizes import human, parse_size


@dataclass
class Item:
    """One thing to clear and what became of it."""

    kind: str  # image | dangling image | registry ref | base image | builder cache | build folder
    # | cache folder
    name: str
    size: int  # bytes, as the engine reports them before removal (shared layers counted)
    note: str = ""
    result: str = "planned"
    ok: bool = True
    kept: str = ""  # why it stays (not ours, shared); a kept item is never touched
    digest: str = ""  # registry refs: the manifest to delete

    def __post_init__(self) -> None:
        if self.kept:
            self.result = f"kept: {self.kept}"


def _users(api: Sdk) -> dict[str, list[str]]:
    """Image id -> containers using it, as 'name (status)'."""
    users: dict[str, list[str]] = {}
    for container in api.containers():
        users.setdefault(container.image_id, []).append(f"{container.name} ({container.status})")
    return users


def _safe_list(api: Sdk, name: str = "", labels: dict[str, str] | None = None) -> list[ImageInfo]:
    try:
        return api.images(name, labels)
    except EngineError:
        return []


class _Collector:
    """Gathers the clear's items; an image is listed once, ours to remove or kept with why."""

    def __init__(self, prepared: Prepared, narrowed: bool) -> None:
        self.plan = prepared.plan
        self.api = prepared.docker.sdk
        self.users = _users(self.api)
        self.wanted = set(self.plan.service_names()) if narrowed else None
        self.items: list[Item] = []
        self.seen: set[str] = set()
        self.sized: dict[str, str] = {}  # image id -> the item that carries its size

    def image(self, image: ImageInfo, name: str, kind: str = "image", force: bool = False) -> None:
        if name in self.seen:
            return
        self.seen.add(name)
        labels = image.labels
        if not force and not owned_by(labels, self.plan.project):
            why = f"not ours: {not_ours_reason(labels, self.plan.project)}"
            self.items.append(Item(kind, name, 0, kept=why))
            return
        using = self.users.get(image.id, [])
        note = f"in use by {', '.join(using)}: untagged, not deleted" if using else ""
        first = self.sized.setdefault(image.id, name)
        size = image.size if first == name else 0
        note = note or ("" if first == name else f"same image as {first}")
        self.items.append(Item(kind, name, size, note))

    def ref(self, ref: str, kind: str = "image", force: bool = False) -> None:
        """A local image by ref; one that cannot be looked up is kept, saying why."""
        if ref in self.seen:
            return
        try:
            self.image(self.api.image(ref), ref, kind, force)
        except EngineError as exc:
            if kind != "base image":
                self.seen.add(ref)
                why = f"cannot look it up: {first_line(exc, 120)}"
                self.items.append(Item(kind, ref, 0, kept=why))

    def in_scope(self, image: ImageInfo) -> bool:
        # Images of services no longer in the compose file still belong to the project,
        # unless the clear was narrowed with --service.
        labels = image.labels
        service = labels.get(LABEL_SERVICE) or labels.get(COMPOSE_SERVICE)
        return self.wanted is None or service in self.wanted

    def project_images(self) -> None:
        """Tags of the plan's image names, and images with our or compose's project label."""
        project = self.plan.project
        for service in self.plan.services:
            for image in _safe_list(self.api, service.image):
                for tag in image.tags:
                    if split_ref(tag)[0] == service.image:
                        self.image(image, tag)
        for label in (LABEL_PROJECT, COMPOSE_PROJECT):
            for image in _safe_list(self.api, labels={label: project}):
                if not self.in_scope(image):
                    continue
                for tag in image.tags:
                    self.image(image, tag)
                if not image.tags and owned_by(image.labels, project):
                    self.image(image, image.short_id, "dangling image")

    def cache_sources(self) -> None:
        """Images the compose file names in ``cache_from``: local ones here, registry refs
        through the registry (ours only, never a shared manifest)."""
        remote: list[str] = []
        for service in self.plan.services:
            for source in service.sources:
                _, ref = cache_entry(source.entry)
                if ref is None or not source.kept:
                    continue
                if source.status is Status.REGISTRY:
                    remote.append(ref)
                else:
                    self.ref(ref)
        copies, unlisted = _registry_copies(self.plan)
        remote += copies
        self.items += unlisted
        for deletion in registry.plan_deletions(remote, self.plan.project):
            item = Item("registry ref", deletion.ref, 0, kept=deletion.kept, digest=deletion.digest)
            self.items.append(item)


def _ours_by_name(plan: BuildPlan) -> re.Pattern[str]:
    """The tags this tool pushes: commit tags, cache tags (latest, branch) and stage caches."""
    fixed = {split_ref(ref)[1] for service in plan.services for ref in service.promote}
    fixed.add(BUILDCACHE_TAG)
    names = "|".join(re.escape(tag) for tag in sorted(fixed))
    return re.compile(rf"^(?:[0-9a-f]{{12}}(?:-dirty)?|unknown|cache-[\w.-]+|{names})$")


def _registry_copies(plan: BuildPlan) -> tuple[list[str], list[Item]]:
    """Tags this project pushed to the registry of each service image that names one."""
    pattern = _ours_by_name(plan)
    refs: list[str] = []
    kept: list[Item] = []
    for service in plan.services:
        if not has_registry(service.image):
            continue
        try:
            tags = registry.tags(service.image)
        except OSError as exc:
            kept.append(Item("registry ref", service.image, 0, kept=f"cannot list tags: {exc}"))
            continue
        refs += [f"{service.image}:{tag}" for tag in tags if pattern.match(tag)]
    return refs, kept


def collect(
    prepared: Prepared,
    settings: Settings,
    narrowed: bool = False,
    keep_storage: int | None = None,
    with_base_images: bool = False,
) -> list[Item]:
    """Everything the clear would touch, derived from the build plan; only ours is removed.

    An image tag is ours when its image carries this tool's label for this project; anything
    else the plan names (base images, foreign images in ``cache_from`` or tagged into our
    repository, images of plain ``docker compose`` builds) is listed as kept, with the reason.
    """
    found = _Collector(prepared, narrowed)
    found.project_images()
    found.cache_sources()
    if with_base_images:
        for ref in base_images(prepared):
            found.ref(ref, "base image", force=True)
    items = found.items
    unused = [size for size, in_use in prepared.docker.sdk.disk_usage().cache if not in_use]
    scope = "all unused build cache (engine-wide)"
    if keep_storage is not None:
        scope = f"build cache beyond {human(keep_storage)} (engine-wide, least recently used)"
    items.append(Item("builder cache", scope, sum(unused)))
    wanted = set(prepared.plan.service_names()) if narrowed else None
    for folder in cachedir.entries(settings.cache_dir):
        service = folder.name.removesuffix(cachedir.NEXT)
        if wanted is None or service in wanted:
            items.append(Item("cache folder", str(folder), cachedir.size(folder)))
    generated = generated_files(settings)
    if generated:
        size = sum(path.stat().st_size for path in generated)
        note = ", ".join(path.name for path in generated)
        items.append(Item("build folder", str(settings.build_dir), size, note))
    return items


def _remove_image(api: Sdk, item: Item) -> None:
    try:
        deleted = api.remove_image(item.name)
    except NotFound:
        item.result = "already gone"
        return
    except Conflict:
        if item.kind == "dangling image":
            item.result = "kept: in use by a container (no tag, serves no cache)"
            return
        deleted = api.remove_image(item.name, force=True)
    item.result = "removed" if deleted else "untagged"


def carry_out(
    prepared: Prepared, items: Iterable[Item], keep_storage: int | None, settings: Settings
) -> dict[str, int]:
    """Remove every item that is ours, recording each result; return bytes reclaimed by kind."""
    api = prepared.docker.sdk
    reclaimed = {"images": 0, "builder cache": 0, "cache folders": 0, "build folder": 0}
    layers_before = api.disk_usage().layers_size
    for item in items:
        if item.kept:
            continue
        try:
            if item.kind in ("image", "dangling image", "base image"):
                _remove_image(api, item)
            elif item.kind == "registry ref":
                item.result = registry.delete(item.name, item.digest)
            elif item.kind == "builder cache":
                reclaimed["builder cache"], records = api.prune_builds(keep_storage)
                item.result = f"pruned {records} records"
            elif item.kind == "cache folder":
                shutil.rmtree(item.name)
                reclaimed["cache folders"] += item.size
                item.result = "removed"
            elif item.kind == "build folder":
                removed = remove_generated(settings)
                reclaimed["build folder"] = item.size
                item.result = f"removed {removed} generated file(s)"
        except (EngineError, OSError) as exc:
            item.ok = False
            item.result = "failed: " + first_line(exc, 120)
    reclaimed["images"] = max(0, layers_before - api.disk_usage().layers_size)
    return reclaimed


def _confirm(count: int) -> None:
    if not sys.stdin.isatty():
        raise UserError(
            f"refusing to remove {count} items without --yes (not an interactive terminal); "
            "nothing was removed"
        )
    answer = input(f"Remove these {count} items? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise UserError("cancelled; nothing was removed")


def _table(items: list[Item]) -> str:
    rows = [[i.kind, i.name, human(i.size), i.result, i.note] for i in items]
    return report.table(["kind", "name", "size", "result", "note"], rows)


def clear_caches(
    c: Context,
    service: list[str] | None = None,
    dry_run: bool = False,
    yes: bool = False,
    keep_storage: str = "",
    base_images: bool = False,
    json: bool = False,
) -> None:
    """Remove the cache sources the build uses that are provably ours; list the rest as kept."""
    keep = parse_size(keep_storage) if keep_storage else None
    settings = settings_of(c)
    options = BuildOptions(services=tuple(service or []))
    prepared = prepare(settings, engine.Engine(Runner()), options)
    items = collect(prepared, settings, bool(service), keep, base_images)
    if dry_run:
        for item in items:
            if not item.kept:
                item.result = "would remove"
        if json:
            report.emit_json({"dry_run": True, "items": [asdict(i) for i in items]})
        else:
            report.say(_table(items))
            going = sum(not item.kept for item in items)
            report.say(
                f"dry run: {going} items would go, {len(items) - going} kept; nothing removed",
            )
        return
    if not yes:
        report.say(_table(items), err=True)
        _confirm(sum(not item.kept for item in items))
    reclaimed = carry_out(prepared, items, keep, settings)
    failed = [item for item in items if not item.ok]
    if json:
        data = {"items": [asdict(i) for i in items], "reclaimed": reclaimed, "ok": not failed}
        report.emit_json(data)
    else:
        report.say(_table(items))
        report.say(
            "reclaimed: "
            + ", ".join(f"{kind} {human(size)}" for kind, size in reclaimed.items())
            + " (images: engine layer accounting; builder cache: engine prune result)"
        )
    if failed:
        raise Failed(f"{len(failed)} of {len(items)} items were not cleared (see the table)")
