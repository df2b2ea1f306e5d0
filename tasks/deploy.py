"""``invoke deploy``, ``rollback``, ``history``: health-gated deploys with a lock and a record
(the work: ``_deploy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke.tasks import task

from compose_tasks.cli import one_line_errors, runs

if TYPE_CHECKING:
    from invoke.context import Context

TARGET_HELP = {
    "context": "deploy to this docker context's engine (default: DOCKER_HOST or local)",
    "timeout": "seconds to wait for health checks (default: setting deploy_timeout)",
    "break-lock": "no longer needed: a lock whose lease ran out (setting lock_lease) or whose "
    "holder provably ended is taken without it; a live holder is never broken",
    "json": "print the outcome as JSON (progress goes to stderr)",
    "orchestrator": "compose (containers on one engine) or swarm (a stack, rolling updates); "
    "setting orchestrator",
}


@task(
    help={
        "no-build": "deploy existing images instead of building first",
        "sha": "deploy this image tag (a short sha), not the current commit; implies --no-build",
        **TARGET_HELP,
    }
)
@one_line_errors
@runs("._deploy")
def deploy(
    c: Context,
    no_build: bool = False,
    sha: str = "",
    timeout: str = "",
    context: str = "",
    break_lock: bool = False,
    json: bool = False,
    orchestrator: str = "",
) -> None:
    """Build, bring the stack up behind health checks, roll back automatically if unhealthy."""


@task(help={"to": "redeploy this sha (default: the one before the current deploy)", **TARGET_HELP})
@one_line_errors
@runs("._deploy")
def rollback(
    c: Context,
    to: str = "",
    timeout: str = "",
    context: str = "",
    break_lock: bool = False,
    json: bool = False,
    orchestrator: str = "",
) -> None:
    """Redeploy an earlier sha without building, through the same health gate."""


@task(
    help={
        "json": "print the history as JSON",
        "context": TARGET_HELP["context"],
        "orchestrator": TARGET_HELP["orchestrator"],
    }
)
@one_line_errors
@runs("._deploy")
def history(c: Context, json: bool = False, context: str = "", orchestrator: str = "") -> None:
    """Show every deploy and rollback of this target: sha, time, user, host, result."""
