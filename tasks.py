"""Build, cache-clear and deploy a docker compose app: invoke's entry to the task collection.

invoke loads this file as the module ``tasks``; ``__path__`` makes it stand for the ``tasks``
package beside it, so the package's modules import as they do everywhere else. The collection
is built in ``tasks/app.py`` (which the ``compose-tasks`` command runs).
"""

from __future__ import annotations

from pathlib import Path

__path__ = [str(Path(__file__).resolve().parent / "tasks")]

from tasks.app import main, ns

__all__ = ["main", "ns"]
