"""The Docker SDK behind one typed adapter: every SDK call the tasks make, and its failures
mapped once to ``errors.EngineError`` (``NotFound``, ``Conflict``, ``Unreachable``).

Callers get plain records (``ImageInfo``, ``ContainerInfo``, ``ServiceInfo``…), never SDK
objects, and never need the SDK's error types. The SDK itself is loaded by ``connect`` only.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
import tarfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any

from compose_tasks.docker import trace
from compose_tasks.docker.refs import split_ref
from compose_tasks.errors import Conflict, EngineError, NotFound, Unreachable, gist


class Kind(StrEnum):
    """The kinds of object the deploy state is kept in (each named after its SDK collection)."""

    CONFIG = "config"
    CONTAINER = "container"
    NETWORK = "network"
    VOLUME = "volume"


DF_ATTEMPTS = 10  # system df racing another build (see Sdk.disk_usage): ~7 s in all


class Lookup(StrEnum):
    """What a registry said of a ref (``Sdk.registry_lookup``)."""

    HELD = "held"
    ABSENT = "absent"
    UNREACHABLE = "unreachable"  # refused, no route, a name that does not resolve
    # no answer in time (the engine gave up: a registry that accepts the connection and stays
    # silent, a black-holed address): BuildKit waits on such a cache source without a limit
    # (measured on 20.10: a build still waiting after 10 minutes)
    SILENT = "silent"


def failed_lookup(status: int | None, text: str) -> Lookup:
    """What a registry lookup the engine did not answer with the image means: its status (None
    without one) and its words."""
    text = text.lower()
    gone = ("not found", "does not exist", "denied", "unauthorized", "manifest unknown")
    if status in (401, 403, 404) or any(word in text for word in gone):
        return Lookup.ABSENT
    # (Go's words for giving up; the text is cut at 200 characters, so the first)
    waited = ("request canceled", "deadline exceeded", "timeout")
    return Lookup.SILENT if any(w in text for w in waited) else Lookup.UNREACHABLE


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    created: str = ""
    size: int = 0

    @property
    def short_id(self) -> str:
        """The id's first 12 hex digits, as the CLI shows it."""
        return self.id.removeprefix("sha256:")[:12]


@dataclass(frozen=True)
class Probe:
    """One health-check run."""

    exit_code: int | None
    output: str


@dataclass(frozen=True)
class Endpoint:
    """A container's place on one network: the names it answers to there (besides its own)
    and its legacy links (``container:alias``)."""

    aliases: tuple[str, ...] = ()
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: Mapping[str, str]
    status: str  # running, exited, dead…
    image_id: str = ""
    image: str = ""  # the ref it was created from
    health: str | None = None  # None: no health check
    probes: tuple[Probe, ...] = ()
    exit_code: int = 0
    restart: str = ""  # its restart policy: '' or no, always, unless-stopped, on-failure
    networks: Mapping[str, Endpoint] = field(default_factory=dict)  # by network name
    stop_timeout: int | None = None  # its stop_grace_period in seconds (None: the engine's)

    @property
    def finished(self) -> bool:
        """A one-shot container that did its job: exited 0 and not to be restarted."""
        return self.status == "exited" and self.exit_code == 0 and self.restart not in (
            "always", "unless-stopped",
        )  # fmt: skip


@dataclass(frozen=True)
class Record:
    """A config, container, network or volume: what deploy state is kept in."""

    kind: Kind
    name: str
    labels: Mapping[str, str]
    created: datetime | None = None  # by the engine's clock


@dataclass(frozen=True)
class ServiceInfo:
    """A Swarm service as its spec and update status say."""

    id: str
    name: str
    image: str
    replicas: int | None  # None: global mode
    update_state: str = ""
    update_message: str = ""
    update_started: str = ""  # when the update (or rollback) the state belongs to began
    max_per_node: int = 0  # 0: no limit
    constraints: tuple[str, ...] = ()
    one_shot: bool = False  # restart_policy condition none: a task that completes is done


@dataclass(frozen=True)
class TaskInfo:
    """One Swarm task: where it was placed and how it is doing."""

    state: str
    desired: str
    node_id: str = ""
    container_id: str = ""
    error: str = ""
    slot: int = 0
    image: str = ""  # the image its spec runs (with the digest Swarm resolved)


@dataclass(frozen=True)
class NodeInfo:
    id: str
    hostname: str
    state: str  # ready, down, unknown
    availability: str  # active, pause, drain
    manager: bool = False


