"""This project's own tasks: the compose-tasks collection, used the way any project uses it.

A project that wants these tasks beside its own adds the collection under a name instead::

    from invoke import Collection
    from compose_tasks import ns as stack

    ns = Collection(my_task)
    ns.add_collection(stack, name="stack")  # invoke stack.build, stack.deploy, ...
"""

from __future__ import annotations

from compose_tasks import ns

__all__ = ["ns"]
