"""The tests: unit tests (no Docker) under ``unit/``, mirroring the package; engine tests
(a real engine, compose and registry) under ``engine/``; ``fakes`` and ``support`` serve both."""
