"""The build stage orchestrated without a daemon: a stand-in runner and image store."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks import pipeline
from tasks.pipeline import Prepared, Project
from tasks.plan import Found
from tasks.runner import Runner
from tasks.settings import load
from tests.support import GIT, plan_for, project


class FakeRunner(Runner):
    """Replays BuildKit progress lines instead of running compose; records the argv."""

    def __init__(self, lines: Sequence[str], code: int = 0) -> None:
        self.lines, self.code = lines, code
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
        for line in self.lines:
            on_line(line)
            if on_idle is not None:
                on_idle()  # as if the build had been quiet for ``idle`` seconds
        return self.code


class FakeImages:
    def __init__(self) -> None:
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


def prepared(tmp_path: Path, runner: Runner) -> tuple[Prepared, FakeImages]:
    root = tmp_path / "proj"
    root.mkdir()
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "cache")}, cwd=root)
    compose = project(api={"build": {"context": "/p"}})
    plan = plan_for(compose, root, {"shop-api:latest": Found("local", True)}, settings=settings)
    images = FakeImages()
    ready = Prepared(Project(settings, (), GIT, compose), plan, images, runner)  # type: ignore[arg-type]
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
