"""The build stage orchestrated without a daemon: a stand-in runner and image store."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from compose_tasks.buildplan import pipeline
from compose_tasks.buildplan.pipeline import Prepared, Project
from compose_tasks.docker.builder import Found
from compose_tasks.docker.runner import Runner
from compose_tasks.settings import load
from tests.support import GIT, plan_for, project


class FakeRunner(Runner):
    """Replays BuildKit progress lines instead of running compose; records the argv. With
    ``then``, later builds replay those (lines, exit code) instead, one per call."""

    def __init__(
        self, lines: Sequence[str], code: int = 0, then: Sequence[tuple[list[str], int]] = ()
    ) -> None:
        self.lines, self.code, self.then = lines, code, list(then)
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def stream(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        on_idle: Callable[[], None] | None = None,
        idle: float = 15.0,
    ) -> int:
        self.calls.append((list(argv), dict(env or {})))
        if len(self.calls) > 1 and self.then:
            self.lines, self.code = self.then.pop(0)
        for line in self.lines:
            on_line(line)
            if on_idle is not None:
                on_idle()  # as if the build had been quiet for ``idle`` seconds
        return self.code


class FakeEngine:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.tags: list[tuple[str, str]] = []
        self.pruned: list[str] = []

    def tag_all(self, pairs: Sequence[tuple[str, str]], project: str = "") -> int:
        self.tags += pairs
        self.pruned.append(project)
        return 2


def vertex(name: str, cached: bool = False, error: str = "") -> str:
    done = {"started": "2026-01-01T00:00:00Z", "completed": "2026-01-01T00:00:01Z"}
    data: dict[str, Any] = {"name": name, "digest": name, "cached": cached, **done}
    if error:
        data["error"] = error
    return json.dumps({"vertexes": [data]})


def prepared(tmp_path: Path, runner: Runner) -> tuple[Prepared, FakeEngine]:
    root = tmp_path / "proj"
    root.mkdir()
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=root)
    compose = project(api={"build": {"context": "/p"}})
    plan = plan_for(compose, root, {"shop-api:latest": Found("local", True)}, settings=settings)
    images = FakeEngine(runner)
    ready = Prepared(Project(settings, (), GIT, compose), plan, images)  # type: ignore[arg-type]
    return ready, images


def test_execute_counts_steps_and_promotes_only_on_success(tmp_path: Path) -> None:
    runner = FakeRunner(
        [vertex("[api 1/3] COPY a .", cached=True), vertex("[api 2/3] RUN x"), "plain line"]
    )
    ready, images = prepared(tmp_path, runner)
    steps: list[str] = []
    result = pipeline.execute(ready, lambda step: steps.append(step.label))
    assert result.ok and result.failed == ()
    (row,) = result.services
    assert (row.steps, row.cached, row.rebuilt, row.first_rebuilt) == (2, 1, 1, "[2/3] RUN x")
    assert steps == ["[1/3] COPY a .", "[2/3] RUN x"]
    assert images.tags == [(ready.plan.services[0].build_ref, "shop-api:latest")]
    assert (images.pruned, result.dangling) == (["shop"], 2)  # untagged images of ours
    assert list(result.seconds) == ["compose build", "tags"]
    ((argv, env),) = runner.calls
    assert argv == ready.plan.build_argv() and env == ready.plan.env()
    override = Path(ready.plan.override_file)
    assert override.stat().st_mode & 0o777 == 0o600
    assert not override.is_relative_to(tmp_path / "proj")


def test_a_failed_service_moves_no_cache_tag(tmp_path: Path) -> None:
    runner = FakeRunner([vertex("[api 2/3] RUN x", error="exit code: 3")], code=1)
    ready, images = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.failed, result.promoted) == (False, ("api",), ())
    assert images.tags == [] and images.pruned == []


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
    ready, _ = prepared(tmp_path, FakeRunner([started, vertex("[api 2/3] RUN npm ci")]))
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
    runner = FakeRunner(lost, code=1, then=[([vertex("[2/3] RUN x", cached=True)], 0)])
    ready, images = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.retried, result.failed) == (True, ("api",), ())
    assert [argv[-1] for argv, _ in runner.calls] == ["api", "api"]
    assert (result.services[0].steps, result.services[0].cached) == (1, 1)  # the second build
    assert images.tags != []


def test_a_real_build_error_is_not_retried(tmp_path: Path) -> None:
    runner = FakeRunner([vertex("[api 2/3] RUN x", error="exit code: 3")], code=1)
    ready, _ = prepared(tmp_path, runner)
    result = pipeline.execute(ready)
    assert (result.ok, result.retried, len(runner.calls)) == (False, (), 1)
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
