"""Talking to Docker: the command runner, every docker and compose command line, the SDK
adapter, the engine and its builder, the registry client and build progress."""
