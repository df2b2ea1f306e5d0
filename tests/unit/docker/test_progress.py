"""Counting cached steps from BuildKit's JSON progress (no engine)."""

from __future__ import annotations

import base64
import json
from typing import Any

from compose_tasks.docker.progress import BuildProgress


def vertex(name: str, digest: str, **extra: Any) -> str:
    return json.dumps({"vertexes": [{"digest": digest, "name": name, **extra}]})


T0, T1, T2 = "2026-11-24T18:23:06.801453343Z", "2026-11-24T18:23:07.5Z", "2026-11-24T18:23:09Z"


def test_counts_cached_and_rebuilt_steps_per_service() -> None:
    progress = BuildProgress()
    lines = [
        json.dumps({"level": "warning", "msg": "buildx isn't installed"}),
        vertex("[api internal] load build definition from Dockerfile", "d0", started=T0),
        vertex("[api 1/4] FROM docker.io/library/busybox:1.36", "d1", started=T0, completed=T0),
        vertex("[api 2/4] RUN install", "d2"),
        vertex("[api 2/4] RUN install", "d2", started=T0, completed=T0, cached=True),
        vertex("[api 3/4] COPY src/ ./src/", "d3", started=T0),
        vertex("[api 3/4] COPY src/ ./src/", "d3", started=T0, completed=T1),
        vertex("[web builder 2/3] RUN npm ci", "d2", started=T1, completed=T2),
        vertex("[api 4/4] RUN build", "d4", started=T1, completed=T2),
        json.dumps({"id": "api", "status": "Built"}),
        "some plain line",
    ]
    finished = [step.label for line in lines for step in progress.feed(line)]
    assert finished == [
        "[2/4] RUN install",
        "[3/4] COPY src/ ./src/",
        "[builder 2/3] RUN npm ci",
        "[4/4] RUN build",
    ]
    api = progress.service("api")
    assert (api.total, api.cached, api.rebuilt) == (3, 1, 2)
    assert api.first_rebuilt == "[3/4] COPY src/ ./src/"
    assert api.built
    assert round(api.seconds, 1) == 2.2
    assert progress.service("web").total == 1
    assert progress.messages == ["warning: buildx isn't installed", "some plain line"]
    assert progress.failed_services() == []


def test_failure_names_the_service_not_the_cancelled_ones() -> None:
    progress = BuildProgress()
    progress.feed(
        vertex(
            "[web 5/5] RUN false",
            "e1",
            started=T0,
            completed=T1,
            error="executor failed running [/bin/sh -c false]: exit code: 1",
        )
    )
    progress.feed(
        vertex("[api 3/4] RUN slow", "e2", started=T0, completed=T1, error="context canceled")
    )
    progress.feed(json.dumps({"error": True, "message": "failed to solve: exit code: 1"}))
    assert progress.failed_services() == ["web"]
    assert progress.error == "failed to solve: exit code: 1"
    assert "exit code: 1" in progress.service("web").error


def test_an_unreadable_cache_source_is_a_warning_not_a_failure() -> None:
    progress = BuildProgress()
    line = json.dumps(
        {
            "vertexes": [
                {
                    "name": "[app] importing cache manifest from docker.io/myorg/app:cache",
                    "digest": "x",
                    "error": "failed to do request: dial tcp: lookup registry-1.docker.io",
                }
            ]
        }
    )
    progress.feed(line)
    assert progress.failed_services() == []
    assert progress.messages[0].startswith("warning: [app] importing cache manifest")


def test_bake_leaves_a_single_target_unprefixed_and_announces_its_steps_last_first() -> None:
    progress = BuildProgress({}, ["app"])
    lines = [
        vertex("[internal] load local bake definitions", "d0", started=T0, completed=T0),
        vertex("[3/3] RUN build", "d3"),
        vertex("[builder 2/3] COPY src/ ./src/", "d2"),
        vertex("[1/3] FROM docker.io/library/busybox:1.36", "d1", started=T0, completed=T0),
        vertex("[builder 2/3] COPY src/ ./src/", "d2", started=T1, completed=T1),
        vertex("[3/3] RUN build", "d3", started=T2, completed=T2),
        vertex("exporting to image", "d9", started=T2, completed=T2),
    ]
    for line in lines:
        progress.feed(line)
    app = progress.service("app")
    assert (app.total, app.cached, app.rebuilt) == (2, 0, 2)
    assert app.first_rebuilt == "[builder 2/3] COPY src/ ./src/"
    assert list(progress.services) == ["app"]


def test_with_several_targets_only_their_prefixes_name_a_service() -> None:
    progress = BuildProgress({"api--cache-deps": "api"}, ["api", "web"])
    for line in [
        vertex("[web 2/2] RUN b", "w2", started=T1, completed=T2),
        vertex("[api--cache-deps deps 2/4] RUN a", "a2", started=T0, completed=T0, cached=True),
        vertex("[deps 2/4] RUN stray", "x2", started=T0, completed=T0),
    ]:
        progress.feed(line)
    assert progress.service("api").cached == 1
    assert progress.service("web").first_rebuilt == "[2/2] RUN b"
    assert set(progress.services) == {"api", "web"}


def log(digest: str, text: str) -> str:
    data = base64.b64encode(text.encode()).decode()
    return json.dumps({"logs": [{"vertex": digest, "stream": 2, "data": data}]})


def test_a_failed_step_keeps_its_last_lines_of_output() -> None:
    progress = BuildProgress()
    lines = [
        vertex("[app 2/3] RUN make", "d2", started=T0, completed=T1),
        log("d2", "compiling\n"),  # another step's output: not the failed one's
        vertex("[app 3/3] RUN dd if=/dev/zero of=/big", "d3", started=T1),
        *(log("d3", f"line {n}\n") for n in range(1, 8)),
        log("d3", "dd: error writing '/big': No space left on device\n\n"),
        json.dumps({"logs": [{"vertex": "d3", "data": "not base64!"}]}),  # garbage: ignored
        vertex(
            "[app 3/3] RUN dd if=/dev/zero of=/big",
            "d3",
            started=T1,
            completed=T2,
            error="process did not complete successfully: exit code: 1",
        ),
    ]
    for line in lines:
        progress.feed(line)
    app = progress.service("app")
    assert app.error.endswith("exit code: 1")
    assert app.output == (
        "line 4", "line 5", "line 6", "line 7", "dd: error writing '/big': No space left on device"
    )  # fmt: skip
