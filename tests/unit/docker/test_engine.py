"""Engine lookups and builder detection through the docker CLI, against a stand-in runner."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from compose_tasks.docker import engine
from compose_tasks.docker.builder import Found, Where
from compose_tasks.docker.refs import ownership
from compose_tasks.docker.runner import Result
from compose_tasks.docker.sdk import Sdk
from compose_tasks.errors import Failed, UserError
from tests.fakes import FakeCli, FakeDocker
from tests.unit.docker.conftest import StandIn

NO_SUCH = "Error response from daemon: no such image: {0}: No such image: {0}"


def line(tags: list[str], digests: list[str] = [], labels: dict[str, str] | None = None) -> str:  # noqa: B006
    return "\t".join(json.dumps(part) for part in (tags, digests, labels))


def done(out: str = "", err: str = "", code: int = 0) -> Result:
    return Result((), code, out, err)


def inspected(*lines: str, missing: Sequence[str] = ()) -> Result:
    err = "\n".join(NO_SUCH.format(ref) for ref in missing)
    return done("\n".join(lines) + "\n", err, 1 if missing else 0)


def test_one_inspect_answers_tags_digests_and_absent_refs() -> None:
    digest = "busybox@sha256:" + "a" * 64
    runner = FakeCli(
        answers={
            "docker image inspect": inspected(
                line(
                    ["shop-api:latest", "shop-api:abc"], [], {"org.compose-tasks.inline-cache": "1"}
                ),
                line(["busybox:1.36"], [digest]),
                missing=["shop-web:latest"],
            )
        }
    )
    images = engine.Engine(runner)
    images.prefetch(["shop-api:latest", "docker.io/library/busybox:1.36", "shop-web", digest])
    assert len(runner.calls) == 1
    refs = runner.calls[0][runner.calls[0].index("--") + 1 :]
    assert refs == sorted(["shop-api:latest", "busybox:1.36", "shop-web:latest", digest])
    assert images.locate("shop-api:latest", False) == Found(Where.LOCAL, True)
    assert images.locate("busybox:1.36", False) == Found(Where.LOCAL, False)
    assert images.locate(digest, False) == Found(Where.LOCAL, False)
    assert images.locate("shop-web:latest", False) is None
    assert len(runner.calls) == 1  # every answer came from the one inspect


def test_nothing_found_prints_a_blank_line_and_an_invalid_ref_is_absent() -> None:
    err = "Error response from daemon: no such image: Bad:ref: invalid reference format"
    runner = FakeCli(answers={"docker image inspect": done("\n", err, 1)})
    images = engine.Engine(runner)
    assert images.locate("Bad:ref", False) is None


@pytest.mark.parametrize(
    "answer",
    [
        done("", "Cannot connect to the Docker daemon at unix:///x.sock. Is it running?", 1),
        done("", "", 1),
        done("not json\n", "", 0),
    ],
)
def test_an_engine_that_cannot_answer_is_one_error_line(answer: Result) -> None:
    images = engine.Engine(FakeCli(answers={"docker image inspect": answer}))
    with pytest.raises(UserError) as info:
        images.locate("shop-api:latest", False)
    assert "\n" not in str(info.value)


def test_tags_run_together_and_a_failure_names_its_target() -> None:
    runner = FakeCli(answers={"docker image tag": done()})
    engine.Engine(runner).tag_all([("a:1", "a:latest"), ("b:1", "b:latest")])
    assert runner.calls == [
        ["docker", "image", "tag", "a:1", "a:latest"],
        ["docker", "image", "tag", "b:1", "b:latest"],
    ]
    failing = FakeCli(answers={"docker image tag": done("", "Error: no such image a:1", 1)})
    with pytest.raises(Failed, match=r"^docker image tag a:latest failed: Error: no such"):
        engine.Engine(failing).tag_all([("a:1", "a:latest")])


def test_many_tags_go_through_one_sdk_client_instead_of_a_process_each() -> None:
    runner, client = FakeCli(), FakeDocker()
    pairs = [(f"s{i}:abc", f"127.0.0.1:5000/s{i}:latest") for i in range(engine.CLI_TAGS + 1)]
    engine.Engine(runner, Sdk(client)).tag_all(pairs)
    assert runner.calls == []
    wanted = [(source, target.removesuffix(":latest"), "latest") for source, target in pairs]
    assert sorted(client.api.tagged) == sorted(wanted)  # from a few threads: in any order


NO_BUILDX = done("", "docker: 'buildx' is not a docker command.", 1)


def builder_runner(
    version: Result, info: Result | None = None, buildx: Result = NO_BUILDX
) -> FakeCli:
    answers: dict[str, Result | Exception] = {
        "docker version --format": version,
        "docker buildx inspect": NO_BUILDX if buildx is NO_BUILDX else done("Driver: docker\n"),
        "docker buildx version": buildx,
        "docker compose version": done("2.40.3\n"),
        "docker image inspect": inspected(line(["shop-api:latest"])),
    }
    if info is not None:
        answers["docker info --format"] = info
    return FakeCli(answers=answers)


def test_an_engine_older_than_the_containerd_store_is_never_taken_for_one() -> None:
    """Every question goes out at once; an old engine's ``docker info`` answer (here one that
    could not be) does not make it a containerd store."""
    store = done('[["driver-type","io.containerd.snapshotter.v1"]]\n')
    runner = builder_runner(done("20.10.24+dfsg1\n"), store)
    images = engine.Engine(runner)
    builder = engine.detect_builder(images, ["shop-api:latest"])
    assert (builder.containerd, builder.exports, builder.bake) == (False, ("inline",), False)
    assert not builder.parallel_inline  # its BuildKit crashes on parallel inline exports
    assert builder.drops_imported  # moby/buildkit#2274 before Engine 27
    assert images.locate("shop-api:latest", False) == Found(Where.LOCAL, False)
    assert {" ".join(call[:2]) for call in runner.calls} == {
        "docker version",
        "docker buildx",
        "docker info",
        "docker image",
    }  # (buildx inspect and version)
    assert len(runner.calls) == 5  # one batch: nothing asked after the answers came


@pytest.mark.parametrize(
    ("status", "containerd"),
    [
        ([["driver-type", "io.containerd.snapshotter.v1"]], True),
        ([["Backing Filesystem", "extfs"], ["Supports d_type", "true"]], False),
    ],
)
def test_a_newer_engine_is_asked_which_image_store_it_uses(
    status: list[list[str]], containerd: bool
) -> None:
    runner = builder_runner(done("26.1.5+dfsg1\n"), done(json.dumps(status) + "\n"))
    builder = engine.detect_builder(engine.Engine(runner))
    assert builder.containerd is containerd
    assert builder.parallel_inline
    assert builder.exports == (("inline", "registry", "local") if containerd else ("inline",))
    assert builder.drops_imported is not containerd  # a 26: the classic store's BuildKit drops
    classic = json.dumps([["Backing Filesystem", "extfs"]]) + "\n"
    fixed = builder_runner(done("28.5.2+dfsg4\n"), done(classic))
    assert not engine.detect_builder(engine.Engine(fixed)).drops_imported  # fixed from 27


def test_an_old_buildx_beside_a_compose_that_refuses_it_stops_before_anything_runs() -> None:
    old = done("github.com/docker/buildx v0.13.1 788433953af10f2a\n")
    runner = builder_runner(done("26.1.5\n"), done("[]\n"), buildx=old)
    with pytest.raises(UserError, match=r"^docker buildx 0.13.1 is older than 0.17, which"):
        engine.detect_builder(engine.Engine(runner))
    fine = builder_runner(done("28.5.2\n"), done("[]\n"), done("github.com/docker/buildx 0.29.1\n"))
    assert engine.detect_builder(engine.Engine(fine)).bake
    assert not any(call[:3] == ["docker", "compose", "version"] for call in fine.calls)


def test_an_unreachable_engine_is_one_line() -> None:
    gone = done("", "Cannot connect to the Docker daemon at unix:///x.sock. Is it running?", 1)
    with pytest.raises(UserError, match=r"^cannot reach the Docker engine: Cannot connect"):
        engine.detect_builder(engine.Engine(builder_runner(gone)))


def test_buildx_answers_are_reused_while_nothing_that_picks_the_builder_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build keeps ``buildx inspect`` and ``version`` (a quarter of a second of every build
    where buildx is installed); the next one reuses them until a builder is picked, created or
    removed, or buildx itself changes. The engine's version and store are asked every time."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("BUILDX_BUILDER", raising=False)
    runner = builder_runner(done("28.5.2\n"), done("[]\n"), done("0.29.1\n"))
    first = engine.Engine(runner)
    builder = engine.detect_builder(first, [])
    kept = first.buildx_answers
    assert kept["inspect"] == "Driver: docker\n"
    runner.calls.clear()
    again = engine.Engine(runner)
    assert engine.detect_builder(again, [], kept) == builder
    assert not [call for call in runner.calls if call[:2] == ["docker", "buildx"]]
    assert {" ".join(call[:2]) for call in runner.calls} == {"docker version", "docker info"}
    (tmp_path / "buildx" / "activity").mkdir(parents=True)
    (tmp_path / "buildx" / "activity" / "default").write_text("2026-12-05")  # each build's
    engine.detect_builder(engine.Engine(runner), [], kept)
    assert not [call for call in runner.calls if call[:2] == ["docker", "buildx"]]
    changes: list[Callable[[], object]] = [
        lambda: (tmp_path / "buildx" / "current").write_text('{"Key": "ci"}'),
        lambda: monkeypatch.setenv("BUILDX_BUILDER", "ci"),
        lambda: (tmp_path / "config.json").write_text('{"currentContext": "remote"}'),
    ]
    for change in changes:
        change()
        runner.calls.clear()
        engine.detect_builder(engine.Engine(runner), [], kept)
        assert ["docker", "buildx", "inspect"] in runner.calls


def test_a_prune_is_needed_only_when_a_moved_tag_was_an_image_s_last() -> None:
    """Each build's image keeps its commit tag when ``:latest`` moves on: nothing is left
    untagged, and ``docker image prune`` is not run. A rebuild of a commit (its tag and
    ``:latest`` both move) or a tag never looked up may leave one; an image another build made
    (raw compose's, no label of ours) is not the prune's to remove."""
    ours = ownership("shop", "api")
    with_id = "\t".join(
        [line(["shop-api:abc", "shop-api:latest"], [], ours), json.dumps("sha256:1")]
    )
    stage = "\t".join([line(["shop-api:cache-deps"], [], ours), json.dumps("sha256:2")])
    theirs = "\t".join([line(["shop-web:latest"]), json.dumps("sha256:3")])
    wanted = ["shop-api:abc", "shop-api:latest", "shop-api:cache-deps", "shop-api:def"]
    runner = FakeCli(
        answers={
            "docker image inspect": inspected(with_id, stage, theirs, missing=["shop-api:def"])
        }
    )
    images = engine.Engine(runner)
    images.prefetch([*wanted, "shop-web:latest"])
    assert not images.may_orphan(["shop-api:def", "shop-api:latest"], "shop")  # :abc stays
    assert images.may_orphan(["shop-api:abc", "shop-api:latest"], "shop")  # the commit again
    assert images.may_orphan(["shop-api:cache-deps"], "shop")  # a stage image built again
    assert images.may_orphan(["shop-api:never-looked-up"], "shop")
    assert not images.may_orphan(["shop-web:latest"], "shop")  # raw compose's image
    assert not images.may_orphan(["shop-api:abc", "shop-api:latest"], "other")


def test_on_the_engine_s_local_socket_lookups_lists_and_tags_are_a_request_each(
    engine_socket: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # a docker config without credentials
    runner = FakeCli(base={"DOCKER_CONFIG": str(tmp_path)})
    monkeypatch.setattr(runner, "api_socket", lambda: str(engine_socket))
    images = engine.Engine(runner)
    images.prefetch(["app:1", "gone:1"])
    assert (images.local_id("app:1"), images.local_id("gone:1")) == ("sha256:abc", "")
    StandIn.tagged.clear()
    images.tag_all([("app:1", "app:2")])
    assert StandIn.tagged == ["app:1 -> app:2"]
    with pytest.raises(Failed, match="tagging app:3 failed: No such image: gone:1"):
        images.tag_all([("gone:1", "app:3")])
    held, gone = "127.0.0.1:5000/shop/app:cache", "127.0.0.1:5000/shop/app:gone"
    images.prefetch_remote([held, gone])
    assert images.locate(held, True, False) == Found(Where.REGISTRY, None)
    assert images.locate(gone, True, False) is None
    ours = images.labelled({"org.compose-tasks.project": "shop"})
    labels = {"org.compose-tasks.project": "shop"}
    assert ours == {"shop-app:abc": labels, "shop-app:latest": labels}  # not untagged, not theirs
    assert images.same_image("shop-app:abc", "shop-app:latest")
    assert runner.calls == []  # no CLI process, and the SDK never connected
    assert images._sdk is None
