"""In-memory stand-ins for the engine: just what the tasks ask of the SDK and the CLI.

``FakeDocker`` has the SDK client's shape (the real adapter, ``docker.sdk.Sdk``, runs on it) and
keeps images, containers, networks, volumes, configs and swarm services, failing with the SDK's
own error types; ``FakeCli`` answers the docker CLI, compose and git. Every unit test uses these
two. No daemon, no subprocess.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from docker.errors import APIError, ImageNotFound, NotFound

from compose_tasks.docker import probe
from compose_tasks.docker.refs import COMPOSE_PROJECT, COMPOSE_SERVICE
from compose_tasks.docker.runner import Result, Runner


def api_error(message: str, status: int, explanation: str | None = None) -> APIError:
    """The error the SDK raises for an engine's HTTP answer ``status``."""
    response = requests.Response()
    response.status_code, response.url = status, "http+docker://localhost/fake"
    return APIError(message, response=response, explanation=explanation)


def conflict(message: str) -> APIError:
    return api_error(message, 409)


class Clock:
    """The stand-in engine's clock: real time, plus what a test advances it by."""

    offset = timedelta()

    @classmethod
    def advance(cls, seconds: float) -> None:
        cls.offset += timedelta(seconds=seconds)

    @classmethod
    def now(cls) -> str:
        return (datetime.now(UTC) + cls.offset).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class Obj:
    made = 0  # objects created so far: each gets an id of its own

    def __init__(self, store: dict[str, Obj], name: str, labels: Mapping[str, str]) -> None:
        Obj.made += 1
        self.store, self.name, self.id = store, name, f"id{Obj.made:08d}"
        self.attrs: dict[str, Any] = {"Name": name, "Labels": dict(labels), "Created": Clock.now()}

    def remove(self) -> None:
        if self.store.get(self.name) is not self:
            raise NotFound(f"no such object: {self.id}")
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
                raise conflict(f"network with name {name} already exists")
            return self.items[name]
        self.items[name] = Obj(self.items, name, labels)
        return self.items[name]

    def list(self, filters: Mapping[str, Any]) -> list[Obj]:
        return [item for item in self.items.values() if _matches(item.attrs["Labels"], filters)]

    def get(self, name: str) -> Obj:
        found = self.items.get(name) or next(
            (item for item in self.items.values() if item.id == name), None
        )
        if found is None:
            raise NotFound(f"no such object: {name}")
        return found


class Image:
    def __init__(self, image_id: str, tags: list[str], labels: Mapping[str, str], created: str):
        self.id, self.tags, self.labels = image_id, tags, dict(labels)
        self.short_id = image_id[:19]
        self.attrs: dict[str, Any] = {"Created": created, "Size": 1000}


class Images:
    """``client.images``; ``registry``: the refs a registry holds; ``registry_error``: what
    every registry lookup fails with instead (a registry that is down, slow or refuses)."""

    def __init__(self) -> None:
        self.all: list[Image] = []
        self.registry: set[str] = set()
        self.registry_error: Exception | None = None

    def get_registry_data(self, ref: str) -> None:
        if self.registry_error is not None:
            raise self.registry_error
        if ref not in self.registry:
            raise api_error("x", 404, f"manifest unknown: {ref}")

    def add(self, ref: str, labels: Mapping[str, str], created: str = "") -> Image:
        digest = hashlib.sha256(f"{len(self.all)} {ref}".encode()).hexdigest()
        image = Image(f"sha256:{digest}", [ref], labels, created or ref)
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
    """A container; ``health`` is its health status, or ``exited N`` (no health check, exit
    code N, ``restart`` its restart policy)."""

    def __init__(
        self,
        name: str,
        labels: Mapping[str, str],
        image: str,
        health: str,
        image_id: str = "",
        restart: str = "no",
    ) -> None:
        self.id = self.name = name
        self.labels = dict(labels)
        probe = {"ExitCode": 1, "Output": "404 Not Found"} if health == "unhealthy" else {}
        state: dict[str, Any] = {"Status": "running", "Health": {"Status": health, "Log": [probe]}}
        if health.startswith("exited "):
            state = {"Status": "exited", "ExitCode": int(health.split()[1])}
        self.attrs: dict[str, Any] = {
            "State": state,
            "Config": {"Image": image, "Labels": self.labels},
            "Image": image_id,
            "HostConfig": {"RestartPolicy": {"Name": restart}},
            "Created": Clock.now(),
        }
        self.files: dict[str, bytes] = {}  # path: content (put_archive, get_archive)
        self.store: dict[str, Container] = {}

    def logs(self, tail: int = 20) -> bytes:
        return b"serving\n"

    def start(self) -> None:
        self.attrs["State"] = {"Status": "running"}

    def remove(self, force: bool = False) -> None:
        if self.store.get(self.name) is not self:
            raise NotFound(f"No such container: {self.name}")
        del self.store[self.name]


