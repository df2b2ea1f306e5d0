"""``invoke clear-caches``: remove the cache sources the build uses that are provably ours
(the work: ``_clear``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.tasks import task

from compose_tasks.cli import one_line_errors, runs

if TYPE_CHECKING:
    from invoke.context import Context


@task(
    name="clear-caches",
    iterable=["service"],
    help={
        "service": "clear only this service's images (repeatable); builder cache is engine-wide",
        "dry-run": "list everything that would be removed, with sizes; remove nothing",
        "yes": "do not ask for confirmation (required when not run from a terminal)",
        "keep-storage": "keep this much recent build cache (e.g. 10GB) for shared build hosts",
        "base-images": "also remove the base images named in the Dockerfiles' FROM lines "
        "(the only way to remove images this project did not build)",
        "json": "print the items and results as JSON",
    },
)
@one_line_errors
@runs("._clear")
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
