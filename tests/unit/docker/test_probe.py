"""The engine's /info and image tags straight from a unix socket (a stand-in server here, no
docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_tasks.docker import probe
from tests.unit.docker.conftest import StandIn


def test_info_is_one_request_on_the_cli_s_socket(engine_socket: Path) -> None:
    found = probe.info({"DOCKER_HOST": f"unix://{engine_socket}"})
    assert found == probe.Info("28.5.2", (("driver-type", "io.containerd.snapshotter.v1"),))


def test_no_answer_or_another_answer_leaves_it_to_the_cli(tmp_path: Path) -> None:
    assert probe.info({"DOCKER_HOST": f"unix://{tmp_path / 'none.sock'}"}) is None
    assert probe.info({"DOCKER_HOST": "tcp://127.0.0.1:2375"}) is None  # not ours to reach


def test_only_the_socket_the_cli_would_use(tmp_path: Path) -> None:
    config = {"DOCKER_CONFIG": str(tmp_path)}
    assert probe.socket_path({"DOCKER_HOST": "unix:///run/x.sock"}) == "/run/x.sock"
    assert probe.socket_path({"DOCKER_HOST": "ssh://me@host"}) == ""
    assert probe.socket_path(config) == probe.DEFAULT_SOCKET
    assert probe.socket_path({**config, "DOCKER_CONTEXT": "remote"}) == ""
    (tmp_path / "config.json").write_text('{"currentContext": "remote"}')
    assert probe.socket_path(config) == ""  # a context chosen with docker context use


def test_a_tag_is_one_request_and_a_refusal_is_the_engine_s_words(engine_socket: Path) -> None:
    StandIn.tagged.clear()
    assert probe.tag(str(engine_socket), "app:1", "127.0.0.1:5000/shop/app:e0c1") == ""
    assert probe.tag(str(engine_socket), "sha256:abc", "app") == ""  # no tag: latest
    assert StandIn.tagged == ["app:1 -> 127.0.0.1:5000/shop/app:e0c1", "sha256:abc -> app:latest"]
    assert probe.tag(str(engine_socket), "gone:1", "app:2") == "No such image: gone:1"
    gone = str(engine_socket.with_name("none.sock"))
    assert probe.tag(gone, "app:1", "app:2") == f"the engine at {gone} did not answer"


def test_images_are_looked_up_at_once_and_a_failure_leaves_it_to_the_cli(
    engine_socket: Path,
) -> None:
    found = probe.images(str(engine_socket), ["app:1", "gone:1"])
    assert found == [{"Id": "sha256:abc", "RepoTags": ["app:1"], "Config": {}}, None]
    assert probe.images(str(engine_socket), ["app:1", "broken"]) is None  # the CLI says why
    assert probe.images(str(engine_socket.with_name("none.sock")), ["app:1"]) is None


def test_a_registry_lookup_is_one_request_and_a_refusal_the_engine_s_words(
    engine_socket: Path,
) -> None:
    path = str(engine_socket)
    assert probe.distribution(path, "127.0.0.1:5000/shop/app:cache") == (200, "")
    assert probe.distribution(path, "127.0.0.1:5000/shop/app:gone") == (404, "manifest unknown")
    assert probe.distribution(str(engine_socket.with_name("none.sock")), "app:1") is None


def test_credentials_in_the_docker_config_leave_lookups_to_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config = {"DOCKER_CONFIG": str(tmp_path / "docker")}
    assert not probe.credentials(config)  # no config at all
    (tmp_path / "docker").mkdir()
    for text, held in [
        ('{"auths": {}, "currentContext": "default"}', False),
        ('{"auths": {"registry.example": {"auth": "eDp5"}}}', True),
        ('{"credsStore": "desktop"}', True),
        ('{"credHelpers": {"gcr.io": "gcloud"}}', True),
        ("not json", True),
    ]:
        (tmp_path / "docker" / "config.json").write_text(text)
        assert probe.credentials(config) is held, text
    (tmp_path / "docker" / "config.json").write_text("{}")
    (tmp_path / ".dockercfg").write_text("{}")
    assert probe.credentials(config)  # the legacy file
