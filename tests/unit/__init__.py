"""Unit tests: no Docker engine, no network; one folder per subpackage of ``compose_tasks``."""
