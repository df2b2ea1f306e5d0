"""The build task on a stand-in CLI: the plan, the exact compose command, the report, the exit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from compose_tasks import _build, build
from compose_tasks.docker import engine
from compose_tasks.docker.sdk import Sdk
from compose_tasks.dockerfile import steps
from compose_tasks.settings import load
from tests.fakes import FakeCli, FakeDocker, api_error
from tests.unit.docker.test_registry import Store, serve_registry


def vertex(name: str, cached: bool = False, error: str = "") -> str:
    done = {"started": "2026-01-01T00:00:00Z", "completed": "2026-01-01T00:00:01Z"}
    data: dict[str, Any] = {"name": name, "digest": name, "cached": cached, **done}
    return json.dumps({"vertexes": [{**data, "error": error} if error else data]})


def shop(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: FakeCli,
    config: dict[str, Any] | None = None,
) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\nRUN make\n")
    (root / "compose.yaml").write_text("services:\n  api:\n    build: .\n")
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    settings = load(config or {}, environ=env, cwd=root)
    monkeypatch.setattr(_build, "settings_of", lambda c, **flags: settings)
    monkeypatch.setattr(_build, "Runner", lambda: cli)
    offline = FakeDocker()
    no_route = "dial tcp: lookup registry-1.docker.io: no such host"
    offline.images.registry_error = api_error("x", 500, no_route)  # as on the machine of CI
    monkeypatch.setattr(engine, "connect", lambda runner, host: Sdk(offline))
    return root


def fake_registry(monkeypatch: pytest.MonkeyPatch) -> tuple[Store, str]:
    """The in-process registry of the registry client's tests, for this test only."""
    found = serve_registry()
    monkeypatch.setattr("compose_tasks.docker.registry._tokens", {})
    return next(found)


def project_of(root: Path) -> dict[str, Any]:
    build_spec = {"context": str(root), "dockerfile": "Dockerfile"}
    return {"name": "shop", "services": {"api": {"build": build_spec}}}


