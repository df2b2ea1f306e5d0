"""In-memory stand-ins for the engine: just what the deploy path asks of the SDK and the CLI.

``FakeDocker`` keeps images, containers, networks and volumes; ``ComposeUp`` answers the
``docker compose … up`` a release runs by starting one container per service on the image the
deploy override names, healthy or not as the test decides. No daemon, no subprocess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from docker.errors import ImageNotFound

from tasks.refs import COMPOSE_PROJECT, COMPOSE_SERVICE
from tasks.runner import Result, Runner


class Conflict(Exception):
    status_code = 409


class Obj:
    def __init__(self, store: dict[str, Obj], name: str, labels: Mapping[str, str]) -> None:
        self.store, self.name = store, name
        self.attrs: dict[str, Any] = {"Name": name, "Labels": dict(labels)}

    def remove(self) -> None:
        del self.store[self.name]


def _matches(labels: Mapping[str, str], filters: Mapping[str, Any]) -> bool:
    wanted = filters.get("label") or []
    pairs = [wanted] if isinstance(wanted, str) else list(wanted)
    return all(labels.get(k) == v for k, _, v in (pair.partition("=") for pair in pairs))


class Collection:
    """``client.networks`` / ``client.volumes``: create (exclusively, for networks) and list."""

    def __init__(self, exclusive: bool) -> None:
        self.exclusive = exclusive
        self.items: dict[str, Obj] = {}

    def create(self, name: str, labels: Mapping[str, str], **_: Any) -> Obj:
        if name in self.items:
            if self.exclusive:
                raise Conflict(f"network with name {name} already exists")
            return self.items[name]
        self.items[name] = Obj(self.items, name, labels)
        return self.items[name]

    def list(self, filters: Mapping[str, Any]) -> list[Obj]:
        return [item for item in self.items.values() if _matches(item.attrs["Labels"], filters)]


class Image:
    def __init__(self, image_id: str, tags: list[str], labels: Mapping[str, str], created: str):
        self.id, self.tags, self.labels = image_id, tags, dict(labels)
        self.short_id = image_id[:19]
        self.attrs: dict[str, Any] = {"Created": created, "Size": 1000}


class Images:
    def __init__(self) -> None:
        self.all: list[Image] = []

    def add(self, ref: str, labels: Mapping[str, str], created: str = "") -> Image:
        image = Image(f"sha256:{len(self.all):064d}", [ref], labels, created or ref)
        self.all.append(image)
        return image

    def get(self, ref: str) -> Image:
        for image in self.all:
            if ref in image.tags:
                return image
        raise ImageNotFound(f"No such image: {ref}")

    def list(self, name: str = "", filters: Mapping[str, Any] | None = None) -> list[Image]:
        if filters:
            return [i for i in self.all if _matches(i.labels, filters)]
        return [i for i in self.all if any(t.rsplit(":", 1)[0] == name for t in i.tags)]


class Container:
    def __init__(self, name: str, labels: Mapping[str, str], image: str, health: str) -> None:
        self.name, self.labels = name, dict(labels)
        probe = {"ExitCode": 1, "Output": "404 Not Found"} if health == "unhealthy" else {}
        self.attrs: dict[str, Any] = {
            "State": {"Status": "running", "Health": {"Status": health, "Log": [probe]}},
            "Config": {"Image": image},
        }

    def logs(self, tail: int = 20) -> bytes:
        return b"serving\n"


class Containers:
    def __init__(self) -> None:
        self.running: dict[str, Container] = {}

    def list(self, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[Container]:
        filters = filters or {}
        return [c for c in self.running.values() if _matches(c.labels, filters)]


class Api:
    def __init__(self, images: Images) -> None:
        self.images = images
        self.removed: list[str] = []

    def remove_image(self, ref: str, force: bool = False) -> list[dict[str, str]]:
        for image in self.images.all:
            if ref in image.tags:
                image.tags.remove(ref)
        self.removed.append(ref)
        return [{"Untagged": ref}]

    def prune_builds(self, **options: Any) -> dict[str, Any]:
        self.pruned = options
        return {"SpaceReclaimed": 4096, "CachesDeleted": ["a", "b"]}


class FakeDocker:
    """The SDK client: images, containers, networks (the lock) and volumes (the history)."""

    def __init__(self) -> None:
        self.images = Images()
        self.containers = Containers()
        self.networks = Collection(exclusive=True)
        self.volumes = Collection(exclusive=False)
        self.api = Api(self.images)

    def df(self) -> dict[str, Any]:
        layers = sum(1000 for image in self.images.all if image.tags)
        return {"LayersSize": layers, "BuildCache": [{"Size": 4096, "InUse": False}]}


class ComposeUp(Runner):
    """Answers ``docker compose … up`` by (re)starting the services on the override's images;
    ``health(image)`` says how each comes up. Every call is recorded."""

    def __init__(self, client: FakeDocker, health: Callable[[str], str]) -> None:
        super().__init__()
        self.client, self.health = client, health
        self.calls: list[list[str]] = []

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        self.calls.append(list(argv))
        if "up" in argv:
            project = argv[argv.index("-p") + 1]
            override = Path(argv[[i for i, a in enumerate(argv) if a == "-f"][-1] + 1])
            text = override.read_text()
            for service, image in re.findall(r"^  (\S+):\n    image: (\S+)$", text, re.M):
                labels = {COMPOSE_PROJECT: project, COMPOSE_SERVICE: service}
                name = f"{project}-{service}-1"
                self.client.containers.running[name] = Container(
                    name, labels, image, self.health(image)
                )
        return Result(tuple(argv), 0, "", "")
