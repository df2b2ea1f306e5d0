"""The build stage orchestrated without a daemon: the fake CLI and engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from compose_tasks.buildplan import pipeline
from compose_tasks.buildplan.pipeline import Prepared, Project
from compose_tasks.docker.builder import Found, Where
from compose_tasks.docker.engine import Engine
from compose_tasks.docker.runner import Result
from compose_tasks.docker.sdk import Sdk
from compose_tasks.dockerfile.instructions import parse
from compose_tasks.settings import load
from tests.fakes import FakeCli, FakeDocker
from tests.support import GIT, plan_for, project

PRUNED = Result((), 0, "Deleted Images:\nuntagged: shop-api:a\nuntagged: shop-api:b\n", "")


def fake_cli(
    lines: Sequence[str], code: int = 0, then: Sequence[tuple[list[str], int]] = ()
) -> FakeCli:
    """Replays BuildKit progress lines instead of running compose (``then``: the later builds);
    the prune of our untagged images removes two."""
    return FakeCli(lines, code, then=then, answers={"docker image prune": PRUNED})


def builds(cli: FakeCli) -> list[tuple[list[str], dict[str, str]]]:
    """Each ``compose build`` run, with its environment."""
    return [(argv, env) for argv, env in zip(cli.calls, cli.envs, strict=True) if "build" in argv]


def tags(cli: FakeCli) -> list[tuple[str, str]]:
    return [(argv[3], argv[4]) for argv in cli.calls if argv[:3] == ["docker", "image", "tag"]]


def prunes(cli: FakeCli) -> list[list[str]]:
    return [argv for argv in cli.calls if argv[:3] == ["docker", "image", "prune"]]


def vertex(name: str, cached: bool = False, error: str = "") -> str:
    done = {"started": "2026-01-01T00:00:00Z", "completed": "2026-01-01T00:00:01Z"}
    data: dict[str, Any] = {"name": name, "digest": name, "cached": cached, **done}
    if error:
        data["error"] = error
    return json.dumps({"vertexes": [data]})


def prepared(tmp_path: Path, runner: FakeCli) -> Prepared:
    root = tmp_path / "proj"
    root.mkdir()
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=root)
    compose = project(api={"build": {"context": "/p"}})
    plan = plan_for(compose, root, {"shop-api:latest": Found(Where.LOCAL, True)}, settings=settings)
    return Prepared(Project(settings, (), GIT, compose), plan, Engine(runner, Sdk(FakeDocker())))


def test_execute_counts_steps_and_promotes_only_on_success(tmp_path: Path) -> None:
    runner = fake_cli(
        [vertex("[api 1/3] COPY a .", cached=True), vertex("[api 2/3] RUN x"), "plain line"]
    )
    ready = prepared(tmp_path, runner)
    steps: list[str] = []
    result = pipeline.execute(ready, lambda step: steps.append(step.label))
    assert result.ok and result.failed == ()
    (row,) = result.services
    assert (row.steps, row.cached, row.rebuilt, row.first_rebuilt) == (2, 1, 1, "[2/3] RUN x")
    assert steps == ["[1/3] COPY a .", "[2/3] RUN x"]
    assert tags(runner) == [(ready.plan.services[0].build_ref, "shop-api:latest")]
    assert len(prunes(runner)) == 1 and "label=org.compose-tasks.project=shop" in prunes(runner)[0]
    assert result.dangling == 2  # untagged images of ours
    assert list(result.seconds) == ["compose build", "tags"]
    ((argv, env),) = builds(runner)
    assert argv == ready.plan.build_argv() and env == ready.plan.env()
    override = Path(ready.plan.override_file)
    assert override.stat().st_mode & 0o777 == 0o600
    assert not override.is_relative_to(tmp_path / "proj")


def test_a_failed_service_moves_no_cache_tag(tmp_path: Path) -> None:
    runner = fake_cli([vertex("[api 2/3] RUN x", error="exit code: 3")], code=1)
    ready = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.failed, result.promoted) == (False, ("api",), ())
    assert tags(runner) == [] and prunes(runner) == []


def test_a_long_step_is_reported_while_it_runs(tmp_path: Path) -> None:
    started = json.dumps(
        {
            "vertexes": [
                {
                    "name": "[api 2/3] RUN npm ci",
                    "digest": "[api 2/3] RUN npm ci",
                    "started": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )
    ready = prepared(tmp_path, fake_cli([started, vertex("[api 2/3] RUN npm ci")]))
    seen: list[tuple[str, bool]] = []
    pipeline.execute(ready, on_running=lambda step, seconds: seen.append((step.label, seconds > 0)))
    assert seen == [("[2/3] RUN npm ci", True)]  # once while running, not after it finished


RACE = (
    'failed to prepare extraction snapshot "extract-1 sha256:ab": parent snapshot sha256:cd '
    "does not exist: not found"
)


def test_the_containerd_snapshot_race_is_built_again_once_for_the_failed_service_only(
    tmp_path: Path,
) -> None:
    lost = [vertex("[api 2/3] RUN x"), vertex("[api] exporting to image", error=RACE)]
    runner = fake_cli(lost, code=1, then=[([vertex("[2/3] RUN x", cached=True)], 0)])
    ready = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.retried, result.failed) == (True, ("api",), ())
    assert [argv[-1] for argv, _ in builds(runner)] == ["api", "api"]
    assert (result.services[0].steps, result.services[0].cached) == (1, 1)  # the second build
    assert tags(runner) != []


def test_a_real_build_error_is_not_retried(tmp_path: Path) -> None:
    runner = fake_cli([vertex("[api 2/3] RUN x", error="exit code: 3")], code=1)
    ready = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.retried, len(builds(runner))) == (False, (), 1)
    assert not pipeline.snapshot_race("exit code: 3") and pipeline.snapshot_race(RACE)


@pytest.mark.parametrize(
    ("said", "gone"),
    [
        # the engine restarted under the build (measured on Engine 28.5, both stores)
        ("failed to receive status: rpc error: code = Unavailable desc = error reading from "
         "server: EOF", True),
        ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", True),
        # one service's step failed: bake cancelled the other, whose cache write then closed
        # its transport (measured on the containerd store)
        ("(*service).Write failed: rpc error: code = Unavailable desc = transport is closing\n"
         'target web: failed to solve: process "/bin/sh -c exit 3" did not complete '
         "successfully: exit code: 3", False),
        ('process "/bin/sh -c make" did not complete successfully: exit code: 2', False),
    ],
)  # fmt: skip
def test_an_engine_that_went_away_is_told_from_a_failed_step(said: str, gone: bool) -> None:
    assert pipeline.engine_gone(said) is gone


def test_each_dockerfile_is_read_and_parsed_once_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks, stage targets, lint, input digests, step keys and base images: one read and
    one parse of each Dockerfile (``api`` and ``worker`` share one)."""
    root = tmp_path / "proj"
    for folder, text in {
        "api": "FROM busybox:1.36 AS deps\nRUN true\nFROM deps AS app\nCOPY . /app\n",
        "web": "FROM busybox:1.36\nCOPY . /web\n",
    }.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "Dockerfile").write_text(text)
    monkeypatch.chdir(root)
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=root)
    compose = project(
        api={"build": {"context": str(root / "api"), "target": "app"}},
        worker={"build": {"context": str(root / "api")}},
        web={"build": {"context": str(root / "web")}},
    )
    run = Project(settings, (), GIT, compose)
    parse.cache_clear()
    prepared = pipeline.plan(run, Engine(FakeCli(local=["busybox:1.36"]), Sdk(FakeDocker())))
    assert pipeline.base_images(prepared) == ["busybox:1.36"]
    assert [s.name for s in prepared.plan.services] == ["api", "worker", "web"]
    assert run.dockerfiles.reads == 2
    assert parse.cache_info().misses == 2
