"""``invoke build``: plan, write the override, run ``docker compose build``, promote, report
(the work: ``_build``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.tasks import task

from compose_tasks.cli import one_line_errors, runs

if TYPE_CHECKING:
    from invoke.context import Context


@task(
    iterable=["service"],
    help={
        "service": "build only this service (repeatable); default: every service with a build",
        "fresh": "build without any cache (--no-cache, no cache_from); deletes nothing",
        "pull": "always try to pull newer base images",
        "dry-run": "print the plan (with the steps each service will take from the cache and why "
        "the first other one rebuilds), the exact command and the override; build nothing",
        "json": "print the plan, the result, the phase timings and every command and engine call "
        "with its start and duration (calls) as JSON; progress goes to stderr",
        "push": "after every service built, push the commit tag, cache tags and stage cache "
        "images to the registry (setting push; needs setting registry or registry image names)",
        "affected": "build only the services whose inputs (Dockerfile, context files, args, base "
        "images...) changed since their last build here; the others' images are re-tagged with "
        "this commit (setting affected)",
        "rebuild": "build every service, even one whose image of this commit was built from the "
        "same inputs (the cache still applies)",
        "require-cache": "exit 3 when a step predicted cached ran or a cache source the compose "
        "file declares could not be read (setting require_cache): a CI gate",
    },
)
@one_line_errors
@runs("._build")
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
