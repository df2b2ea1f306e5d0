"""Planning: config -> plan -> argv + override YAML, without Docker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from compose_tasks.buildplan.model import Status
from compose_tasks.buildplan.override import override_yaml
from compose_tasks.buildplan.plan import image_repo
from compose_tasks.docker.builder import Builder, Found, Where, builder_from
from compose_tasks.errors import UserError
from compose_tasks.settings import load as settings_load
from tests.support import SHA, plan_for, project


def test_image_names() -> None:
    assert image_repo("shop", "api", {}) == "shop-api"
    assert (
        image_repo("shop", "api", {"image": "reg.io:5000/team/api:1.0"}) == "reg.io:5000/team/api"
    )
    assert image_repo("shop", "api", {"image": "localhost:5000/api"}) == "localhost:5000/api"


def test_cache_sources_in_priority_order_missing_refs_dropped(tmp_path: Path) -> None:
    compose = project(
        api={"build": {"context": "/p/api", "cache_from": ["reg.io/api:cache", "gone:1"]}}
    )
    existing = {
        "reg.io/api:cache": Found(Where.REGISTRY, None),
        "shop-api:latest": Found(Where.LOCAL, True),
    }
    plan = plan_for(compose, tmp_path, existing, config={"branch_tag": True})
    (api,) = plan.services
    assert [(s.entry, s.origin, s.describe()) for s in api.sources] == [
        ("reg.io/api:cache", "compose file", "registry"),
        ("gone:1", "compose file", "dropped: no such image locally or in its registry"),
        ("shop-api:main", "branch tag", "dropped: no such image locally or in its registry"),
        ("shop-api:latest", "latest", "local image"),
    ]
    assert api.cache_from == ["reg.io/api:cache", "shop-api:latest"]
    assert api.build_ref == f"shop-api:{SHA[:12]}"
    assert api.promote == ("shop-api:latest", "shop-api:main")


def test_a_registry_that_cannot_be_reached_is_kept_and_one_that_never_answers_dropped(
    tmp_path: Path,
) -> None:
    """Unreachable: the builder may still reach it (kept, unverified). Silent (accepted, no
    answer): BuildKit would wait on it without a limit, so the build must not name it."""
    compose = project(
        api={"build": {"context": "/p/api", "cache_from": ["far.io/api:c", "mute.io/api:c"]}}
    )
    found = {
        "far.io/api:c": Found(Where.UNVERIFIED, None),
        "mute.io/api:c": Found(Where.SILENT, None),
    }
    (api,) = plan_for(compose, tmp_path, found).services
    described = {s.entry: s.describe() for s in api.sources}
    assert described["far.io/api:c"].startswith("unverified: its registry could not be reached")
    assert described["mute.io/api:c"].startswith("dropped: its registry did not answer in time")
    assert api.cache_from == ["far.io/api:c"]


def test_inline_cache_arg_unless_cache_to(tmp_path: Path) -> None:
    compose = project(
        api={"build": {"context": "/p/api"}},
        worker={"build": {"context": "/p/w", "cache_to": ["type=local,dest=/tmp/c"]}},
    )
    capable = Builder("buildx bake, driver docker-container", ("inline", "local"), bake=True)
    api, worker = plan_for(compose, tmp_path).services
    assert api.args == {"GIT_COMMIT_HASH": SHA, "BUILDKIT_INLINE_CACHE": "1"}
    api, worker = plan_for(compose, tmp_path, builder=capable).services
    assert api.args == {"GIT_COMMIT_HASH": SHA}  # a cache folder instead (see below)
    assert worker.args == {"GIT_COMMIT_HASH": SHA}
    assert worker.cache_to == ["type=local,dest=/tmp/c"]
    assert (worker.strategy, worker.cache_dir) == ("cache_to", "")
    no_inline = plan_for(compose, tmp_path, config={"inline_cache": False}).services[0]
    assert "BUILDKIT_INLINE_CACHE" not in no_inline.args


def test_cache_to_the_builder_cannot_export_is_dropped_for_inline(tmp_path: Path) -> None:
    """The docker driver fails a build that asks for a registry/local export."""
    compose = project(
        worker={"build": {"context": "/p/w", "cache_to": ["type=registry,ref=reg.io/w:cache"]}}
    )
    plan = plan_for(compose, tmp_path)
    (worker,) = plan.services
    assert worker.cache_to == []
    assert worker.exports[0].status is Status.DROPPED
    assert worker.exports[0].reason.startswith("this builder cannot export 'registry'")
    assert worker.args["BUILDKIT_INLINE_CACHE"] == "1"
    assert any(w.startswith("worker: cache_to type=registry") for w in plan.warnings)
    assert "cache_to: !override []" in override_yaml(plan)


def test_non_registry_cache_needs_a_capable_builder(tmp_path: Path) -> None:
    compose = project(api={"build": {"context": "/p", "cache_from": ["type=local,src=/c"]}})
    (api,) = plan_for(compose, tmp_path).services
    assert api.sources[0].describe().startswith("dropped: 'local' cache needs a buildx builder")
    capable = Builder("buildx bake, driver docker-container", ("inline", "local"), bake=True)
    (api,) = plan_for(compose, tmp_path, builder=capable).services
    assert (api.sources[0].status, api.sources[0].reason) == (Status.BACKEND, "local cache")


def test_fresh_uses_no_cache_and_no_sources(tmp_path: Path) -> None:
    existing = {"shop-api:latest": Found(Where.LOCAL, True)}
    plan = plan_for(project(api={"build": {"context": "/p"}}), tmp_path, existing, fresh=True)
    assert plan.services[0].cache_from == []
    assert "--no-cache" in plan.build_argv()


def test_service_selection(tmp_path: Path) -> None:
    compose = project(
        api={"build": {"context": "/p"}}, web={"build": {"context": "/w"}}, db={"image": "pg"}
    )
    assert plan_for(compose, tmp_path, services=["web"]).service_names() == ["web"]
    with pytest.raises(UserError, match="unknown service 'nope'"):
        plan_for(compose, tmp_path, services=["nope"])
    with pytest.raises(UserError, match="service 'db' has no build section"):
        plan_for(compose, tmp_path, services=["db"])
    with pytest.raises(UserError, match="no service with a build section"):
        plan_for(project(db={"image": "pg"}), tmp_path)


def test_exact_argv(tmp_path: Path) -> None:
    plan = plan_for(project(api={"build": {"context": "/p"}}), tmp_path, pull=True)
    root = tmp_path.resolve()
    work = f"/home/tester/.cache/compose-tasks/{root.name}-"
    assert plan.override_file.startswith(work)
    assert plan.override_file.endswith("/build/compose.build.yml")
    assert plan.build_argv() == [
        "docker", "compose", "--project-directory", str(root),
        "-f", str(tmp_path / "compose.yaml"), "-f", plan.override_file,
        "-p", "shop", "--progress", "json", "build", "--pull", "api",
    ]  # fmt: skip
    assert plan.env() == {"GIT_COMMIT_HASH": SHA}


def test_override_yaml_replaces_cache_from(tmp_path: Path) -> None:
    existing = {"shop-api:latest": Found(Where.LOCAL, True)}
    compose = project(api={"build": {"context": "/p", "cache_from": ["gone:1"]}})
    text = override_yaml(plan_for(compose, tmp_path, existing))
    assert "cache_from: !override\n" in text

    class Loader(yaml.SafeLoader):
        pass

    def sequence(loader: yaml.SafeLoader, node: yaml.Node) -> list[Any]:
        assert isinstance(node, yaml.SequenceNode)
        return loader.construct_sequence(node)

    Loader.add_constructor("!override", sequence)
    data = yaml.load(text, Loader=Loader)  # noqa: S506
    api = data["services"]["api"]
    assert api["image"] == f"shop-api:{SHA[:12]}"
    assert api["build"]["cache_from"] == ["shop-api:latest"]
    assert api["build"]["args"]["BUILDKIT_INLINE_CACHE"] == "1"


def test_warning_for_a_cache_image_without_inline_metadata(tmp_path: Path) -> None:
    compose = project(api={"build": {"context": "/p"}})
    plan = plan_for(compose, tmp_path, {"shop-api:latest": Found(Where.LOCAL, False)})
    assert any("no inline cache metadata" in w for w in plan.warnings)


def test_override_labels_prove_ownership_and_escape_dollars(tmp_path: Path) -> None:
    existing = {"reg.io/api:ca$h": Found(Where.REGISTRY, None)}
    compose = project(
        api={"build": {"context": "/p", "cache_from": ["type=registry,ref=reg.io/api:ca$h"]}}
    )
    plan = plan_for(compose, tmp_path, existing)
    assert plan.services[0].cache_from == ["type=registry,ref=reg.io/api:ca$h"]
    text = override_yaml(plan)
    assert "ref=reg.io/api:ca$$h" in text
    labels = yaml.safe_load(text.replace("!override", ""))["services"]["api"]["build"]["labels"]
    assert labels["org.compose-tasks.tool"] == "compose-tasks"
    assert labels["org.compose-tasks.project"] == "shop"
    assert labels["org.compose-tasks.service"] == "api"


def test_build_dir_in_a_context_not_ignored_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text(".git\n")
    compose = project(api={"build": {"context": str(tmp_path)}})
    plan = plan_for(compose, tmp_path, config={"build_dir": "gen"})
    assert any("build_dir gen lies in its build context" in w for w in plan.warnings)
    (tmp_path / ".dockerignore").write_text(".git\ngen\n")
    plan = plan_for(compose, tmp_path, config={"build_dir": "gen"})
    assert not any("build_dir" in w for w in plan.warnings)


def test_builder_from_buildx_inspect() -> None:
    assert builder_from(None, containerd=False).exports == ("inline",)
    assert builder_from(None, containerd=True).exports == ("inline", "registry", "local")
    docker = builder_from("Name: default\nDriver: docker\n", containerd=False)
    assert (docker.bake, docker.exports) == (True, ("inline",))
    container = builder_from("Name: ci\nDriver:   docker-container\n", containerd=False)
    assert container.name == "buildx bake, driver docker-container"
    assert "registry" in container.exports and "gha" in container.exports


def test_dependency_stages_become_cache_images_with_an_inline_builder(tmp_path: Path) -> None:
    build = {"context": "/p", "target": "runtime", "args": {"NODE_ENV": "prod$1"}}
    existing = {"shop-web:cache-deps": Found(Where.LOCAL, True)}
    plan = plan_for(
        project(web={"build": build}), tmp_path, existing, stages={"web": ["deps", "build"]}
    )
    (web,) = plan.services
    assert web.strategy == "stage images"
    assert [(t.service, t.stage, t.ref) for t in web.stages] == [
        ("web--cache-deps", "deps", "shop-web:cache-deps"),
        ("web--cache-build", "build", "shop-web:cache-build"),
    ]
    assert web.cache_from == ["shop-web:cache-deps"]  # the others do not exist yet
    assert [s.origin for s in web.sources] == ["latest", "stage cache", "stage cache"]
    argv = plan.build_argv()
    assert argv[-3:] == ["web", "web--cache-deps", "web--cache-build"]
    assert "--parallel" not in argv  # an engine without the crash builds the targets at once
    deps_current = (replace(web.stages[0], current=True), web.stages[1])
    unchanged = replace(plan, services=(replace(web, stages=deps_current),))
    assert unchanged.build_argv()[-2:] == ["web", "web--cache-build"]  # its image is current
    old = Builder("compose internal builder", ("inline",), False, False, parallel_inline=False)
    argv = plan_for(
        project(web={"build": build}), tmp_path, existing, stages={"web": ["deps", "build"]},
        builder=old,
    ).build_argv()  # fmt: skip
    assert argv[argv.index("--parallel") + 1] == "1"  # BuildKit 20.10 crashes on shared exports
    assert plan.aliases() == {"web--cache-deps": "web", "web--cache-build": "web"}
    data = yaml.safe_load(override_yaml(plan).replace("!override", ""))["services"]
    extra = data["web--cache-deps"]
    assert extra["image"] == "shop-web:cache-deps"
    assert extra["build"]["target"] == "deps"
    assert extra["build"]["context"] == "/p"
    assert extra["build"]["args"] == {
        "NODE_ENV": "prod$$1",
        "GIT_COMMIT_HASH": SHA,
        "BUILDKIT_INLINE_CACHE": "1",
    }
    assert extra["build"]["cache_from"] == data["web"]["build"]["cache_from"]
    assert extra["build"]["labels"]["org.compose-tasks.project"] == "shop"


def test_a_cache_to_builder_needs_no_stage_images(tmp_path: Path) -> None:
    build = {"context": "/p", "cache_to": ["type=local,dest=/c"]}
    capable = Builder("buildx bake, driver docker-container", ("inline", "local"), bake=True)
    plan = plan_for(
        project(web={"build": build}), tmp_path, builder=capable, stages={"web": ["deps"]}
    )
    assert (plan.services[0].strategy, plan.services[0].stages) == ("cache_to", ())
    no_inline = plan_for(
        project(web={"build": {"context": "/p"}}),
        tmp_path,
        config={"inline_cache": False},
        stages={"web": ["deps"]},
    )
    assert no_inline.services[0].stages == ()
    assert any("stages deps are not cached" in w for w in no_inline.warnings)


@pytest.mark.parametrize(
    ("parallel_inline", "steps", "serial"),
    [
        (False, {"api": {"a"}, "worker": {"a", "w"}}, True),  # share a step: Engine 20.10 crashes
        (False, {"api": {"a"}}, True),  # worker's Dockerfile unknown: it may share
        (False, {"api": {"a"}, "worker": {"w"}}, False),  # nothing in common: parallel is safe
        (True, {"api": {"a"}, "worker": {"a"}}, False),  # an engine without the crash
    ],
)
def test_engines_that_crash_on_parallel_inline_exports_build_one_at_a_time(
    tmp_path: Path, parallel_inline: bool, steps: dict[str, set[str]], serial: bool
) -> None:
    engine = Builder("compose internal builder", ("inline",), False, False, parallel_inline)
    compose = project(api={"build": {"context": "/p"}}, worker={"build": {"context": "/p"}})
    known = {name: frozenset(found) for name, found in steps.items()}
    plan = plan_for(compose, tmp_path, builder=engine, steps=known)
    assert plan.serial is serial
    assert ("--parallel" in plan.build_argv()) is serial
    assert any("build one at a time" in warning for warning in plan.warnings) is serial
    single = plan_for(project(api={"build": {"context": "/p"}}), tmp_path, builder=engine)
    assert not single.serial  # one build: nothing runs at once


CONTAINERD = builder_from("Name: default\nDriver: docker\n", containerd=True)


def test_the_containerd_store_caches_into_a_folder_per_service_not_into_local_images(
    tmp_path: Path,
) -> None:
    compose = project(api={"build": {"context": "/p/api"}})
    existing = {"shop-api:latest": Found(Where.LOCAL, True)}
    home = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    (tmp_path / "proj").mkdir()
    settings = settings_load({}, environ=home, cwd=tmp_path / "proj")
    (api,) = plan_for(compose, tmp_path, existing, settings=settings, builder=CONTAINERD).services
    folder = str(settings.cache_dir / "api")
    assert folder.startswith(str(tmp_path / "xdg")) and not folder.startswith(
        str(settings.project_dir) + "/"
    )
    assert (api.strategy, api.cache_dir, api.stages) == ("cache folder", folder, ())
    assert "BUILDKIT_INLINE_CACHE" not in api.args
    assert api.cache_to == [f"type=local,dest={folder}.next,mode=max"]
    assert api.cache_from == []  # nothing exported yet, and a local image is no source there
    empty, latest = api.sources
    assert empty.describe() == "dropped: empty: no build exported here yet"
    assert latest.entry == "shop-api:latest" and "containerd image store" in latest.reason
    Path(folder).mkdir(parents=True)
    (Path(folder) / "index.json").write_text("{}")
    (api,) = plan_for(compose, tmp_path, existing, settings=settings, builder=CONTAINERD).services
    assert api.cache_from == [f"type=local,src={folder}"]


def test_a_registry_adds_its_cache_tag_and_exports_to_it_only_when_pushing(tmp_path: Path) -> None:
    compose = project(api={"build": {"context": "/p/api"}})
    config = {"registry": "reg.example:5000/team"}
    ref = "reg.example:5000/team/shop-api:buildcache"
    existing = {
        ref: Found(Where.REGISTRY, None),
        "reg.example:5000/team/shop-api:latest": Found(Where.LOCAL, True),
    }
    (api,) = plan_for(compose, tmp_path, existing, config, builder=CONTAINERD).services
    assert api.cache_from == [f"type=registry,ref={ref}"]
    assert len(api.cache_to) == 1
    (api,) = plan_for(compose, tmp_path, existing, config, builder=CONTAINERD, push=True).services
    assert api.cache_to[1] == f"type=registry,ref={ref},mode=max"
    # a registry that never answered its lookups gets no export: BuildKit would wait on it
    silent = {  # the same registry asked twice at once: the engine may say either
        ref: Found(Where.UNVERIFIED, None),
        "reg.example:5000/team/shop-api:latest": Found(Where.SILENT, None),
    }
    (api,) = plan_for(compose, tmp_path, silent, config, builder=CONTAINERD, push=True).services
    assert [e.partition(",")[0] for e in api.cache_to] == ["type=local"]
    assert not any(entry.startswith("type=registry") for entry in api.cache_from)
    dropped = [e.describe() for e in api.exports if not e.kept]
    assert dropped == ["dropped: its registry did not answer in time: not exported, the build "
                       "would wait on it"]  # fmt: skip


def test_multi_stage_needs_no_stage_images_where_a_folder_caches_every_stage(
    tmp_path: Path,
) -> None:
    compose = project(api={"build": {"context": "/p/api"}}, web={"build": {"context": "/p/w"}})
    stages = {"api": ["deps", "build"], "web": ["deps"]}
    plan = plan_for(compose, tmp_path, builder=CONTAINERD, stages=stages)
    assert [s.stages for s in plan.services] == [(), ()]
    assert not plan.serial and not plan.aliases()
    assert not any("not cached by inline cache" in warning for warning in plan.warnings)


def test_a_zero_cache_size_turns_the_folders_off(tmp_path: Path) -> None:
    compose = project(api={"build": {"context": "/p/api"}})
    (api,) = plan_for(compose, tmp_path, config={"cache_size": "0"}, builder=CONTAINERD).services
    assert (api.strategy, api.cache_to) == ("inline", [])
