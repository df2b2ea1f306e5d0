"""The registry client against an in-process registry on loopback (the HTTP API v2 calls it
makes: manifests, blobs, tags, deletes by digest). No engine, no docker call."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from compose_tasks.docker import registry
from compose_tasks.docker.refs import BUILDCACHE_TAG, ownership

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class Store:
    """Repositories of tags -> manifest digests, manifests and blobs by digest."""

    def __init__(self) -> None:
        self.tags: dict[str, dict[str, str]] = {}
        self.manifests: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, dict[str, Any]] = {}
        self.deletes = True
        self.puts = True  # False: PUT of a manifest is refused
        self.token = ""  # set: every /v2/ request needs this bearer token (token auth)
        self.login: tuple[str, str] = ("", "")  # what the token endpoint takes as Basic credentials
        self.scopes: list[str] = []  # the scopes tokens were asked for

    def image(self, repo: str, tag: str, labels: dict[str, str], inline: bool = False) -> str:
        config: dict[str, Any] = {"config": {"Labels": labels}, "created": f"{repo}:{tag}"}
        if inline:
            config[registry.INLINE_CACHE_KEY] = "e30="
        self.blobs[_digest(config)] = config
        manifest = {"mediaType": DOCKER_MANIFEST, "config": {"digest": _digest(config)}}
        return self.tag(repo, tag, manifest)

    def tag(self, repo: str, tag: str, manifest: dict[str, Any]) -> str:
        digest = _digest(manifest)
        self.manifests[digest] = manifest
        self.tags.setdefault(repo, {})[tag] = digest
        return digest


class Handler(BaseHTTPRequestHandler):
    store: Store

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _route(self) -> tuple[str, str, str]:
        _, _, rest = self.path.partition("/v2/")
        for kind in ("/manifests/", "/blobs/", "/tags/"):
            if kind in rest:
                repo, _, ref = rest.partition(kind)
                return repo, kind.strip("/"), ref
        return rest, "", ""

    def _authorized(self) -> bool:
        """Token auth: ``/token`` hands out the token for the right Basic credentials."""
        store = self.store
        if not store.token:
            return True
        if self.path.startswith("/token"):
            basic = base64.b64encode(":".join(store.login).encode()).decode()
            if self.headers.get("Authorization") == f"Basic {basic}":
                store.scopes.append(urllib.parse.unquote(self.path.split("scope=", 1)[1]))
                self._send(200, {"token": store.token})
            else:
                self._send(401, {})
            return False
        if self.headers.get("Authorization") == f"Bearer {store.token}":
            return True
        host = self.headers.get("Host")
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="http://{host}/token",service="fake"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def _send(self, code: int, body: dict[str, Any] | None = None, digest: str = "") -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        if body and body.get("mediaType"):
            self.send_header("Content-Type", str(body["mediaType"]))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        if not self._authorized():
            return
        repo, kind, ref = self._route()
        store = self.store
        if kind == "tags":
            found = store.tags.get(repo)
            self._send(200, {"tags": list(found)}) if found else self._send(404, {})
            return
        if kind == "blobs" and ref in store.blobs:
            self._send(200, store.blobs[ref])
            return
        digest = store.tags.get(repo, {}).get(ref, ref)
        if kind == "manifests" and digest in store.manifests:
            self._send(200, store.manifests[digest], digest)
            return
        self._send(404, {})

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        repo, _, tag = self._route()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if not self.store.puts:
            self._send(405, {})
            return
        self._send(201, None, self.store.tag(repo, tag, body))

    def do_DELETE(self) -> None:
        repo, _, digest = self._route()
        if not self.store.deletes:
            self._send(405, {})
            return
        tags = self.store.tags.get(repo, {})
        gone = [tag for tag, found in tags.items() if found == digest]
        for tag in gone:
            del tags[tag]
        self._send(202 if gone else 404)


@pytest.fixture
def store() -> Iterator[tuple[Store, str]]:
    """A registry on a free loopback port, and its address."""
    yield from serve_registry()


def serve_registry() -> Iterator[tuple[Store, str]]:
    """A registry on a free loopback port, and its address, while iterated."""
    data = Store()
    handler = type("Bound", (Handler,), {"store": data})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield data, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_only_our_tags_go_and_never_a_manifest_another_tag_shares(
    store: tuple[Store, str],
) -> None:
    data, host = store
    repo = "team/shop-api"
    ours = ownership("shop", "api")
    mine = data.image(repo, "abc123abc123", ours)
    data.image(repo, "latest", ours, inline=True)
    data.image(repo, "theirs", {})  # someone else's image in our repository
    shared = data.image(repo, "cache-deps", ours)
    data.tag(repo, "release-1", data.manifests[shared])  # a foreign tag on the same manifest
    cache = {"mediaType": DOCKER_MANIFEST, "config": {"mediaType": registry.CACHE_CONFIG_TYPE}}
    data.tag(repo, BUILDCACHE_TAG, cache)
    refs = [f"{host}/{repo}:{tag}" for tag in ("abc123abc123", "latest", "theirs", "cache-deps")]
    refs += [f"{host}/{repo}:{BUILDCACHE_TAG}", f"{host}/{repo}:missing"]
    judged = {d.ref.rsplit(":", 1)[1]: d for d in registry.plan_deletions(refs, "shop")}
    assert judged["abc123abc123"].digest == mine
    assert judged["latest"].digest and judged[BUILDCACHE_TAG].digest
    assert judged["theirs"].kept.startswith("not ours")
    assert judged["cache-deps"].kept.startswith("not deleted: manifest shared with :release-1")
    assert judged["missing"].kept == "already gone"
    assert registry.inline_cache(f"{host}/{repo}:latest") is True
    assert registry.inline_cache(f"{host}/{repo}:abc123abc123") is False
    assert registry.delete(refs[0], mine).startswith("deleted sha256:")
    assert registry.delete(refs[0], mine) == "already gone"
    assert "abc123abc123" not in registry.tags(refs[0]) and "release-1" in registry.tags(refs[0])
    assert registry.tags(f"{host}/nobody/here:1") == []


def test_an_index_is_read_through_its_platform_image(store: tuple[Store, str]) -> None:
    """The containerd store pushes an OCI index with an attestation manifest beside the image."""
    data, host = store
    image = data.image("shop-web", "scratch", ownership("shop", "web"), inline=True)
    index = {
        "mediaType": OCI_INDEX,
        "manifests": [
            {"digest": "sha256:" + "0" * 64, "platform": {"os": "unknown"}},
            {"digest": image, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    data.tag("shop-web", "latest", index)
    assert registry.labels(f"{host}/shop-web:latest") == ownership("shop", "web")
    assert registry.inline_cache(f"{host}/shop-web:latest") is True


def test_a_registry_without_deletes_and_one_that_is_gone_are_one_line(
    store: tuple[Store, str],
) -> None:
    data, host = store
    digest = data.image("shop-api", "abc123abc123", ownership("shop", "api"))
    data.deletes = False
    with pytest.raises(OSError, match=r"does not allow deletes \(storage.delete.enabled\)"):
        registry.delete(f"{host}/shop-api:abc123abc123", digest)
    with pytest.raises(OSError, match="registry unreachable"):
        registry.delete("127.0.0.1:1/shop-api:x", digest)
    [kept] = registry.plan_deletions(["127.0.0.1:1/shop-api:x"], "shop")
    assert kept.kept.startswith("cannot prove it is ours: registry unreachable")


def test_a_tag_is_copied_with_token_auth_and_the_docker_config_s_credentials(
    store: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hosted registry's token auth: a 401 names the token endpoint; the docker config's
    credentials buy a token for the repository (pull to read, pull,push to tag)."""
    data, host = store
    data.token, data.login = "t0ken", ("ci", "s3cret")
    image = data.image("team/api", "main", ownership("shop", "api"))
    auth = base64.b64encode(b"ci:s3cret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    registry._tokens.clear()
    found = registry.manifest(f"{host}/team/api:main")
    assert found is not None and found.media_type == DOCKER_MANIFEST
    assert registry.image_labels(f"{host}/team/api:main") == ownership("shop", "api")
    registry.copy(found, f"{host}/team/api:abc123")
    assert data.tags["team/api"]["abc123"] == image  # the same manifest: no layer moved
    assert data.scopes == ["repository:team/api:pull", "repository:team/api:pull,push"]
    assert registry.manifest(f"{host}/team/api:missing") is None


def test_credentials_come_from_a_helper_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "docker-credential-fake"
    helper.write_text('#!/bin/sh\necho \'{"Username": "bot", "Secret": "from-helper"}\'\n')
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"r.example": "fake"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert registry.credentials("r.example") == ("bot", "from-helper")
    assert registry.credentials("other.example") is None


def test_a_refused_copy_and_a_missing_login_are_one_oserror(
    store: tuple[Store, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, host = store
    data.image("team/api", "main", ownership("shop", "api"))
    found = registry.manifest(f"{host}/team/api:main")
    assert found is not None
    data.puts = False
    with pytest.raises(OSError, match=r"registry answered 405 to PUT .*team/api:abc"):
        registry.copy(found, f"{host}/team/api:abc")
    data.token = "t0ken"  # noqa: S105 - a stand-in registry's token
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no credentials
    registry._tokens.clear()
    with pytest.raises(OSError, match="registry answered 401"):
        registry.manifest(f"{host}/team/api:main")
