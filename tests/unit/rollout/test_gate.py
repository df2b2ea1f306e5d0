"""Releases on an in-memory engine: the health gate, the automatic rollback, the record, the
pruning of old images, and a rollback that needs no build plan (no image or buildx lookups)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from compose_tasks import _deploy, deploy, report
from compose_tasks.buildplan import pipeline
from compose_tasks.docker import engine
from compose_tasks.docker.refs import ownership
from compose_tasks.docker.runner import Result
from compose_tasks.docker.sdk import Sdk
from compose_tasks.errors import UserError
from compose_tasks.rollout import deployment
from compose_tasks.rollout.gate import Backend, DeployOptions, release
from compose_tasks.rollout.state import Action, EngineState, Target
from compose_tasks.settings import load
from tests.fakes import Container, FakeCli, FakeDocker

PROJECT = {
    "name": "shop",
    "services": {"api": {"build": {"context": "/gone"}}, "db": {"image": "postgres:16"}},
}


class World:
    """One project on a fake engine, with images ``shop-api:<sha>`` for the shas given."""

    def __init__(self, tmp_path: Path, shas: list[str], bad: tuple[str, ...] = ()) -> None:
        root = tmp_path / "shop"
        root.mkdir(exist_ok=True)
        self.settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=root)
        self.client = FakeDocker()
        for number, sha in enumerate(shas):
            self.client.images.add(f"shop-api:{sha}", ownership("shop", "api"), f"t{number}")
        self.runner = FakeCli(
            client=self.client,
            health=lambda image: "unhealthy" if image.endswith(bad) else "healthy",
            permissive=True,
        )
        self.docker = engine.Engine(self.runner, Sdk(self.client))
        self.target = deployment.of(self.settings, (root / "compose.yaml",), PROJECT)
        self.state = EngineState(self.docker.sdk, Target("local", "shop"))
        self.backend = Backend(self.target, self.docker)
        self.log: list[str] = []

    def release(self, sha: str, action: Action = Action.DEPLOY) -> Any:
        return release(self.backend, self.state, DeployOptions(action, sha, 5), self.log.append)

    def history(self) -> list[tuple[str, str, str]]:
        return [(e["action"], e["sha"], e["result"]) for e in self.state.history()]


def test_a_healthy_release_runs_the_new_images_and_is_recorded(tmp_path: Path) -> None:
    world = World(tmp_path, ["aaa"])
    outcome = world.release("aaa")
    assert (outcome.ok, outcome.detail) == (True, "all services healthy")
    assert world.backend.running() == "aaa"
    assert world.history() == [("deploy", "aaa", "ok")]
    [up] = [call for call in world.runner.calls if "up" in call]
    assert up[-4:] == ["up", "-d", "--no-build", "--remove-orphans"]
    assert up[up.index("-p") + 1] == "shop" and "--project-directory" in up


def test_an_unhealthy_release_rolls_back_to_what_runs_now(tmp_path: Path) -> None:
    world = World(tmp_path, ["aaa", "bbb"], bad=("bbb",))
    assert world.release("aaa").ok
    outcome = world.release("bbb")
    assert not outcome.ok and outcome.detail == "api is unhealthy"
    assert (outcome.previous, outcome.back_ok) == ("aaa", True)
    assert "404 Not Found" in outcome.diagnosis  # the health check's own output
    assert world.backend.running() == "aaa"
    assert world.history() == [
        ("deploy", "aaa", "ok"),
        ("deploy", "bbb", "failed"),
        ("rollback", "aaa", "ok"),
    ]


def test_a_first_release_that_fails_is_stopped_not_rolled_back(tmp_path: Path) -> None:
    world = World(tmp_path, ["bbb"], bad=("bbb",))
    outcome = world.release("bbb")
    assert (outcome.ok, outcome.previous) == (False, "")
    assert world.runner.calls[-1][-1] == "stop"


def test_a_sha_without_images_is_refused_before_compose_runs(tmp_path: Path) -> None:
    world = World(tmp_path, ["aaa"])
    outcome = world.release("zzz")
    assert (outcome.ok, outcome.detail) == (False, "no such image: shop-api:zzz")
    assert not any("up" in call for call in world.runner.calls)


def test_old_images_beyond_keep_are_pruned_never_the_running_or_rollback_ones(
    tmp_path: Path,
) -> None:
    world = World(tmp_path, ["s1", "s2", "s3", "s4"])
    world.client.images.add("shop-api:foreign", {}, "t9")  # not ours: never touched
    assert world.release("s1").ok
    assert world.release("s4").pruned == ()  # keep_images is 5
    # the newest one beyond the protected ones stays: s3 (created after s2)
    assert world.backend.prune(1, {"s4", "s1"}) == ["shop-api:s2"]
    assert world.client.api.removed == ["shop-api:s2"]


def test_rollback_needs_no_build_plan_and_no_build_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``invoke rollback --to``: the build context ``/gone`` does not exist, and nothing asks
    for an image inspection, buildx or a Dockerfile."""
    world = World(tmp_path, ["aaa", "bbb"])
    assert world.release("bbb").ok
    project = pipeline.Project(world.settings, world.target.files, None, PROJECT)  # type: ignore[arg-type]
    monkeypatch.setattr(_deploy, "engine_of", lambda context: world.docker)
    monkeypatch.setattr(_deploy, "settings_of", lambda c, **flags: world.settings)
    monkeypatch.setattr(pipeline, "resolve", lambda settings, runner: project)
    before = len(world.runner.calls)
    deploy.rollback(MockContext(), to="aaa", timeout="5")
    assert world.backend.running() == "aaa"
    asked = world.runner.calls[before:]
    # only compose: its config hashes (which services change) and up
    assert asked and all("up" in call or "--hash" in call for call in asked)
    assert not any({"build", "inspect", "buildx", "image"} & set(call) for call in asked)
    assert world.history()[-1] == ("rollback", "aaa", "ok")


