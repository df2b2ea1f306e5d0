"""clear-caches without an engine: sizes, base-image discovery, and what is removed on an
in-memory engine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from compose_tasks import _clear, clear
from compose_tasks._clear import carry_out, collect
from compose_tasks.buildplan.generated import OVERRIDE_NAME, write_generated
from compose_tasks.buildplan.pipeline import Prepared, Project, base_images
from compose_tasks.docker import engine
from compose_tasks.docker.refs import ownership
from compose_tasks.docker.sdk import Sdk
from compose_tasks.errors import UserError
from compose_tasks.settings import load
from compose_tasks.sizes import human, parse_size
from tests.fakes import Container, FakeCli, FakeDocker
from tests.support import GIT, plan_for, project


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("10GB", 10 * 1000**3), ("1GiB", 1024**3), ("2m", 2 * 1000**2), ("1.5kB", 1500)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "10i", "1e9", "-5GB", "9" * 40, "10 GiBs", ""])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(UserError, match="invalid size"):
        parse_size(text)


def test_human() -> None:
    assert (human(999), human(1500), human(2_500_000)) == ("999B", "1.5kB", "2.5MB")


def test_base_images_skip_stages_and_scratch(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM --platform=linux/amd64 node:20 AS build\nRUN x\nFROM build AS test\n"
        "FROM scratch\nFROM nginx:1.27\nCOPY --from=build /a /b\n"
    )
    compose = project(web={"build": {"context": str(tmp_path)}})
    plan = plan_for(compose, tmp_path)
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    prepared = Prepared(Project(settings, (), GIT, compose), plan, engine.Engine(FakeCli()))
    assert base_images(prepared) == ["node:20", "nginx:1.27"]


def test_only_ours_is_removed_on_an_in_memory_engine(tmp_path: Path) -> None:
    """Our tags go; a foreign tag in our repository, another project's image and the base
    image stay, each with the reason; the builder cache is pruned and counted."""
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN true\n")
    compose = project(api={"build": {"context": str(tmp_path)}})
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    plan = plan_for(compose, tmp_path, settings=settings)
    client = FakeDocker()
    client.images.add("shop-api:abc123abc123", ownership("shop", "api"))
    client.images.add("shop-api:latest", ownership("shop", "api"))
    client.images.add("shop-api:theirs", {})  # tagged into our repository by someone else
    client.images.add("blog-api:latest", ownership("blog", "api"))  # another project
    client.images.add("busybox:1.36", {})
    docker = engine.Engine(FakeCli(), Sdk(client))
    prepared = Prepared(Project(settings, (), GIT, compose), plan, docker)
    items = collect(prepared, settings)
    kinds = {(item.kind, item.name): item for item in items}
    assert not kinds["image", "shop-api:abc123abc123"].kept
    assert kinds["image", "shop-api:theirs"].kept.startswith("not ours")
    assert ("image", "blog-api:latest") not in kinds and ("image", "busybox:1.36") not in kinds
    reclaimed = carry_out(prepared, items, None, settings)
    assert client.api.removed == ["shop-api:abc123abc123", "shop-api:latest"]
    assert [i.tags for i in client.images.all[2:]] == [
        ["shop-api:theirs"],
        ["blog-api:latest"],
        ["busybox:1.36"],
    ]
    assert client.api.pruned == {"all": True, "keep_storage": None}
    assert reclaimed["builder cache"] == 4096 and reclaimed["images"] == 2000
    assert all(item.ok for item in items)


def test_the_task_lists_on_a_dry_run_refuses_without_yes_and_clears_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox:1.36\nRUN true\n")
    compose = project(api={"build": {"context": str(tmp_path)}})
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
    client = FakeDocker()
    client.images.add("shop-api:latest", ownership("shop", "api"))
    plan = plan_for(compose, tmp_path, settings=settings)
    prepared = Prepared(
        Project(settings, (), GIT, compose), plan, engine.Engine(FakeCli(), Sdk(client))
    )
    monkeypatch.setattr(_clear, "settings_of", lambda c: settings)
    monkeypatch.setattr(_clear, "prepare", lambda settings, docker, services: prepared)
    clear.clear_caches(MockContext(), dry_run=True, json=True)
    listed = json.loads(capsys.readouterr().out)
    assert (
        listed["dry_run"]
        and {"kind": "image", "result": "would remove"}.items() <= {**listed["items"][0]}.items()
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    with pytest.raises(Exit, match="refusing to remove 2 items without --yes"):
        clear.clear_caches(MockContext())
    assert client.api.removed == []  # nothing was removed
    clear.clear_caches(MockContext(), yes=True)
    assert client.api.removed == ["shop-api:latest"]
    assert "reclaimed: images 1.0kB, builder cache 4.1kB" in capsys.readouterr().out


class World:
    """A project ``shop`` with one service on the in-memory engine, its settings in tmp_path."""

    def __init__(self, tmp_path: Path, dockerfile: str = "FROM busybox:1.36\nRUN true\n") -> None:
        (tmp_path / "Dockerfile").write_text(dockerfile)
        self.compose = project(api={"build": {"context": str(tmp_path)}})
        self.settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=tmp_path)
        self.client = FakeDocker()
        self.ours = ownership("shop", "api")

    def prepared(self, **compose: object) -> Prepared:
        data = {**self.compose, **compose}
        plan = plan_for(data, self.settings.project_dir, settings=self.settings)
        docker = engine.Engine(FakeCli(), Sdk(self.client))
        return Prepared(Project(self.settings, (), GIT, data), plan, docker)


def test_in_use_images_are_untagged_and_dangling_ones_kept(tmp_path: Path) -> None:
    world = World(tmp_path)
    used = world.client.images.add("shop-api:latest", world.ours)
    dangling = world.client.images.add("shop-api:old", world.ours)
    dangling.tags.clear()  # a rebuild untagged it; a stopped container still needs it
    for image in (used, dangling):
        name = f"shop-{image.short_id}"
        world.client.containers.running[name] = Container(name, {}, "x", "healthy", image.id)
    world.client.api.in_use = {"shop-api:latest", dangling.id.removeprefix("sha256:")[:12]}
    prepared = world.prepared()
    items = {item.name: item for item in collect(prepared, world.settings)}
    short = dangling.id.removeprefix("sha256:")[:12]
    assert items["shop-api:latest"].note.startswith(f"in use by shop-{used.short_id} (running)")
    assert items[short].kind == "dangling image"
    carry_out(prepared, items.values(), None, world.settings)
    assert items["shop-api:latest"].result == "removed"  # forced: the container keeps its image
    assert items[short].result == "kept: in use by a container (no tag, serves no cache)"


def test_folders_base_images_and_a_failed_removal(tmp_path: Path) -> None:
    """Cache folders and the generated files go; the base image only on request; a removal
    the engine refuses fails its item, the rest still goes."""
    world = World(tmp_path)
    world.client.images.add("shop-api:latest", world.ours)
    world.client.images.add("shop-api:abc123abc123", world.ours)
    world.client.images.add("busybox:1.36", {})
    world.client.api.broken = {"shop-api:abc123abc123"}
    folder = world.settings.cache_dir / "api"
    folder.mkdir(parents=True)
    (folder / "index.json").write_text("{}")
    write_generated(world.settings, world.settings.build_dir / OVERRIDE_NAME, "x: 1\n")
    prepared = world.prepared()
    items = collect(prepared, world.settings, keep_storage=10**9, with_base_images=True)
    by_kind = {item.kind: item for item in items}
    assert by_kind["base image"].name == "busybox:1.36" and not by_kind["base image"].kept
    assert by_kind["builder cache"].name.startswith("build cache beyond 1.0GB")
    assert (by_kind["cache folder"].name, by_kind["cache folder"].size) == (str(folder), 2)
    assert OVERRIDE_NAME in by_kind["build folder"].note
    reclaimed = carry_out(prepared, items, 10**9, world.settings)
    results = {item.name: (item.ok, item.result) for item in items}
    assert results["shop-api:abc123abc123"][0] is False
    assert results["shop-api:abc123abc123"][1].startswith("failed: removing shop-api:abc123abc123")
    assert results["busybox:1.36"] == (True, "removed")
    assert not folder.exists() and not world.settings.build_dir.exists()
    assert (reclaimed["cache folders"], world.client.api.pruned["keep_storage"]) == (2, 10**9)


def test_a_failed_item_fails_the_task_after_the_rest_was_cleared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path)
    world.client.images.add("shop-api:latest", world.ours)
    world.client.images.add("shop-api:abc123abc123", world.ours)
    world.client.api.broken = {"shop-api:latest"}
    prepared = world.prepared()
    monkeypatch.setattr(_clear, "settings_of", lambda c: world.settings)
    monkeypatch.setattr(_clear, "prepare", lambda settings, docker, services: prepared)
    with pytest.raises(Exit) as stopped:
        clear.clear_caches(MockContext(), yes=True)
    assert stopped.value.message == "error: 1 of 3 items were not cleared (see the table)"
    assert world.client.api.removed == ["shop-api:abc123abc123"]
    assert "failed: removing shop-api:latest" in capsys.readouterr().out


@pytest.mark.parametrize(("answer", "removed"), [("y\n", True), ("\n", False)])
def test_a_terminal_is_asked_before_anything_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str, removed: bool
) -> None:
    world = World(tmp_path)
    world.client.images.add("shop-api:latest", world.ours)
    prepared = world.prepared()
    monkeypatch.setattr(_clear, "settings_of", lambda c: world.settings)
    monkeypatch.setattr(_clear, "prepare", lambda settings, docker, services: prepared)
    terminal = io.StringIO(answer)
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    if removed:
        clear.clear_caches(MockContext())
    else:
        with pytest.raises(Exit, match="cancelled; nothing was removed"):
            clear.clear_caches(MockContext())
    assert world.client.api.removed == (["shop-api:latest"] if removed else [])
