"""Reading what a build reads: Dockerfile instructions, ``.dockerignore``, build contexts, the
per-step cache keys, and the cache lint."""
