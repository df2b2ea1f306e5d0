"""compose-tasks: build, cache-clear and deploy a docker compose app from invoke tasks.

``from compose_tasks import ns`` is the task collection, to use as a project's own or to add to
it (``ns.add_collection(stack, name="stack")``); ``main`` is the ``compose-tasks`` command.
Both load on first use: importing one module of the package loads only that module and what it
imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose_tasks.app import main, ns

__all__ = ["main", "ns"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from compose_tasks import app  # loaded on first use, see above

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