@dataclass(frozen=True)
class DiskUsage:
    layers_size: int
    cache: tuple[tuple[int, bool], ...] = field(default=())  # (size, in use) per record


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Turn the SDK's (and its transport's) failures inside the block into ours; the block is
    one engine call of the run's trace."""
    try:
        with trace.timed(f"engine: {what}"):
            yield
    except Exception as exc:
        if isinstance(exc, EngineError) or not _transport(exc):
            raise  # ours already, or a bug: not the engine's to answer for
        raise _mapped(what, exc) from None


_TRANSPORTS = ("docker.", "requests.", "urllib3.", "paramiko.")


def _transport(exc: Exception) -> bool:
    """Whether the SDK or what carries its calls raised ``exc``."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith(_TRANSPORTS)


def _mapped(what: str, exc: Exception) -> EngineError:
    text = f"{what}: {gist(exc)}"
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    if status == 404 or name.endswith("NotFound"):
        return NotFound(text, status)
    if status == 409:
        return Conflict(text, status)
    if status is not None or (
        type(exc).__module__.startswith("docker.") and name != "DockerException"
    ):
        return EngineError(text, status)  # the engine answered, or the SDK refused the call
    return Unreachable(text)  # no answer: the connection, or the SDK could not make one


def _filters(labels: Mapping[str, str], **more: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"label": [f"{key}={value}" for key, value in labels.items()]}
    query.update({key.replace("_", "-"): value for key, value in more.items()})
    return query


def _health(state: Mapping[str, Any]) -> tuple[str | None, tuple[Probe, ...]]:
    health = state.get("Health") or {}
    probes = tuple(
        Probe(probe.get("ExitCode"), str(probe.get("Output", "")))
        for probe in health.get("Log") or []
    )
    return health.get("Status"), probes


def _endpoint(settings: Mapping[str, Any]) -> Endpoint:
    return Endpoint(
        tuple(str(a) for a in settings.get("Aliases") or ()),
        tuple(str(link) for link in settings.get("Links") or ()),
    )


def engine_time(text: str) -> datetime | None:
    """A time the engine prints (RFC 3339, nanoseconds, ``Z``); None when there is none."""
    if not text or text.startswith("0001-"):
        return None
    clean = re.sub(r"(\.\d{6})\d+", r"\1", text.strip()).replace("Z", "+00:00")
    try:
        found = datetime.fromisoformat(clean)
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _tar(files: Mapping[str, bytes], mode: int) -> bytes:
    """A tar archive of ``files`` (name: content), each with ``mode``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Sdk:
    """Typed calls on one SDK client (``docker.DockerClient`` or a stand-in with its shape)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    # --- engine ------------------------------------------------------------------------

    def version(self) -> dict[str, str]:
        with mapped("engine version"):
            answer = self.client.version()
        return {str(key): str(value) for key, value in answer.items()}

    def disk_usage(self) -> DiskUsage:
        """Layer and builder-cache sizes. On the containerd store the engine answers NotFound
        when another build removes a snapshot while it sums them (or a 500, "rw layer snapshot
        not found for container", when another project removes a container): asked again, a
        few times."""
        usage = self._df()
        cache = tuple(
            (int(entry.get("Size") or 0), bool(entry.get("InUse")))
            for entry in usage.get("BuildCache") or []
        )
        return DiskUsage(int(usage.get("LayersSize") or 0), cache)

    def _df(self) -> Mapping[str, Any]:
        for attempt in range(1, DF_ATTEMPTS):
            try:
                with mapped("engine disk usage"):
                    return dict(self.client.df())
            except EngineError as exc:  # a 404, or a 500 naming what went missing under it
                if not isinstance(exc, NotFound) and "not found" not in str(exc).lower():
                    raise
            time.sleep(min(0.25 * attempt, 1.0))  # a neighbour's builds churn on for seconds
        with mapped("engine disk usage"):
            return dict(self.client.df())

    def prune_builds(self, keep_storage: int | None) -> tuple[int, int]:
        """Prune the builder cache: (bytes reclaimed, records deleted)."""
        with mapped("builder cache prune"):
            answer = self.client.api.prune_builds(all=True, keep_storage=keep_storage)
        return int(answer.get("SpaceReclaimed") or 0), len(answer.get("CachesDeleted") or [])

    # --- images ------------------------------------------------------------------------

    @staticmethod
    def _image(image: Any) -> ImageInfo:
        attrs = image.attrs or {}
        labels = dict(image.labels or {})
        return ImageInfo(
            str(image.id), tuple(image.tags), labels, str(attrs.get("Created", "")),
            int(attrs.get("Size") or 0),
        )  # fmt: skip

    def image(self, ref: str) -> ImageInfo:
        """The local image behind ``ref``; ``NotFound`` when there is none."""
        with mapped(f"image {ref}"):
            return self._image(self.client.images.get(ref))

    def images(self, name: str = "", labels: Mapping[str, str] | None = None) -> list[ImageInfo]:
        """Local images of the repository ``name``, or carrying every label of ``labels``."""
        with mapped(f"image list {name}".strip()):
            if labels:
                found = self.client.images.list(filters=_filters(labels))
            else:
                found = self.client.images.list(name=name)
            return [self._image(image) for image in found]

    def remove_image(self, ref: str, force: bool = False) -> bool:
        """Untag ``ref`` (deleting the image when it was its last tag): whether it was deleted.
        ``NotFound`` when it is gone, ``Conflict`` when a container needs it (without force)."""
        with mapped(f"removing {ref}"):
            answer = self.client.api.remove_image(ref, force=force)
        return any("Deleted" in entry for entry in answer or [])

    def tag(self, source: str, target: str) -> None:
        repository, tag = split_ref(target)
        with mapped(f"tagging {target}"):
            self.client.api.tag(source, repository, tag or "latest")

    def registry_lookup(self, ref: str) -> Lookup:
        """What the registry says of ``ref``, asked through the engine."""
        try:
            with mapped(f"registry lookup {ref}"):
                self.client.images.get_registry_data(ref)
        except NotFound:
            return Lookup.ABSENT
        except EngineError as exc:
            return failed_lookup(exc.status, str(exc))
        return Lookup.HELD

    # --- containers --------------------------------------------------------------------

    @staticmethod
    def _container(container: Any) -> ContainerInfo:
        attrs = container.attrs or {}
        state = attrs.get("State") or {}
        health, probes = _health(state)
        return ContainerInfo(
            str(container.id) if getattr(container, "id", None) else str(attrs.get("Id", "")),
            str(container.name),
            dict(container.labels or {}),
            str(state.get("Status") or getattr(container, "status", "") or ""),
            str(attrs.get("Image", "")),
            str((attrs.get("Config") or {}).get("Image") or ""),
            health,
            probes,
            int(state.get("ExitCode") or 0),
            str(((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or ""),
            {
                str(name): _endpoint(endpoint or {})
                for name, endpoint in (
                    (attrs.get("NetworkSettings") or {}).get("Networks") or {}
                ).items()
            },
            (attrs.get("Config") or {}).get("StopTimeout"),
        )

    def containers(
        self, labels: Mapping[str, str] | None = None, running: bool = False
    ) -> list[ContainerInfo]:
        """Containers (stopped ones too unless ``running``) carrying every label of ``labels``;
        one removed between the engine's list and its inspect (another project's, going) is
        left out, as a list a moment later would."""
        extra = {"status": "running"} if running else {}
        with mapped("container list"):
            found = self.client.containers.list(
                all=not running, filters=_filters(labels or {}, **extra), ignore_removed=True
            )
            return [self._container(container) for container in found]

    def remove_container(self, container_id: str) -> None:
        """Remove a container, running or not; ``NotFound`` when it is gone."""
        with mapped(f"removing container {container_id[:12]}"):
            self.client.containers.get(container_id).remove(force=True)

    def container(self, container_id: str) -> ContainerInfo:
        with mapped(f"container {container_id[:12]}"):
            return self._container(self.client.containers.get(container_id))

    def start(self, container_id: str) -> None:
        with mapped(f"starting container {container_id[:12]}"):
            self.client.api.start(container_id)

    def stop(self, container_id: str, seconds: int | None) -> None:
        """Stop a container: its stop signal, then SIGKILL after ``seconds`` (None: its own
        stop timeout, else the engine's 10 s)."""
        with mapped(f"stopping container {container_id[:12]}"):
            self.client.api.stop(container_id, timeout=10 if seconds is None else seconds)

    def join(self, network: str, container_id: str, endpoint: Endpoint) -> None:
        """Connect a container to a network under the endpoint's aliases (and its own name and
        id), with its links."""
        links = [tuple(link.split(":", 1)) for link in endpoint.links if ":" in link]
        with mapped(f"connecting {container_id[:12]} to {network}"):
            self.client.api.connect_container_to_network(
                container_id, network, aliases=list(endpoint.aliases), links=links or None
            )

    def leave(self, network: str, container_id: str) -> None:
        """Disconnect a container from a network: its names there leave the network's DNS."""
        with mapped(f"disconnecting {container_id[:12]} from {network}"):
            self.client.api.disconnect_container_from_network(container_id, network)

    def logs(self, container_id: str, tail: int) -> str:
        with mapped(f"logs of {container_id[:12]}"):
            data = self.client.containers.get(container_id).logs(tail=tail)
        return bytes(data).decode(errors="replace")

    # --- deploy state ------------------------------------------------------------------

    def create(self, kind: Kind, name: str, labels: Mapping[str, str]) -> None:
        """A config, network (internal, by name exclusively: ``Conflict``) or volume."""
        with mapped(f"creating {kind} {name}"):
            if kind is Kind.CONFIG:
                self.client.configs.create(name=name, data=b"{}", labels=dict(labels))
            elif kind is Kind.NETWORK:
                self.client.networks.create(
                    name, check_duplicate=True, internal=True, labels=dict(labels)
                )
            else:
                self.client.volumes.create(name=name, labels=dict(labels))

    def _collection(self, kind: Kind) -> Any:
        return getattr(self.client, f"{kind}s")  # configs, containers, networks, volumes

    def records(self, kind: Kind, labels: Mapping[str, str]) -> list[Record]:
        with mapped(f"{kind} list"):
            more = {"all": True, "ignore_removed": True} if kind is Kind.CONTAINER else {}
            found = self._collection(kind).list(filters=_filters(labels), **more)
            out = []
            for item in found:
                attrs = item.attrs or {}
                held = (
                    (attrs.get("Spec") or attrs.get("Config") or {}).get("Labels")
                    or attrs.get("Labels")
                    or {}
                )
                made = engine_time(str(attrs.get("Created") or attrs.get("CreatedAt") or ""))
                out.append(Record(kind, str(item.name), dict(held), made))
            return out

    def now(self) -> datetime:
        """The engine's clock (every runner compares lock times on the same clock)."""
        with mapped("engine info"):
            found = engine_time(str(self.client.info().get("SystemTime") or ""))
        return found or datetime.now(UTC)

    def remove(self, kind: Kind, name: str) -> None:
        """Remove a config, container (running or not), network or volume; ``NotFound`` when
        it is gone."""
        more = {"force": True} if kind is Kind.CONTAINER else {}
        with mapped(f"removing {kind} {name}"):
            self._collection(kind).get(name).remove(**more)

    def architecture(self) -> str:
        """The engine's machine (``x86_64``, ``aarch64``…)."""
        with mapped("engine info"):
            return str(self.client.info().get("Architecture") or "")

    def import_file(self, ref: str, name: str, data: bytes, changes: Sequence[str]) -> None:
        """Make the image ``ref`` whose only file is the executable ``/name`` holding ``data``,
        its configuration set by the Dockerfile lines ``changes`` (``CMD``, ``LABEL``…)."""
        repository, tag = split_ref(ref)
        with mapped(f"importing image {ref}"):
            self.client.api.import_image_from_data(
                _tar({name: data}, mode=0o755), repository=repository, tag=tag,
                changes=list(changes),
            )  # fmt: skip

    def run_idle(
        self, name: str, image: str, labels: Mapping[str, str], volumes: Mapping[str, str]
    ) -> None:
        """Create and start the container ``name`` of ``image`` (its own command), with no
        network, restarted with the engine unless stopped, killed at once when stopped, each
        volume of ``volumes`` mounted at its path. ``Conflict`` when the name is taken."""
        with mapped(f"creating container {name}"):
            container = self.client.containers.create(
                image, name=name, labels=dict(labels), network_mode="none",
                restart_policy={"Name": "unless-stopped"}, stop_signal="SIGKILL",
                volumes={volume: {"bind": path, "mode": "rw"} for volume, path in volumes.items()},
            )  # fmt: skip
        try:
            with mapped(f"starting container {name}"):
                container.start()
        except EngineError:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            raise

    def put_file(self, container: str, folder: str, name: str, data: bytes) -> None:
        """Write the file ``folder/name`` holding ``data`` into a container (or its volume)."""
        with mapped(f"writing {folder.rstrip('/')}/{name} in container {container}"):
            self.client.api.put_archive(container, folder, _tar({name: data}, mode=0o644))

    def read_files(self, container: str, path: str) -> dict[str, bytes]:
        """The regular files at ``path`` in a container (a file, or a folder's files), by name
        (``NotFound`` when the container or the path is not there)."""
        with mapped(f"reading {path} in container {container}"):
            stream, _ = self.client.api.get_archive(container, path)
            data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            return {
                member.name.rsplit("/", 1)[-1]: (archive.extractfile(member) or io.BytesIO()).read()
                for member in archive.getmembers()
                if member.isfile()
            }

    # --- swarm -------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """The swarm's nodes; ``EngineError`` when this engine is not a manager."""
        with mapped("node list"):
            found = self.client.nodes.list()
        out = []
        for node in found:
            attrs = node.attrs or {}
            spec, status = attrs.get("Spec") or {}, attrs.get("Status") or {}
            out.append(
                NodeInfo(
                    str(attrs.get("ID", "")),
                    str((attrs.get("Description") or {}).get("Hostname", "")),
                    str(status.get("State", "unknown")),
                    str(spec.get("Availability", "active")),
                    spec.get("Role") == "manager",
                )
            )
        return out

    def services(self, labels: Mapping[str, str]) -> list[ServiceInfo]:
        with mapped("service list"):
            found = self.client.services.list(filters=_filters(labels))
        out = []
        for service in found:
            attrs = service.attrs or {}
            spec = attrs.get("Spec") or {}
            template = spec.get("TaskTemplate") or {}
            placement = template.get("Placement") or {}
            replicated = (spec.get("Mode") or {}).get("Replicated")
            status = attrs.get("UpdateStatus") or {}
            out.append(
                ServiceInfo(
                    str(service.id),
                    str(service.name),
                    str((template.get("ContainerSpec") or {}).get("Image") or ""),
                    int(replicated.get("Replicas", 1)) if replicated is not None else None,
                    str(status.get("State", "")),
                    str(status.get("Message", "")),
                    str(status.get("StartedAt", "")),
                    int(placement.get("MaxReplicas") or 0),
                    tuple(placement.get("Constraints") or ()),
                    (template.get("RestartPolicy") or {}).get("Condition") == "none",
                )
            )
        return out

    def tasks(self, service_id: str, desired: Sequence[str] = ()) -> list[TaskInfo]:
        """A service's tasks, newest first (``desired``: only with these desired states)."""
        query: dict[str, Any] = {"service": service_id}
        if desired:
            query["desired-state"] = list(desired)
        with mapped("task list"):
            found = self.client.api.tasks(filters=query)
        out = []
        for task in sorted(found, key=lambda t: str(t.get("CreatedAt", "")), reverse=True):
            status = task.get("Status") or {}
            container = (status.get("ContainerStatus") or {}).get("ContainerID") or ""
            out.append(
                TaskInfo(
                    str(status.get("State", "")),
                    str(task.get("DesiredState", "")),
                    str(task.get("NodeID", "")),
                    str(container),
                    str(status.get("Err", "")),
                    int(task.get("Slot") or 0),
                    str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image") or ""),
                )
            )
        return out


_SSH_TRANSPORT = "docker/transport/sshconn.py"


def dropped_ssh(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the SDK's ssh transport failing to close a connection whose ssh
    process already ended (an engine that went away): nothing to report at exit."""
    if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any(frame.filename.replace("\\", "/").endswith(_SSH_TRANSPORT) for frame in frames)


def quiet_dropped_ssh() -> None:
    """Drop ``dropped_ssh`` errors from what the interpreter reports when it closes the SDK's
    pooled connections at exit (the task already said the engine went away); once."""
    unraisable, excepthook = sys.unraisablehook, sys.excepthook
    if getattr(unraisable, "__name__", "") == "unraisable_but_dropped_ssh":
        return

    def unraisable_but_dropped_ssh(what: Any) -> None:
        if not dropped_ssh(getattr(what, "exc_value", None)):
            unraisable(what)

    def excepthook_but_dropped_ssh(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if not dropped_ssh(exc):
            excepthook(kind, exc, tb)

    sys.unraisablehook = unraisable_but_dropped_ssh
    sys.excepthook = excepthook_but_dropped_ssh


def connect(base_url: str) -> Sdk:
    """An SDK client for ``base_url`` ('' : DOCKER_HOST, else the default socket); ssh:// through
    the system's ssh client, as the CLI reaches it. ``Unreachable`` when it does not answer."""
    with mapped(f"cannot reach the Docker engine at {base_url or 'the default socket'}"):
        docker = importlib.import_module("docker")
        if base_url:
            client = docker.DockerClient(base_url=base_url, use_ssh_client=True)
        else:
            client = docker.from_env(use_ssh_client=True)
        client.ping()
    quiet_dropped_ssh()
    return Sdk(client)