def test_a_build_runs_compose_once_and_reports_the_cached_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = [vertex("[api 2/3] COPY . /app", cached=True), vertex("[api 3/3] RUN make")]
    cli = FakeCli(progress, local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    build.build(MockContext(), json=True)
    out = json.loads(capsys.readouterr().out)
    (service,) = out["result"]["services"]
    assert (service["steps"], service["cached"], service["first_rebuilt"]) == (
        2,
        1,
        "[3/3] RUN make",
    )
    builds = [call for call in cli.calls if "build" in call]
    assert len(builds) == 1 and builds[0][:2] == ["docker", "compose"]
    assert [
        "docker",
        "image",
        "tag",
        out["plan"]["services"][0]["build_ref"],
        "shop-api:latest",
    ] in cli.calls
    assert not any(path.name.startswith("compose.build") for path in root.iterdir())  # outside


def planned_labels(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Build once; the service's plan and the labels its image got (its input digest too)."""
    build.build(MockContext(), json=True)
    first: dict[str, Any] = json.loads(capsys.readouterr().out)["plan"]["services"][0]
    return first, {**first["labels"], "org.compose-tasks.inputs": first["inputs"]}


def test_an_image_of_this_commit_from_the_same_inputs_is_not_built_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([vertex("[api 2/3] COPY . /app", cached=True)], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    first, ours = planned_labels(capsys)
    cli.labelled = {first["build_ref"]: ours, "shop-api:other": {**ours, "x": "y"}}
    cli.calls.clear()
    build.build(MockContext())
    assert not any("build" in call for call in cli.calls)  # compose not run at all
    out = capsys.readouterr().out
    assert "up to date" in out and "not built, up to date: api" in out
    build.build(MockContext(), rebuild=True)
    assert sum("build" in call for call in cli.calls) == 1
    (tmp_path / "shop" / "new.txt").write_text("a change")  # inputs differ: built
    cli.calls.clear()
    build.build(MockContext())
    assert sum("build" in call for call in cli.calls) == 1
    cli.labelled = {first["build_ref"]: {**ours, "org.compose-tasks.tool": "someone-else"}}
    (tmp_path / "shop" / "new.txt").unlink()  # same inputs, but not an image of ours
    cli.calls.clear()
    build.build(MockContext())
    assert sum("build" in call for call in cli.calls) == 1


def test_affected_re_tags_another_commits_image_and_push_builds_what_exports_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([vertex("[api 2/3] COPY . /app", cached=True)], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)

    def configure(**config: Any) -> None:
        settings = load(
            {"affected": True, **config}, environ={"XDG_CACHE_HOME": str(tmp_path)}, cwd=root
        )
        monkeypatch.setattr(_build, "settings_of", lambda c, **flags: settings)

    configure()
    first, ours = planned_labels(capsys)
    cli.labelled = {"shop-api:0ld0ld0ld0ld": ours}  # built from these inputs at another commit
    cli.calls.clear()
    build.build(MockContext(), affected=True)
    assert not any("build" in call for call in cli.calls)
    assert ["docker", "image", "tag", "shop-api:0ld0ld0ld0ld", first["build_ref"]] in cli.calls
    assert "reused shop-api:0ld0ld0ld0ld" in capsys.readouterr().out
    # a registry cache goes out with a build only: with push, the service builds
    cli.version, cli.containerd = "28.5.2", True  # a builder that exports cache
    image = "127.0.0.1:5000/shop/api"
    export = {"cache_to": [f"type=registry,ref={image}:cache"]}
    spec = project_of(root)["services"]["api"]["build"]
    cli.project = {
        "name": "shop",
        "services": {"api": {"image": image, "build": {**spec, **export}}},
    }
    with (root / "compose.yaml").open("a") as file:
        file.write("# changed\n")  # what compose prints changes with it (no stale resolution)

    def reused() -> str:
        build.build(MockContext(), json=True, dry_run=True)
        return str(json.loads(capsys.readouterr().out)["plan"]["services"][0]["reuse"])

    assert reused() == ""
    build.build(MockContext(), json=True, dry_run=True)
    inputs = json.loads(capsys.readouterr().out)["plan"]["services"][0]["inputs"]
    cli.labelled = {f"{image}:0ld0ld0ld0ld": {**ours, "org.compose-tasks.inputs": inputs}}
    assert reused() == f"{image}:0ld0ld0ld0ld"
    configure(push=True)
    assert reused() == ""


def test_a_dry_run_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    build.build(MockContext(), dry_run=True)
    assert "docker compose" in capsys.readouterr().out
    assert not any("build" in call and call[:2] == ["docker", "compose"] for call in cli.calls)


GONE = (
    "failed to receive status: rpc error: code = Unavailable desc = error reading from server: EOF"
)


@pytest.mark.parametrize(
    ("local", "error", "said"),
    [
        (["busybox:1.36"], "exit code: 2", "error: build failed (api); :latest not moved"),
        ([], "exit code: 2", "error: base image busybox:1.36 is not on this engine and could "),
        (  # a full data root (measured on a 300 MB one: the step's own output says so)
            ["busybox:1.36"],
            "failed to copy files: write /var/lib/docker/x: no space left on device",
            "error: build failed (api): the engine's disk is full (no space left on device); "
            ":latest not moved, the caches kept",
        ),
        (  # the engine restarted under the build (measured on Engine 28.5)
            ["busybox:1.36"],
            GONE,
            "error: build interrupted: the engine (the default socket) went away while it ran "
            "(stopped, restarted, or its connection dropped); :latest not moved; run it again "
            "once the engine answers",
        ),
    ],
)
def test_a_failed_build_moves_no_tag_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: list[str], error: str, said: str
) -> None:
    cli = FakeCli([vertex("[api 3/3] RUN make", error=error)], 1, local)
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    with pytest.raises(Exit) as stopped:
        build.build(MockContext())
    assert str(stopped.value.message).startswith(said)
    assert not any(call[:3] == ["docker", "image", "tag"] for call in cli.calls)


def pair_of(root: Path) -> dict[str, Any]:
    """``base``, and ``app`` built FROM base's image (``shop-base``)."""
    (root / "base").mkdir()
    (root / "base" / "Dockerfile").write_text("FROM busybox:1.36\nRUN make\n")
    (root / "Dockerfile").write_text("FROM shop-base\nCOPY . /app\n")
    base = {"context": str(root / "base"), "dockerfile": "Dockerfile"}
    return {"name": "shop", "services": {**project_of(root)["services"], "base": {"build": base}}}


def test_an_image_of_another_service_builds_in_waves_without_named_contexts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([], local=["busybox:1.36"])
    cli.buildx = False  # Engine 20.10, compose's own builder
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = pair_of(root)
    build.build(MockContext(), json=True)
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert [s["name"] for s in plan["services"]] == ["base", "api"]
    assert plan["waves"] == [["base"], ["api"]]
    assert plan["services"][1]["contexts"] == {}
    builds = [call for call in cli.calls if call[:2] == ["docker", "compose"] and "build" in call]
    assert [call[-1] for call in builds] == ["base", "api"]  # two compose builds, base first
    handed = ["docker", "image", "tag", plan["services"][0]["build_ref"], "shop-base"]
    assert cli.calls.index(handed) < cli.calls.index(builds[1])  # tagged before app builds


def test_an_image_of_another_service_is_a_named_context_on_bake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([], local=["busybox:1.36"])
    cli.version = "28.5.2"
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = pair_of(root)
    build.build(MockContext(), json=True, dry_run=True)
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["waves"] == [["base", "api"]]
    assert plan["services"][1]["contexts"] == {"shop-base": "service:base"}
    api = plan["override"]["services"]["api"]["build"]
    assert api["additional_contexts"] == {"shop-base": "service:base"}


def test_several_platforms_on_a_builder_that_exports_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = FakeCli([], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    cli.project["services"]["api"]["build"]["platforms"] = ["linux/amd64", "linux/arm64"]
    with pytest.raises(Exit) as stopped:
        build.build(MockContext(), dry_run=True)
    assert "platforms linux/amd64, linux/arm64" in str(stopped.value.message)
    assert not any("build" in call and call[:2] == ["docker", "compose"] for call in cli.calls)


def test_a_service_the_registry_holds_up_to_date_is_tagged_there_not_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh runner: no image here, the registry's ``:latest`` was built from the same
    inputs. With --push its manifest gets this commit's tag there and compose is not run; a
    registry that refuses the copy gets the service built as before."""
    data, host = fake_registry(monkeypatch)
    cli = FakeCli([vertex("[api 2/3] COPY . /app", cached=True)], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"registry": f"{host}/team", "push": True})
    cli.project = project_of(root)
    build.build(MockContext(), json=True, dry_run=True, affected=True)
    planned = json.loads(capsys.readouterr().out)["plan"]["services"][0]
    assert planned["remote"] == ""  # the registry holds nothing yet
    labels = {**planned["labels"], "org.compose-tasks.inputs": planned["inputs"]}
    image = data.image("team/shop-api", "latest", labels)

    build.build(MockContext(), json=True, push=True, affected=True)
    out = json.loads(capsys.readouterr().out)
    service = out["plan"]["services"][0]
    assert service["remote"] == f"{host}/team/shop-api:latest"
    assert not any(call[:2] == ["docker", "compose"] and "build" in call for call in cli.calls)
    assert data.tags["team/shop-api"][service["build_ref"].rsplit(":", 1)[1]] == image
    assert out["result"]["pushed"] == [service["build_ref"]]
    assert out["result"]["services"][0]["remote"] == service["remote"]

    data.puts = False  # a registry that refuses the copy: built as before
    cli.calls.clear()
    build.build(MockContext(), json=True, push=True, affected=True)
    out = json.loads(capsys.readouterr().out)
    assert any(call[:2] == ["docker", "compose"] and "build" in call for call in cli.calls)
    assert ["docker", "push", "--quiet", service["build_ref"]] in cli.calls


def test_steps_taken_from_the_registry_are_labelled_and_predicted_to_run_when_built_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a builder whose inline cache export drops the steps a build imported (the classic
    store's own BuildKit), the image names them; the next fresh runner predicts them cached
    while nothing after them runs, and run again (with that reason) under a step that does."""
    data, host = fake_registry(monkeypatch)
    cli = FakeCli([], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"registry": f"{host}/team", "push": True})
    cli.project = project_of(root)
    (root / ".dockerignore").write_text("Dockerfile\n")  # COPY . reads no Dockerfile edit

    def planned() -> dict[str, Any]:
        build.build(MockContext(), json=True, dry_run=True, affected=True)
        return dict(json.loads(capsys.readouterr().out)["plan"]["services"][0])

    def pushed(service: dict[str, Any]) -> None:  # by a runner before, from other inputs
        labels = {**service["labels"], "org.compose-tasks.inputs": "sha256:other"}
        data.image("team/shop-api", "latest", labels)

    first = planned()
    assert "org.compose-tasks.imported" not in first["labels"]  # nothing in the registry yet
    keys = [row[1] for row in json.loads(first["labels"]["org.compose-tasks.steps"])]
    pushed(first)
    (root / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\nRUN make all\n")
    second = planned()  # COPY from the registry's cache, RUN built on it
    assert second["prediction"]["rebuilt"] == ["3"]
    assert json.loads(second["labels"]["org.compose-tasks.imported"]) == [keys[0]]
    pushed(second)
    unchanged = planned()  # the last step is served: the steps under it need no layer
    assert unchanged["prediction"]["rebuilt"] == [] and unchanged["prediction"]["cached"] == 2
    (root / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\nRUN make test\n")
    third = planned()
    assert third["prediction"]["rebuilt"] == ["2", "3"]
    assert third["prediction"]["why"] == steps.LACKING
    assert "org.compose-tasks.imported" not in third["labels"]  # nothing taken from the cache


def test_a_push_that_fails_after_the_build_says_so_not_that_the_build_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A registry that never answers: ``docker push`` gives up (the engine's own timeout). The
    images are built and tagged here; the message names the push, and the registry's tags."""
    cli = FakeCli([vertex("[api 2/3] COPY . /app")], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"registry": "127.0.0.1:1/team", "push": True})
    cli.project = project_of(root)
    cli.push_error = (
        'Get "http://127.0.0.1:5999/v2/": net/http: request canceled (Client.Timeout exceeded '
        "while awaiting headers)"
    )
    with pytest.raises(Exit) as stopped:
        build.build(MockContext())
    assert stopped.value.code == 1
    assert str(stopped.value.message).startswith("error: push failed: the images are built")
    out = capsys.readouterr().out
    assert "push failed: docker push 127.0.0.1:1/team/shop-api:" in out
    assert "awaiting headers" in out and "build failed" not in out
    assert "the registry's tags left unchanged: 127.0.0.1:1/team/shop-api:latest" in out


def test_an_unreachable_registry_is_one_warning_and_a_build_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = FakeCli([], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"registry": "127.0.0.1:1/team"})
    cli.project = project_of(root)
    build.build(MockContext(), json=True, dry_run=True, affected=True)
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["services"][0]["remote"] == ""
    [warning] = [w for w in plan["warnings"] if w.startswith("registry: ")]
    assert "registry unreachable" in warning and warning.endswith("built as before")


def test_the_cache_gate_fails_a_build_whose_cache_did_not_serve_with_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The earlier build's step keys say both steps come from the cache; BuildKit runs the
    RUN anyway (a cache that stopped serving): with require_cache the build exits 3 naming
    the step; without it, it succeeds as before."""
    cached = [vertex("[api 2/3] COPY . /app", cached=True), vertex("[api 3/3] RUN make", True)]
    cli = FakeCli(cached, local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"require_cache": True})
    cli.project = project_of(root)
    _, ours = planned_labels(capsys)
    cli.labelled = {"shop-api:latest": {**ours, "org.compose-tasks.commit": "0ld"}}
    build.build(MockContext(), rebuild=True)  # everything served: the gate passes
    capsys.readouterr()
    cli.progress = [cached[0], vertex("[api 3/3] RUN make")]
    with pytest.raises(Exit) as stopped:
        build.build(MockContext(), rebuild=True)
    assert stopped.value.code == 3
    assert str(stopped.value.message) == (
        "error: cache gate: 1 miss(es): api: [3/3] RUN make ran; predicted from the cache"
    )
    shop_settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=root)
    monkeypatch.setattr(_build, "settings_of", lambda c, **flags: shop_settings)
    build.build(MockContext(), rebuild=True)  # the gate off: the same build succeeds


def test_the_cache_gate_names_a_declared_source_that_could_not_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = FakeCli([vertex("[api 3/3] RUN make")], local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli, {"require_cache": True})
    spec = {**project_of(root)["services"]["api"]["build"], "cache_from": ["127.0.0.1:1/x:c"]}
    cli.project = {"name": "shop", "services": {"api": {"build": spec}}}
    with pytest.raises(Exit) as stopped:
        build.build(MockContext())
    assert stopped.value.code == 3
    assert "api: cache source 127.0.0.1:1/x:c could not be read (" in str(stopped.value.message)


def test_under_github_actions_the_job_summary_gets_a_row_per_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    layer = "sha256:" + "a" * 64
    progress = [
        vertex("[api 2/3] COPY . /app", cached=True),
        vertex("[api 3/3] RUN make"),
        json.dumps({"statuses": [{"id": layer, "vertex": "[api 3/3] RUN make", "total": 3 << 20}]}),
    ]
    cli = FakeCli(progress, local=["busybox:1.36"])
    root = shop(tmp_path, monkeypatch, cli)
    cli.project = project_of(root)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    build.build(MockContext())
    text = summary.read_text()
    assert text.startswith("earlier step\n### compose-tasks build of shop at ")
    assert "| service | decision | steps cached | time | pulled | prediction |" in text
    # nothing built before: all predicted to run; BuildKit had one step cached
    assert "| api | built | 1/2 | 1.0s | 3.1MB | predicted 0 cached |" in text
    assert "Prediction: 0/1 services exact." in text
    out = capsys.readouterr().out
    assert "layers downloaded by the build: api 3.1MB (each built image is loaded into" in out
