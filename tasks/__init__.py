"""compose-tasks: build, cache-clear and deploy a docker compose app from invoke tasks.

The package is the code; ``tasks.py`` beside it is invoke's entry (it loads the collection from
``tasks.app``), and the ``compose-tasks`` command runs ``tasks.app.main``. Importing a module of
the package loads only that module and what it imports.
"""
