"""The SDK adapter: the SDK's failures become ours in one place, its objects plain records."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from types import FunctionType, SimpleNamespace
from typing import Any

import pytest
import requests
from docker.errors import DockerException, ImageNotFound

from compose_tasks.docker.sdk import (
    DF_ATTEMPTS,
    Endpoint,
    Kind,
    Lookup,
    Sdk,
    engine_time,
    mapped,
    quiet_dropped_ssh,
)
from compose_tasks.errors import Conflict, EngineError, NotFound, Unreachable
from tests.fakes import Container, FakeDocker, Service, api_error


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (ImageNotFound("No such image: x"), NotFound),
        (api_error("gone", 404), NotFound),
        (api_error("name in use", 409), Conflict),
        (api_error("boom", 500), EngineError),
        (requests.ConnectionError("[Errno 111] Connection refused"), Unreachable),
        (DockerException("Error while fetching server API version"), Unreachable),
        (ConnectionResetError(104, "Connection reset by peer"), Unreachable),
    ],
)
def test_failures_are_mapped_once_by_kind(raised: Exception, kind: type[EngineError]) -> None:
    with pytest.raises(EngineError) as caught, mapped("doing it"):
        raise raised
    assert type(caught.value) is kind
    assert str(caught.value).startswith("doing it: ")
    assert "\n" not in str(caught.value)


def test_a_connection_error_shows_the_os_reason() -> None:
    text = "HTTPConnectionPool: Max retries (Caused by NewConnectionError: [Errno 111] refused)"
    with pytest.raises(Unreachable, match=r"^list: refused$"), mapped("list"):
        raise requests.ConnectionError(text)


def test_a_bug_is_not_passed_off_as_an_engine_error() -> None:
    with pytest.raises(AttributeError), mapped("list"):
        raise AttributeError("'NoneType' object has no attribute 'images'")


def test_images_and_removal_on_the_fake_engine() -> None:
    client = FakeDocker()
    client.images.add("shop-api:1", {"owner": "us"}, "2026-01-01")
    api = Sdk(client)
    image = api.image("shop-api:1")
    assert (image.tags, image.labels, image.created, image.size) == (
        ("shop-api:1",),
        {"owner": "us"},
        "2026-01-01",
        1000,
    )
    assert image.short_id == image.id.removeprefix("sha256:")[:12]
    assert [i.tags for i in api.images(labels={"owner": "us"})] == [("shop-api:1",)]
    assert api.images(labels={"owner": "them"}) == []
    assert api.remove_image("shop-api:1") is True  # its last tag: deleted
    with pytest.raises(NotFound, match="shop-api:1"):
        api.remove_image("shop-api:1")
    with pytest.raises(NotFound):
        api.image("nothing:here")


def test_state_records_conflict_on_a_taken_name_and_remove() -> None:
    api = Sdk(FakeDocker())
    api.create(Kind.NETWORK, "lock", {"kind": "lock"})
    with pytest.raises(Conflict, match="creating network lock"):
        api.create(Kind.NETWORK, "lock", {"kind": "lock"})
    api.create(Kind.VOLUME, "entry-1", {"kind": "history"})
    assert [
        (r.kind, r.name, dict(r.labels)) for r in api.records(Kind.NETWORK, {"kind": "lock"})
    ] == [("network", "lock", {"kind": "lock"})]
    assert [r.name for r in api.records(Kind.VOLUME, {"kind": "history"})] == ["entry-1"]
    api.remove(Kind.NETWORK, "lock")
    with pytest.raises(NotFound):
        api.remove(Kind.NETWORK, "lock")


def test_containers_carry_health_probes_and_logs() -> None:
    client = FakeDocker()
    client.containers.running["shop-api-1"] = Container(
        "shop-api-1", {"project": "shop"}, "shop-api:2", "unhealthy"
    )
    api = Sdk(client)
    (found,) = api.containers({"project": "shop"})
    assert (found.name, found.status, found.image, found.health) == (
        "shop-api-1",
        "running",
        "shop-api:2",
        "unhealthy",
    )
    assert [(p.exit_code, p.output) for p in found.probes] == [(1, "404 Not Found")]
    assert api.logs(found.id, 5) == "serving\n"
    assert api.containers({"project": "blog"}) == []
    with pytest.raises(NotFound):
        api.container("gone")


def test_containers_carry_their_networks_names_links_and_stop_timeout() -> None:
    client = FakeDocker()
    made = Container("shop-web-2", {"project": "shop"}, "shop-web:2", "healthy")
    made.attrs["NetworkSettings"] = {
        "Networks": {
            "shop_default": {"Aliases": ["shop-web-2", "web"], "Links": ["shop-cache-1:kv"]},
            "shop_back": {"Aliases": None, "Links": None},
        }
    }
    made.attrs["Config"]["StopTimeout"] = 7
    client.containers.running[made.name] = made
    (found,) = Sdk(client).containers({"project": "shop"})
    assert found.networks == {
        "shop_default": Endpoint(("shop-web-2", "web"), ("shop-cache-1:kv",)),
        "shop_back": Endpoint(),
    }
    assert found.stop_timeout == 7


@pytest.mark.parametrize(
    ("error", "held"),
    [
        (None, Lookup.HELD),
        (api_error("not found", 404), Lookup.ABSENT),
        (api_error("x", 500, "manifest unknown"), Lookup.ABSENT),
        (api_error("x", 500, "pull access denied"), Lookup.ABSENT),
        (api_error("x", 401), Lookup.ABSENT),
        (
            api_error("x", 500, "dial tcp 10.0.0.9:5000: connect: no route to host"),
            Lookup.UNREACHABLE,
        ),
        (
            api_error("x", 500, 'Get "http://127.0.0.1:5999/v2/": context deadline exceeded'),
            Lookup.SILENT,
        ),
        (requests.ConnectionError("refused"), Lookup.UNREACHABLE),
        # the engine's words for a registry that accepted the connection and never answered
        (
            api_error(
                "x",
                500,
                'Get "http://127.0.0.1:5999/v2/": net/http: request canceled (Client.Timeout '
                "exceeded while awaiting headers)",
            ),
            Lookup.SILENT,
        ),
    ],
)
def test_registry_lookup_tells_absent_from_unreachable_and_silent(
    error: Exception | None, held: Lookup
) -> None:
    client = FakeDocker()
    client.images.registry = {"127.0.0.1:5000/shop:1"}
    client.images.registry_error = error
    assert Sdk(client).registry_lookup("127.0.0.1:5000/shop:1") is held


def test_swarm_services_tasks_and_nodes_as_records() -> None:
    client = FakeDocker()
    placement = {"MaxReplicas": 1, "Constraints": ["node.role==worker"]}
    api = Service("shop_api", "reg/shop-api:2@sha256:abc", 3, placement=placement,
                  update="rollback_completed")  # fmt: skip
    api.task("failed", 1, error="x", desired="shutdown")
    api.task("running", 2, slot=1)
    client.services.all = [api]
    client.nodes.count, client.nodes.down, client.nodes.workers = 2, {2}, {2}
    sdk = Sdk(client)
    (service,) = sdk.services({"com.docker.stack.namespace": "shop"})
    assert (service.replicas, service.image, service.update_state) == (
        3,
        "reg/shop-api:2@sha256:abc",
        "rollback_completed",
    )
    assert (service.max_per_node, service.constraints) == (1, ("node.role==worker",))
    newest, oldest = sdk.tasks("shop_api", ["running", "shutdown"])
    assert (newest.state, newest.node_id, newest.container_id, newest.slot) == (
        "running",
        "n2",
        "shop_api.0001",
        1,
    )
    assert (oldest.state, oldest.error) == ("failed", "x")
    assert client.api.asked == [{"service": "shop_api", "desired-state": ["running", "shutdown"]}]
    assert [(n.hostname, n.state, n.manager) for n in sdk.nodes()] == [
        ("sw1", "ready", True),
        ("sw2", "down", False),
    ]


class RacingDf(FakeDocker):
    """``system df`` on the containerd store while another build removes a snapshot."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error or api_error("snapshot x-view does not exist: not found", 404)

    def df(self) -> dict[str, Any]:
        if self.failures:
            self.failures -= 1
            raise self.error
        return super().df()


