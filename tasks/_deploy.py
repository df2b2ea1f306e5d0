"""The work of ``invoke deploy``, ``rollback``, ``history`` (declared in ``deploy``): health-gated
deploys with a lock and a record.

The tasks parse flags, call the pipeline (``pipeline``), the rollout (``rollout``) and the
target's state (``state``), and render the outcome.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from invoke.context import Context

from compose_tasks import report
from compose_tasks.buildplan import pipeline
from compose_tasks.buildplan.model import BuildOptions
from compose_tasks.cli import settings_of
from compose_tasks.docker import commands, compose, engine
from compose_tasks.docker.refs import split_ref
from compose_tasks.docker.runner import Runner
from compose_tasks.errors import Failed, Unreachable, UserError
from compose_tasks.rollout import deployment, swarm
from compose_tasks.rollout import gate as rollout
from compose_tasks.rollout.deployment import Deployment
from compose_tasks.rollout.gate import Backend, DeployOptions, Release, SwarmBackend, release
from compose_tasks.rollout.state import Action, EngineState, Lease, Outcome, deploy_lock, target_of
from compose_tasks.settings import Orchestrator, Settings

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA = re.compile(r"^[0-9a-f]{7,40}$")  # a commit tag, as the build writes it
_CONTEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def valid_tag(value: str, flag: str) -> str:
    """An image tag given on the command line, or a UserError."""
    if not _TAG.match(value):
        raise UserError(
            f"invalid {flag} {value!r}: expected an image tag (letters, digits, '_', '.', '-', "
            "at most 128, not starting with '.' or '-')"
        )
    return value


def valid_timeout(text: str) -> float:
    """The ``--timeout`` flag in seconds (0: the setting), or a UserError."""
    try:
        value = float(text or 0)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:  # also refuses nan and inf
        raise UserError(f"invalid --timeout {text!r}: expected seconds from 1 to 86400")
    return value


def engine_of(context: str) -> engine.Engine:
    """The task's engine: a docker context's endpoint (ssh:// hosts included), else
    DOCKER_HOST, else the default socket. Every command and the SDK go to it."""
    runner = Runner()
    if not context:
        return engine.Engine(runner)
    if not _CONTEXT.match(context):
        raise UserError(f"invalid --context {context!r}: expected a docker context name")
    done = runner.run(commands.context_host(context))
    host = done.out.strip()
    if not done.ok or not host:
        raise UserError(f"unknown docker context '{context}'")
    return engine.Engine(Runner({"DOCKER_HOST": host}), host=host)


def lease_of(settings: Settings) -> Lease:
    """The deploy lock's lease and heartbeat, from the settings."""
    return Lease(float(settings.lock_lease), float(settings.lock_heartbeat))


def _log(line: str) -> None:
    report.say(line, err=True)


@contextlib.contextmanager
def engine_kept(docker: engine.Engine, what: str) -> Iterator[None]:
    """The engine going away under a deploy or rollback (stopped, restarted, its connection
    dropped): one line naming it and the state things are left in, not the call that failed."""
    try:
        yield
    except Unreachable:
        raise Failed(
            docker.gone(
                what,
                "what runs is what the engine brings back (restart: policies); the next deploy "
                "takes the lock over and removes what this one started",
            )
        ) from None


def target_and_backend(
    settings: Settings, docker: engine.Engine, deployment: Deployment
) -> tuple[EngineState, Backend]:
    """The target's state and the backend that brings versions up on it."""
    on_swarm = settings.orchestrator is Orchestrator.SWARM
    if on_swarm:
        count = swarm.nodes(docker)
        if count == 0:
            raise UserError(
                "orchestrator is swarm but this engine is not a swarm manager "
                "(docker swarm init, or point DOCKER_HOST / --context at a manager)"
            )
        if count > 1 and not settings.registry:
            raise UserError(
                f"the swarm has {count} nodes: they pull images from a registry; set "
                "INVOKE_STACK_REGISTRY (setting registry; the deploy pushes the images there)"
            )
    state = EngineState(docker.sdk, target_of(docker, deployment.project), swarm=on_swarm)
    backend = (SwarmBackend if on_swarm else Backend)(deployment, docker)
    return state, backend


def _finish(outcome: Release, json: bool) -> None:
    """Print a release's outcome (``--json``: as data); a failure is the one error line."""
    if json:
        report.emit_json(asdict(outcome))
    if outcome.ok:
        if json:
            return
        pruned = f"; pruned {len(outcome.pruned)} old images" if outcome.pruned else ""
        report.say(f"{outcome.action} ok: :{outcome.sha} healthy in {outcome.seconds}s{pruned}")
        return
    failed = f"{outcome.action} of :{outcome.sha} failed ({outcome.detail})"
    if not outcome.previous:
        _log(outcome.diagnosis)
        raise Failed(f"{failed}; no earlier deploy to roll back to, the stack is left stopped")
    if not outcome.back_ok:
        raise Failed(
            f"{failed} and rollback to :{outcome.previous} failed too ({outcome.back_detail})"
        )
    raise Failed(f"{failed}; rolled back to :{outcome.previous}, healthy")


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
    if sha:
        valid_tag(sha, "--sha")
    wait = valid_timeout(timeout)
    docker = engine_of(context)
    settings = settings_of(c, orchestrator=orchestrator or None)
    if no_build or sha:  # an existing image: no plan, no Dockerfile read
        project = pipeline.resolve(settings, docker.runner)
        prepared = None
    else:
        prepared = pipeline.prepare(settings, docker, BuildOptions(affected=settings.affected))
        project = prepared.project
    state, backend = target_and_backend(
        settings, docker, deployment.of(settings, project.files, project.data)
    )
    version = sha or (prepared.plan.commit_tag if prepared else project.git.tag)
    options = DeployOptions(Action.DEPLOY, version, wait or settings.deploy_timeout, break_lock)
    with (
        engine_kept(docker, "deploy"),
        deploy_lock(state, options.break_lock, lease_of(settings), options.doing(), _log),
    ):
        if prepared is not None:
            for line in report.warning_lines(prepared.plan):
                _log(line)
            result = pipeline.execute(
                prepared,
                lambda step: _log(report.step_line(step)),
                lambda step, seconds: _log(report.running_line(step, seconds)),
            )
            if not result.ok:
                if result.engine_lost:  # nothing to record it on, and nothing was deployed
                    raise Failed(docker.gone("deploy", "its build was cut short, nothing deployed"))
                entry = {"action": Action.DEPLOY, "sha": prepared.plan.commit_tag}
                state.record({**entry, "result": Outcome.BUILD_FAILED, "detail": result.error})
                raise Failed(
                    f"build failed ({result.culprits}); "
                    "nothing deployed, the running version is untouched"
                )
        _finish(release(backend, state, options, _log), json)


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
    if to:
        valid_tag(to, "--to")
    wait = valid_timeout(timeout)
    docker = engine_of(context)
    settings = settings_of(c, orchestrator=orchestrator or None)
    project = pipeline.resolve(settings, docker.runner)  # no plan: nothing is built
    state, backend = target_and_backend(
        settings, docker, deployment.of(settings, project.files, project.data)
    )
    current = backend.running() or state.last_good()
    sha = to or state.last_good(other_than=current)
    if not sha:
        raise UserError("nothing to roll back to: no earlier successful deploy in the history")
    options = DeployOptions(Action.ROLLBACK, sha, wait or settings.deploy_timeout, break_lock)
    with (
        engine_kept(docker, "rollback"),
        deploy_lock(state, options.break_lock, lease_of(settings), options.doing(), _log),
    ):
        _finish(release(backend, state, options, _log), json)


def _unrecorded(entries: list[dict[str, Any]], running: list[str]) -> str:
    """The one commit tag the running images have (others' images, tagged by version, aside)
    when the history's newest successful entry is another sha ('' when they agree, disagree
    among themselves, or there is no history)."""
    tags = {tag for image in running if _SHA.match(tag := split_ref(image)[1])}
    good = [str(e["sha"]) for e in entries if e.get("result") == Outcome.OK]
    if len(tags) != 1 or not good:
        return ""
    tag = tags.pop()
    return tag if tag and tag != good[-1] else ""


def history(c: Context, json: bool = False, context: str = "", orchestrator: str = "") -> None:
    """Show every deploy and rollback of this target: sha, time, user, host, result."""
    docker = engine_of(context)
    settings = settings_of(c, orchestrator=orchestrator or None)
    name = compose.project_name(settings) or pipeline.resolve(settings, docker.runner).name
    target = target_of(docker, name)
    on_swarm = settings.orchestrator is Orchestrator.SWARM
    state = EngineState(docker.sdk, target, swarm=on_swarm)
    entries = state.history()
    running = [] if on_swarm else rollout.running_images(docker.sdk, target.project)
    unrecorded = _unrecorded(entries, running)
    if unrecorded:  # a history that ends elsewhere than what runs: said, not hidden
        report.say(
            f"note: {target.project} runs :{unrecorded} (read from its containers), which its "
            "history does not end with: deployed by other means, or entries were removed",
            err=True,
        )
    if json:
        report.emit_json(entries)
        return
    rows = [
        [
            e["time"],
            e["action"],
            e["sha"],
            e["result"],
            e.get("seconds", ""),
            e["user"],
            e["host"],
            str(e.get("detail", ""))[:60],
        ]
        for e in entries
    ]
    if rows:
        headers = ["time", "action", "sha", "result", "secs", "user", "host", "detail"]
        report.say(report.table(headers, rows))
        return
    if running:  # the history is gone, not the deploys: never "no deploys yet" then
        report.say(
            f"no deploy history of {target.project} on the target, but it runs "
            f"{', '.join(running)} (read from its containers): the history was removed "
            f"(with the container and volume {state.keeper_name} that keep it); the next "
            "deploy starts it again"
        )
        return
    report.say(f"no deploys of {target.project} yet")
