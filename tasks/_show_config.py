"""The work of ``invoke config`` (declared in ``show_config``): the effective settings and where
each came from."""

from __future__ import annotations

from invoke.context import Context

from compose_tasks import report
from compose_tasks.cli import settings_of
from compose_tasks.settings import describe


def config(c: Context, json: bool = False) -> None:
    """Show the effective settings, their sources, and the env file's variables (secrets masked)."""
    settings = settings_of(c)
    data = describe(settings)
    if json:
        report.emit_json(data)
        return
    rows = [[row["name"], row["value"], row["source"]] for row in data["settings"]]
    report.say(report.table(["setting", "value", "source"], rows))
    if data["env"]:
        report.say(f"\nvariables in {data['env_file']}:")
        report.say(report.table(["name", "value"], list(data["env"].items())))