class Containers:
    """``client.containers``; ``images``: what ``create`` may start from."""

    def __init__(self, images: Images) -> None:
        self.running: dict[str, Container] = {}
        self.images = images

    def list(
        self, all: bool = False, filters: Mapping[str, Any] | None = None, **_: Any
    ) -> list[Container]:
        filters = filters or {}
        return [c for c in self.running.values() if _matches(c.labels, filters)]

    def get(self, container_id: str) -> Container:
        if container_id not in self.running:
            raise NotFound(f"No such container: {container_id}")
        return self.running[container_id]

    def create(self, image: str, name: str, labels: Mapping[str, str], **options: Any) -> Container:
        self.images.get(image)
        if name in self.running:
            raise conflict(f'Conflict. The container name "/{name}" is already in use')
        restart = (options.get("restart_policy") or {}).get("Name", "no")
        made = Container(name, labels, image, "exited 0", restart=restart)
        made.attrs["State"] = {"Status": "created"}
        made.store = self.running
        self.running[name] = made
        return made


def _is_id(image: Image, ref: str) -> bool:
    return len(ref) >= 12 and image.id.removeprefix("sha256:").startswith(ref)


class Api:
    """``client.api``: removal (``in_use``: refs a container needs; ``broken``: refs whose
    removal fails) and the builder prune."""

    def __init__(self, images: Images, services: Services, containers: Containers) -> None:
        self.images, self.services, self.containers = images, services, containers
        self.removed: list[str] = []
        self.in_use: set[str] = set()
        self.broken: set[str] = set()
        self.tagged: list[tuple[str, str, str]] = []  # (source, repository, tag) of each tag
        self.asked: list[Mapping[str, Any]] = []  # the filters of each task listing

    def remove_image(self, ref: str, force: bool = False) -> list[dict[str, str]]:
        if ref in self.broken:
            raise api_error("remove failed", 500, f"could not remove {ref}: device busy")
        image = next((i for i in self.images.all if ref in i.tags or _is_id(i, ref)), None)
        if image is None:
            raise ImageNotFound(f"No such image: {ref}")
        if ref in self.in_use and not force:
            raise conflict(f"conflict: unable to remove {ref}: image is being used")
        if ref in image.tags:
            image.tags.remove(ref)
        self.removed.append(ref)
        return [{"Untagged": ref}, {"Deleted": image.id}] if not image.tags else [{"Untagged": ref}]

    def tag(self, source: str, repository: str, tag: str) -> bool:
        self.tagged.append((source, repository, tag))
        for image in self.images.all:
            if source in image.tags or _is_id(image, source):
                image.tags.append(f"{repository}:{tag}")
        return True

    def tasks(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.asked.append(dict(filters))
        service = next(s for s in self.services.all if s.id == filters["service"])
        desired = filters.get("desired-state")
        return [t for t in service.tasks if not desired or t["DesiredState"] in desired]

    def prune_builds(self, **options: Any) -> dict[str, Any]:
        self.pruned = options
        return {"SpaceReclaimed": 4096, "CachesDeleted": ["a", "b"]}

    def import_image_from_data(
        self, data: bytes, repository: str, tag: str, changes: Sequence[str] = ()
    ) -> None:
        labels = {}  # the LABEL lines of ``changes`` are what the tasks read back
        for line in changes:
            if line.startswith("LABEL "):
                key, _, value = line.removeprefix("LABEL ").partition("=")
                labels[key] = value
        self.images.add(f"{repository}:{tag}", labels)

    def start(self, container: str) -> None:
        self.containers.get(container).start()

    def put_archive(self, container: str, path: str, data: bytes) -> bool:
        made = self.containers.get(container)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive.getmembers():
                content = (archive.extractfile(member) or io.BytesIO()).read()
                made.files[f"{path.rstrip('/')}/{member.name}"] = content
        return True

    def get_archive(self, container: str, path: str) -> tuple[list[bytes], dict[str, Any]]:
        made = self.containers.get(container)
        path = path.rstrip("/")
        found = {
            name: data
            for name, data in made.files.items()
            if name == path or name.startswith(f"{path}/")
        }
        if not found:
            raise NotFound(f"Could not find the file {path} in container {container}")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, data in found.items():
                info = tarfile.TarInfo(name.removeprefix(path.rsplit("/", 1)[0]).lstrip("/"))
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return [buffer.getvalue()], {}


class Node:
    def __init__(self, number: int, state: str = "ready", role: str = "manager") -> None:
        self.attrs = {
            "ID": f"n{number}",
            "Description": {"Hostname": f"sw{number}"},
            "Status": {"State": state},
            "Spec": {"Availability": "active", "Role": role},
        }


class Nodes:
    """``client.nodes``: ``count`` swarm nodes (``down``: the numbers of those that are down);
    ``workers``: the numbers of those that are workers, not managers; none: this engine is no
    swarm manager."""

    def __init__(self) -> None:
        self.count = 0
        self.down: set[int] = set()
        self.workers: set[int] = set()

    def list(self) -> list[Node]:
        if not self.count:
            raise api_error("x", 503, "This node is not a swarm manager.")
        return [
            Node(
                n,
                "down" if n in self.down else "ready",
                "worker" if n in self.workers else "manager",
            )
            for n in range(1, self.count + 1)
        ]


class Service:
    """A Swarm service: ``tasks`` as the engine lists them (newest last)."""

    def __init__(self, name: str, image: str, replicas: int, **spec: Any) -> None:
        self.id = self.name = name
        template = {
            "ContainerSpec": {"Image": image},
            "Placement": spec.get("placement", {}),
            "RestartPolicy": {"Condition": spec.get("restart", "any")},
        }
        self.attrs: dict[str, Any] = {
            "Spec": {"Mode": {"Replicated": {"Replicas": replicas}}, "TaskTemplate": template},
            "UpdateStatus": {"State": spec.get("update", "completed"), "Message": ""},
        }
        self.tasks: list[dict[str, Any]] = []

    def task(
        self,
        state: str,
        node: int,
        error: str = "",
        desired: str = "running",
        image: str = "",
        slot: int = 0,
    ) -> None:
        created = f"{len(self.tasks):04d}"
        container = {"ContainerID": f"{self.name}.{created}"}  # not on this engine: elsewhere
        status = {"State": state, "Err": error, "ContainerStatus": container}
        entry: dict[str, Any] = {
            "CreatedAt": created,
            "DesiredState": desired,
            "NodeID": f"n{node}",
            **({"Slot": slot} if slot else {}),
        }
        spec = self.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
        entry["Spec"] = {"ContainerSpec": {"Image": image or spec["Image"]}}
        self.tasks.append({**entry, "Status": status})


class Services:
    def __init__(self) -> None:
        self.all: list[Service] = []

    def list(self, filters: Mapping[str, Any] | None = None) -> list[Service]:
        return list(self.all)


class FakeDocker:
    """The SDK client: images, containers (running ones: a compose host's lock and history
    keeper), networks and volumes."""

    def __init__(self) -> None:
        self.nodes = Nodes()
        self.services = Services()
        self.images = Images()
        self.containers = Containers(self.images)
        self.networks = Collection(exclusive=True)
        self.configs = Collection(exclusive=True)
        self.volumes = Collection(exclusive=False)
        self.api = Api(self.images, self.services, self.containers)

    def version(self) -> dict[str, str]:
        return {"Version": "20.10.24", "ApiVersion": "1.41"}

    def info(self) -> dict[str, str]:
        return {"SystemTime": Clock.now(), "Architecture": "x86_64"}

    def df(self) -> dict[str, Any]:
        layers = sum(1000 for image in self.images.all if image.tags)
        return {"LayersSize": layers, "BuildCache": [{"Size": 4096, "InUse": False}]}


def fake_id(ref: str) -> str:
    """The short image id ``FakeCli`` gives a labelled image."""
    return hashlib.sha256(ref.encode()).hexdigest()[:12]


Answer = Result | Exception | Callable[[list[str]], Result]


class FakeCli(Runner):
    """The one stand-in for the docker CLI, compose and git: every argv is recorded (``calls``,
    with the environment each was given in ``envs``).

    A command is answered from ``answers`` first: the entry whose key (words joined by spaces)
    is the longest prefix of the argv, a result, an error to raise or a function of the argv.
    Otherwise as a build sees it: ``compose config`` prints ``project``, the engine is a 20.10
    with BuildKit's docker driver, ``local`` are the refs of local images and ``labelled`` ours,
    and ``compose build`` streams ``progress`` (BuildKit's JSON lines) and exits ``code``
    (``then``: what the builds after the first stream, one each). With ``client``, ``compose
    up`` (re)starts the services on the images its last ``-f`` file names, healthy or not as
    ``health(image)`` says. A command it does not know fails the test, unless ``permissive``:
    then it succeeds and prints nothing."""

    def __init__(
        self,
        progress: Sequence[str] = (),
        code: int = 0,
        local: Sequence[str] = (),
        *,
        answers: Mapping[str, Answer] | None = None,
        then: Sequence[tuple[list[str], int]] = (),
        client: FakeDocker | None = None,
        health: Callable[[str], str] = lambda image: "healthy",
        permissive: bool = False,
        base: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(base)
        self.answers = dict(answers or {})
        self.project: Mapping[str, Any] = {}
        self.progress, self.code, self.local = progress, code, set(local)
        self.then = list(then)
        self.client, self.health, self.permissive = client, health, permissive
        self.labelled: dict[str, dict[str, str]] = {}  # local images of ours: ref -> labels
        self.version = "20.10.24"  # a 28.x with ``containerd``: the containerd image store
        self.containerd = False
        self.buildx = True  # ``buildx inspect`` answers: compose builds through bake
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []
        self.push_error = ""  # set: ``docker push`` fails with it

    def engine_info(self) -> probe.Info | None:
        """No socket: the engine is asked through the (fake) CLI."""
        return None

    def api_socket(self) -> str:
        """None: the engine is reached through the (fake) CLI and SDK."""
        return ""

    def _answer(self, words: list[str]) -> Result | None:
        keys = [key for key in self.answers if words[: len(key.split())] == key.split()]
        if not keys:
            return None
        answer = self.answers[max(keys, key=lambda key: len(key.split()))]
        if isinstance(answer, Exception):
            raise answer
        done = answer(words) if callable(answer) else answer
        return Result(tuple(words), done.code, done.out, done.err)

    def _up(self, words: list[str]) -> Result:
        assert self.client is not None
        project = words[words.index("-p") + 1]
        override = Path(words[[i for i, a in enumerate(words) if a == "-f"][-1] + 1])
        text = override.read_text()
        for service, image in re.findall(r"^  (\S+):\n    image: (\S+)$", text, re.M):
            labels = {COMPOSE_PROJECT: project, COMPOSE_SERVICE: service}
            name = f"{project}-{service}-1"
            self.client.containers.running[name] = Container(
                name, labels, image, self.health(image)
            )
        return Result(tuple(words), 0, "", "")

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        self.calls.append(list(argv))
        self.envs.append(dict(env or {}))
        words = list(argv)
        answered = self._answer(words)
        if answered is not None:
            return answered
        if self.client is not None and words[:2] == ["docker", "compose"] and "up" in words:
            return self._up(words)
        if words[:3] == ["docker", "compose", "version"]:
            return Result(tuple(argv), 0, "2.40.0\n", "")
        if words[:2] == ["docker", "compose"] and "config" in words:
            return Result(tuple(argv), 0, json.dumps(self.project), "")
        if words[:2] == ["docker", "version"]:
            return Result(tuple(argv), 0, f"{self.version}\n", "")
        if words[:2] == ["docker", "info"]:
            store = [["driver-type", "io.containerd.snapshotter.v1"]] if self.containerd else []
            return Result(tuple(argv), 0, json.dumps(store), "")
        if words[:2] == ["docker", "buildx"] and not self.buildx:
            return Result(tuple(argv), 1, "", "docker: 'buildx' is not a docker command.")
        if words[:3] == ["docker", "buildx", "inspect"]:
            return Result(tuple(argv), 0, "Name: default\nDriver: docker\n", "")
        if words[:3] == ["docker", "buildx", "version"]:
            return Result(tuple(argv), 1, "", "docker: 'buildx' is not a docker command.")
        if words[:3] == ["docker", "image", "ls"]:
            wanted = [w[len("label=") :].split("=", 1) for w in words if w.startswith("label=")]
            refs = [
                ref
                for ref, labels in self.labelled.items()
                if all(labels.get(key) == value for key, value in wanted)
            ]
            return Result(tuple(argv), 0, "".join(f"{fake_id(ref)} {ref}\n" for ref in refs), "")
        if words[:3] == ["docker", "image", "inspect"]:
            refs = [ref for ref in words[3:] if ":" in ref and not ref.startswith("{{")]
            found = "".join(
                "\t".join(json.dumps(part) for part in ([ref], [], labels, f"sha256:{ref}")) + "\n"
                for ref, labels in self.labelled.items()
                if ref in refs or fake_id(ref) in words
            )
            found += "".join(
                f"{json.dumps([ref])}\t[]\t{{}}\n" for ref in refs if ref in self.local
            )
            known = self.local | self.labelled.keys()
            missing = "\n".join(f"Error: No such image: {r}" for r in refs if r not in known)
            return Result(tuple(argv), 1 if missing else 0, found, missing)
        if words[:2] == ["docker", "push"] and self.push_error:
            return Result(tuple(argv), 1, "", self.push_error)
        if words[:3] in (["docker", "image", "tag"], ["docker", "image", "prune"]) or words[:2] == [
            "docker",
            "push",
        ]:
            return Result(tuple(argv), 0, "", "")
        if words[:1] == ["git"]:
            return Result(tuple(argv), 128, "", "fatal: not a git repository")
        if self.permissive:
            return Result(tuple(argv), 0, "", "")
        raise AssertionError(f"unexpected command: {words}")

    def stream(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        env: Mapping[str, str] | None = None,
        on_idle: Callable[[], None] | None = None,
        idle: float = 15.0,
    ) -> int:
        self.calls.append(list(argv))
        self.envs.append(dict(env or {}))
        if sum("build" in call for call in self.calls) > 1 and self.then:
            self.progress, self.code = self.then.pop(0)
        for line in self.progress:
            on_line(line)
            if on_idle is not None:
                on_idle()  # as if the build had been quiet for ``idle`` seconds
        return self.code
