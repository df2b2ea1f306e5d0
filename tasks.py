"""Build, cache-clear and deploy a docker compose app: the invoke task collection.

This file is the root of the ``tasks`` package; its submodules live in ``tasks/``. The
collection itself is built in ``tasks/app.py`` (which the ``compose-tasks`` command runs).
"""

from __future__ import annotations

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent / "tasks")]

from tasks.app import main, ns

__all__ = ["main", "ns"]