def test_history_and_an_empty_rollback_read_only_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path, ["aaa"])
    (world.settings.project_dir / "compose.yaml").write_text("name: shop\nservices: [broken\n")
    monkeypatch.setattr(_deploy, "engine_of", lambda context: world.docker)
    monkeypatch.setattr(_deploy, "settings_of", lambda c, **flags: world.settings)
    deploy.history(MockContext())
    assert capsys.readouterr().out.strip() == "no deploys of shop yet"
    assert world.release("aaa").ok
    deploy.history(MockContext(), json=True)
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["action"], entry["sha"], entry["result"]) == ("deploy", "aaa", "ok")
    project = pipeline.Project(world.settings, world.target.files, None, PROJECT)  # type: ignore[arg-type]
    monkeypatch.setattr(pipeline, "resolve", lambda settings, runner: project)
    with pytest.raises(Exit) as stopped:
        deploy.rollback(MockContext())
    assert stopped.value.message == (
        "error: nothing to roll back to: no earlier successful deploy in the history"
    )
    assert world.runner.calls[-1][-4:] == ["up", "-d", "--no-build", "--remove-orphans"]


def deploy_task(world: World, monkeypatch: pytest.MonkeyPatch, plan: Any = None) -> None:
    """Point the deploy task at the world: its engine, settings and resolved project."""
    project = pipeline.Project(world.settings, world.target.files, None, PROJECT)  # type: ignore[arg-type]
    prepared = pipeline.Prepared(project, plan, world.docker)
    monkeypatch.setattr(_deploy, "engine_of", lambda context: world.docker)
    monkeypatch.setattr(_deploy, "settings_of", lambda c, **flags: world.settings)
    monkeypatch.setattr(pipeline, "prepare", lambda settings, docker, options: prepared)
    monkeypatch.setattr(pipeline, "resolve", lambda settings, runner: project)


