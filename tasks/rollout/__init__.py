"""Deploying a version: the deployment target, the health gate and rollback, rolling a
compose service, Swarm stacks, and the deploy state (lock and history) kept on the target."""
