"""``invoke doctor``: check the engine, compose, builder, git, settings, cache sources and
Dockerfiles (the work: ``_doctor``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.tasks import task

from compose_tasks.cli import one_line_errors, runs

if TYPE_CHECKING:
    from invoke.context import Context


@task(
    iterable=["service"],
    help={
        "service": "check only this service's cache sources and Dockerfile (repeatable)",
        "strict": "exit non-zero on warnings too",
        "json": "print the checks as JSON",
    },
)
@one_line_errors
@runs("._doctor")
def doctor(
    c: Context, service: list[str] | None = None, strict: bool = False, json: bool = False
) -> None:
    """Check the engine, compose, builder, git, settings, cache sources and Dockerfiles."""
