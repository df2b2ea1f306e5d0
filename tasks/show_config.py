"""``invoke config``: the effective settings and where each came from (the work:
``_show_config``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.tasks import task

from compose_tasks.cli import one_line_errors, runs

if TYPE_CHECKING:
    from invoke.context import Context


@task(help={"json": "print the settings as JSON"})
@one_line_errors
@runs("._show_config")
def config(c: Context, json: bool = False) -> None:
    """Show the effective settings, their sources, and the env file's variables (secrets masked)."""