def test_deploying_an_existing_sha_plans_no_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``deploy --sha``: no plan, no Dockerfile read (a broken one in the checkout is fine)."""
    world = World(tmp_path, ["aaa"])
    deploy_task(world, monkeypatch)

    def no_plan(*_: Any, **__: Any) -> None:
        raise AssertionError("deploy --sha planned a build")

    monkeypatch.setattr(pipeline, "prepare", no_plan)
    deploy.deploy(MockContext(), sha="aaa", timeout="5")
    assert world.history()[-1] == ("deploy", "aaa", "ok")


def test_the_deploy_task_releases_a_sha_and_says_how_a_failure_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path, ["aaa", "bbb"], bad=("bbb",))
    deploy_task(world, monkeypatch)
    deploy.deploy(MockContext(), sha="aaa", timeout="5")
    assert capsys.readouterr().out.startswith("deploy ok: :aaa healthy in ")
    with pytest.raises(Exit) as stopped:
        deploy.deploy(MockContext(), sha="bbb", timeout="5", json=True)
    outcome = json.loads(capsys.readouterr().out)
    assert (outcome["ok"], outcome["previous"], outcome["back_ok"]) == (False, "aaa", True)
    assert stopped.value.message == (
        "error: deploy of :bbb failed (api is unhealthy); rolled back to :aaa, healthy"
    )
    with pytest.raises(Exit, match="invalid --sha"):
        deploy.deploy(MockContext(), sha="$(id)")
    assert world.history()[-2:] == [("deploy", "bbb", "failed"), ("rollback", "aaa", "ok")]


def test_a_failure_with_nothing_to_go_back_to_stops_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path, ["bbb"], bad=("bbb",))
    deploy_task(world, monkeypatch)
    with pytest.raises(Exit) as stopped:
        deploy.deploy(MockContext(), sha="bbb", timeout="5")
    assert stopped.value.message == (
        "error: deploy of :bbb failed (api is unhealthy); no earlier deploy to roll back to, "
        "the stack is left stopped"
    )
    assert world.runner.calls[-1][-1] == "stop"


def test_a_failed_rollback_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(tmp_path, ["aaa", "bbb"], bad=("aaa", "bbb"))
    world.state.record({"action": "deploy", "sha": "aaa", "result": "ok"})  # healthy back then
    deploy_task(world, monkeypatch)
    with pytest.raises(Exit) as stopped:
        deploy.deploy(MockContext(), sha="bbb", timeout="5")
    assert stopped.value.message == (
        "error: deploy of :bbb failed (api is unhealthy) and rollback to :aaa failed too "
        "(api is unhealthy)"
    )


@pytest.mark.parametrize(
    ("lost", "said", "recorded"),
    [
        (False, "error: build failed (api); nothing deployed, the running version is untouched",
         [("deploy", "ccc", "build failed")]),
        (True, "error: deploy interrupted: the engine (the default socket) went away while it ran "
         "(stopped, restarted, or its connection dropped); its build was cut short, nothing "
         "deployed; run it again once the engine answers", []),
    ],
)  # fmt: skip
def test_a_failed_build_deploys_nothing_and_is_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lost: bool,
    said: str,
    recorded: list[tuple[str, str, str]],
) -> None:
    world = World(tmp_path, ["aaa"])
    plan = type("Plan", (), {"commit_tag": "ccc"})()
    deploy_task(world, monkeypatch, plan)
    outcome = {"ok": False, "failed": ("api",), "culprits": "api", "error": "RUN make: exit 2",
               "engine_lost": lost}  # fmt: skip
    failed = type("Result", (), outcome)()
    monkeypatch.setattr(pipeline, "execute", lambda prepared, on_step, on_running: failed)
    monkeypatch.setattr(report, "warning_lines", lambda plan: ["warn: x"])
    with pytest.raises(Exit) as stopped:
        deploy.deploy(MockContext(), timeout="5")
    assert stopped.value.message == said
    assert not any("up" in call for call in world.runner.calls)
    assert world.history() == recorded


@pytest.mark.parametrize(("nodes", "registry", "said"), [
    (0, "", "orchestrator is swarm but this engine is not a swarm manager"),
    (3, "", "the swarm has 3 nodes: they pull images from a registry; set INVOKE_STACK_REGISTRY"),
])  # fmt: skip
def test_a_swarm_target_is_checked_before_anything_runs(
    tmp_path: Path, nodes: int, registry: str, said: str
) -> None:
    world = World(tmp_path, ["aaa"])
    world.client.nodes.count = nodes
    settings = load({"orchestrator": "swarm", "registry": registry}, cwd=world.settings.project_dir)
    with pytest.raises(UserError, match=f"^{said}"):
        _deploy.target_and_backend(settings, world.docker, world.target)
    assert world.runner.calls == [] and world.state.history() == []


def test_a_one_node_swarm_keeps_state_in_configs(tmp_path: Path) -> None:
    world = World(tmp_path, ["aaa"])
    world.client.nodes.count = 1
    settings = load({"orchestrator": "swarm"}, cwd=world.settings.project_dir)
    state, backend = _deploy.target_and_backend(settings, world.docker, world.target)
    assert (state.swarm, type(backend).__name__) == (True, "SwarmBackend")


@pytest.mark.parametrize("text", ["x", "-1", "86401", "nan", "inf"])
def test_a_bad_timeout_is_refused(text: str) -> None:
    with pytest.raises(UserError, match=f"invalid --timeout '{text}'"):
        _deploy.valid_timeout(text)


def contexts(base: Mapping[str, str] | None = None) -> FakeCli:
    """Knows one docker context, ``prod``."""
    prod = Result((), 0, "ssh://deploy@prod\n", "")
    return FakeCli(
        answers={
            "docker context inspect prod": prod,
            "docker context inspect": Result((), 1, "", ""),
        },
        base=base,
    )


def test_a_context_names_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deploy, "Runner", contexts)
    chosen = _deploy.engine_of("prod")
    assert chosen.host == "ssh://deploy@prod"
    assert chosen.runner.environment(None)["DOCKER_HOST"] == "ssh://deploy@prod"
    with pytest.raises(UserError, match=r"^unknown docker context 'staging'$"):
        _deploy.engine_of("staging")
    with pytest.raises(UserError, match=r"^invalid --context"):
        _deploy.engine_of("-H tcp://x")


@pytest.mark.parametrize(
    ("exited", "restart", "ok", "detail"),
    [
        ("exited 0", "no", True, "all services healthy"),
        ("exited 0", "", True, "all services healthy"),
        ("exited 0", "always", False, "migrate is exited (exit 0)"),
        ("exited 3", "no", False, "migrate is exited (exit 3)"),
    ],
)
def test_a_one_shot_service_that_exited_0_is_done_not_failed(
    tmp_path: Path, exited: str, restart: str, ok: bool, detail: str
) -> None:
    world = World(tmp_path, ["aaa"])
    labels = {"com.docker.compose.project": "shop", "com.docker.compose.service": "migrate"}
    world.client.containers.running["shop-migrate-1"] = Container(
        "shop-migrate-1", labels, "shop-migrate", exited, restart=restart
    )
    outcome = world.release("aaa")
    assert (outcome.ok, outcome.detail) == (ok, detail)
    if ok:
        assert "migrate" in " ".join(world.log) and "done (exited 0)" in " ".join(world.log)


class SwarmRolledBack(Backend):
    """A stack whose update of ``bad`` Swarm rolled back (that service only)."""

    def __init__(self, world: World, bad: str) -> None:
        super().__init__(world.target, world.docker)
        self.bad, self.now = bad, "aaa"
        self.ups: list[str] = []

    def running(self) -> str:
        return self.now

    def up(self, sha: str, timeout: float, log: Callable[[str], None]) -> tuple[bool, str, bool]:
        self.ups.append(sha)
        if sha == self.bad:
            self.now = ""  # the failing service is back, the others run the new version
            return False, "shop_api: update rollback completed", True
        self.now = sha
        return True, "all services converged", False

    def diagnose(self) -> str:
        return "--- shop_api: health check exit 1"


def test_after_swarm_rolled_back_one_service_every_service_goes_back(tmp_path: Path) -> None:
    world = World(tmp_path, ["aaa", "bbb"])
    backend = SwarmRolledBack(world, "bbb")
    outcome = release(
        backend, world.state, DeployOptions(Action.DEPLOY, "bbb", 5), world.log.append
    )
    assert backend.ups == ["bbb", "aaa"]  # the whole stack brought back
    assert (outcome.ok, outcome.previous, outcome.back_ok) == (False, "aaa", True)
    assert world.history() == [("deploy", "bbb", "failed"), ("rollback", "aaa", "ok")]
    assert "rolling back every service to :aaa" in world.log


def test_history_never_says_no_deploys_while_a_deployed_version_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The history's keeper was removed by hand: what runs says it was deployed."""
    world = World(tmp_path, ["aaa"])
    monkeypatch.setattr(_deploy, "engine_of", lambda context: world.docker)
    monkeypatch.setattr(_deploy, "settings_of", lambda c, **flags: world.settings)
    assert world.release("aaa").ok
    world.client.containers.running.pop(world.state.keeper_name)  # docker rm -f, and a prune
    deploy.history(MockContext())
    said = capsys.readouterr().out.strip()
    assert said.startswith("no deploy history of shop on the target, but it runs shop-api:aaa")
    assert "with the container and volume compose-tasks-state-shop that keep it" in said


@pytest.mark.parametrize(
    ("results", "running", "said"),
    [
        ([("abc1234", "ok")], ["shop-api:abc1234", "redis:7"], ""),  # agrees
        ([("abc1234", "ok")], ["shop-api:def5678", "redis:7"], "def5678"),  # another sha runs
        ([("abc1234", "ok"), ("def5678", "interrupted")], ["shop-api:def5678"], "def5678"),
        ([("abc1234", "ok")], ["shop-api:def5678", "shop-web:abc1234"], ""),  # mixed: unsure
        ([], ["shop-api:def5678"], ""),  # no history: said otherwise
        ([("abc1234", "ok")], [], ""),  # nothing runs
    ],
)
def test_history_says_when_what_runs_is_not_where_it_ends(
    results: list[tuple[str, str]], running: list[str], said: str
) -> None:
    entries = [{"sha": sha, "result": result} for sha, result in results]
    assert _deploy._unrecorded(entries, running) == said
