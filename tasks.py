"""Build, cache-clear and deploy a docker compose app: the invoke task collection.

This file is the root of the ``tasks`` package; its submodules live in ``tasks/``.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent / "tasks")]

from invoke.collection import Collection
from invoke.program import Program

from tasks import settings
from tasks.build import build
from tasks.clear import clear_caches
from tasks.cli import config_error_hook
from tasks.deploy import deploy, history, rollback
from tasks.doctor import doctor
from tasks.show_config import config

sys.excepthook = config_error_hook(sys.excepthook)
ns = Collection(build, clear_caches, deploy, rollback, history, config, doctor)
ns.configure(settings.defaults())


def main() -> None:
    """Entry point of the ``compose-tasks`` command: the same tasks, run from any directory."""
    try:
        version = metadata.version("compose-tasks")
    except metadata.PackageNotFoundError:
        version = "unknown (not installed)"
    Program(namespace=ns, name="compose-tasks", binary="compose-tasks", version=version).run()
