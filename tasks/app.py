"""The task collection, and the ``compose-tasks`` program that runs it from any directory.

``tasks.py`` (what ``invoke`` loads) re-exports ``ns``; the console script runs ``main``. Both
work from a wheel and from an editable install.
"""

from __future__ import annotations

import sys

from invoke.collection import Collection
from invoke.program import Program

from compose_tasks import settings
from compose_tasks.build import build
from compose_tasks.clear import clear_caches
from compose_tasks.cli import config_error_hook
from compose_tasks.deploy import deploy, history, rollback
from compose_tasks.doctor import doctor
from compose_tasks.show_config import config

sys.excepthook = config_error_hook(sys.excepthook)
ns = Collection(build, clear_caches, deploy, rollback, history, config, doctor)
ns.configure(settings.defaults())


def main() -> None:
    """Entry point of the ``compose-tasks`` command: the same tasks, run from any directory."""
    from importlib import metadata  # only here: it costs a tenth of the start-up

    try:
        version = metadata.version("compose-tasks")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    Program(namespace=ns, name="compose-tasks", binary="compose-tasks", version=version).run()
