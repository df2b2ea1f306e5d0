"""Demo backend."""