def test_disk_usage_asks_again_when_a_concurrent_build_removed_a_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited: list[float] = []
    monkeypatch.setattr("compose_tasks.docker.sdk.time.sleep", waited.append)
    assert Sdk(RacingDf(failures=2)).disk_usage().cache == ((4096, False),)
    with pytest.raises(NotFound, match="engine disk usage"):
        Sdk(RacingDf(failures=DF_ATTEMPTS)).disk_usage()
    assert sum(waited[-(DF_ATTEMPTS - 1) :]) >= 6  # seconds: a neighbour's churn outlasts less
    said = "failed to retrieve container list: rw layer snapshot not found for container 3"
    gone = api_error(said, 500, said)  # another project's container removed while it sums
    assert Sdk(RacingDf(failures=2, error=gone)).disk_usage().cache == ((4096, False),)
    broken = api_error("i/o error", 500, "failed to retrieve container list: i/o error")
    with pytest.raises(EngineError, match="i/o error"):
        Sdk(RacingDf(failures=1, error=broken)).disk_usage()


def test_engine_times_are_read_to_the_microsecond_and_zero_is_none() -> None:
    found = engine_time("2026-12-05T13:12:07.123456789Z")
    assert found == datetime(2026, 12, 5, 13, 12, 7, 123456, tzinfo=UTC)
    assert engine_time("2026-12-05T13:12:07") == datetime(2026, 12, 5, 13, 12, 7, tzinfo=UTC)
    assert engine_time("0001-01-01T00:00:00Z") is None
    assert engine_time("") is None
    assert engine_time("yesterday") is None


def _close() -> None:
    raise BrokenPipeError(32, "Broken pipe")


def _raised_in(filename: str) -> BaseException:
    """A BrokenPipeError as closing a connection in ``filename`` raises it."""
    close = FunctionType(_close.__code__.replace(co_filename=filename), globals())
    try:
        close()
    except BrokenPipeError as exc:
        return exc
    raise AssertionError("not raised")


def test_a_dropped_ssh_connection_closed_at_exit_is_not_reported_anything_else_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda what: reported.append(what.exc_value))
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: reported.append(exc))
    quiet_dropped_ssh()
    quiet_dropped_ssh()  # once: not wrapped twice
    ssh = _raised_in("/venv/site-packages/docker/transport/sshconn.py")
    other = _raised_in("/venv/site-packages/compose_tasks/report.py")
    sys.unraisablehook(SimpleNamespace(exc_value=ssh))  # pyright: ignore[reportArgumentType]
    sys.excepthook(type(ssh), ssh, ssh.__traceback__)
    assert reported == []
    sys.unraisablehook(SimpleNamespace(exc_value=other))  # pyright: ignore[reportArgumentType]
    sys.excepthook(type(other), other, other.__traceback__)
    assert reported == [other, other]
