"""The Docker engine: look up and tag images, detect the builder, connect the SDK.

A build's lookups and tags go through the docker CLI (the engine and context compose itself
uses; a few short processes at once cost less than loading the SDK). The SDK (``docker.sdk``,
loaded on first use) serves registry lookups and the other tasks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from compose_tasks.docker import commands, probe, sdk
from compose_tasks.docker.builder import (
    BUILDX_NEEDED,
    Builder,
    Found,
    Where,
    builder_from,
    buildx_key,
    buildx_mismatch,
    buildx_version,
    parse_version,
)
from compose_tasks.docker.refs import LABEL_INLINE, owned_by, short_name, split_ref
from compose_tasks.docker.runner import Result, Runner, meaningful_line
from compose_tasks.docker.sdk import Lookup, Sdk
from compose_tasks.errors import EngineError, Failed, NotFound, UserError


def connect(runner: Runner, host: str = "") -> Sdk:
    """The SDK for ``host`` (else DOCKER_HOST, else the default socket); an ``ssh://`` engine
    through the system's ssh client, as the docker CLI and compose reach it (its config, agent
    and known hosts). One that does not answer is a UserError: nothing was done yet."""
    if host.startswith("ssh://"):
        # the SDK's ssh client writes its own errors to our stderr: ask through the CLI first
        done = runner.run(commands.server_version())
        if not done.ok:
            line = meaningful_line(done.err) or "no answer"
            raise UserError(f"cannot reach the Docker engine at {host}: {line}")
    try:
        return sdk.connect(host)
    except EngineError as exc:
        raise UserError(str(exc)) from None


CLI_TAGS = 8  # up to this many tags, one docker CLI process each, all at once


def familiar(ref: str) -> str:
    """A ref as the engine lists it in RepoTags/RepoDigests: short name, ``:latest`` default."""
    name = short_name(ref)
    return name if "@" in name or split_ref(name)[1] else f"{name}:latest"


def _missing_line(line: str) -> bool:
    """Whether a ``docker image inspect`` error line only says that one ref is not there."""
    lowered = line.lower()
    return "no such image" in lowered or "invalid reference format" in lowered


class Engine:
    """The engine a task works on, made once per task and passed down: the runner every
    docker and compose command goes through, image lookups and tags, the SDK client.

    Local lookups and tags go through the docker CLI (one ``docker image inspect`` for a batch
    of refs, tags in parallel), so a build never waits for the SDK to load; registry lookups and
    the other tasks use the SDK (``docker.sdk``), connected on first use. ``host`` is the engine's
    address (a docker context's endpoint, else DOCKER_HOST; '' for the default socket)."""

    def __init__(self, runner: Runner, api: Sdk | None = None, host: str = "") -> None:
        self.runner = runner
        self.host = host or runner.environment(None).get("DOCKER_HOST", "")
        self._sdk = api
        self._memo: dict[str, Found | None] = {}
        self._remote: dict[str, Lookup] = {}  # registry answers, by ref
        self._lookups: str | None = None  # ``_lookup_socket``, once known
        self.buildx_answers: dict[str, str | None] = {}  # ``detect_builder``'s, to keep
        self._tags: dict[str, set[str]] = {}  # image id -> its tags, as looked up
        self._local: dict[str, bool | None] = {}  # familiar ref -> inline label; None: absent
        self._ids: dict[str, str] = {}  # familiar ref -> image id, of the local ones
        self._labels: dict[str, dict[str, str]] = {}  # familiar ref -> labels, of the local ones

    def gone(self, what: str, left: str) -> str:
        """The line for ``what`` (a build, a deploy) cut short by this engine going away, and
        ``left``: the state things are in."""
        where = self.host or "the default socket"
        return (
            f"{what} interrupted: the engine ({where}) went away while it ran (stopped, "
            f"restarted, or its connection dropped); {left}; run it again once the engine answers"
        )

    @property
    def sdk(self) -> Sdk:
        """The SDK's typed calls (connects on first use)."""
        if self._sdk is None:
            self._sdk = connect(self.runner, self.host)
        return self._sdk

    def unknown(self, refs: Sequence[str]) -> list[str]:
        """The refs (engine form) not looked up yet."""
        return sorted({familiar(ref) for ref in refs} - self._local.keys())

    def absorb(self, wanted: Sequence[str], done: Result) -> None:
        """Record what ``docker image inspect`` of ``wanted`` found."""
        errors = [line for line in done.err.splitlines() if line.strip()]
        if not done.ok and not (errors and all(_missing_line(line) for line in errors)):
            why = meaningful_line(done.err) or f"exit {done.code}"
            raise UserError(f"cannot look up images on the Docker engine: {why}")
        rows: list[tuple[Any, Any, Any, str | None]] = []
        for line in filter(str.strip, done.out.splitlines()):
            try:
                tags, digests, labels, *rest = (json.loads(part) for part in line.split("\t"))
            except ValueError:
                raise UserError(
                    f"docker image inspect printed an unexpected line: {line}"
                ) from None
            rows.append((tags, digests, labels, str(rest[0]) if rest else None))
        self._record(wanted, rows)

    def _record(
        self, wanted: Sequence[str], rows: Sequence[tuple[Any, Any, Any, str | None]]
    ) -> None:
        """Record the images found of ``wanted``: each one's tags, digests, labels and id."""
        found: dict[str, bool] = {}
        for tags, digests, labels, image in rows:
            inline = (labels or {}).get(LABEL_INLINE) == "1"
            names = (tags or []) + (digests or [])
            found.update({name: inline for name in names})
            self._labels.update({name: dict(labels or {}) for name in names})
            if image is not None:
                self._ids.update({name: image for name in names})
                self._tags[image] = set(tags or [])
        self._local.update({ref: found.get(ref) for ref in wanted})

    def may_orphan(self, moved: Sequence[str], project: str) -> bool:
        """Whether moving the tags ``moved`` to other images may leave an image of ``project``'s
        (the only ones its prune removes) with no tag: one whose every tag is among them (a
        rebuild of a commit, a stage image built again), or a tag never looked up. An image
        another build made (raw compose's, under the same name) is left as it is."""
        wanted = {familiar(ref) for ref in moved}
        for ref in wanted:
            if ref not in self._local:
                return True
            labels = self._labels.get(ref)
            if labels is not None and not owned_by(labels, project):
                continue
            old = self._ids.get(ref)
            if old is not None and self._tags.get(old, {ref}) <= wanted:
                return True
        return False

    def prefetch(self, refs: Sequence[str]) -> None:
        """Find out which of ``refs`` are local images: on the engine's local socket, a request
        each, at once; else one ``docker image inspect``."""
        wanted = self.unknown(refs)
        if not wanted:
            return
        path = self.runner.api_socket()
        found = probe.images(path, wanted) if path else None
        if found is None:  # no socket, or it did not answer: the CLI, which says why
            self.absorb(wanted, self.runner.run(commands.image_inspect(wanted)))
            return
        rows = [
            (
                data.get("RepoTags"),
                data.get("RepoDigests"),
                (data.get("Config") or {}).get("Labels"),
                str(data.get("Id", "")),
            )
            for data in found
            if isinstance(data, dict)
        ]
        self._record(wanted, rows)

    def labels(self, ref: str) -> dict[str, str] | None:
        """The labels of the local image ``ref`` (None when there is none), looked up in a
        batch by ``prefetch``."""
        self.prefetch([ref])
        return self._labels.get(familiar(ref))

    def local_id(self, ref: str) -> str:
        """The id of the local image ``ref`` ('' when there is none), looked up in a batch by
        ``prefetch``."""
        self.prefetch([ref])
        return self._ids.get(familiar(ref), "")

    def labelled(self, labels: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """The local images carrying every one of ``labels``: each tag and its image's labels
        (the engine's image list on its local socket, a request; else one ``docker image ls``,
        then one ``docker image inspect`` of each image once, however many tags it has)."""
        path = self.runner.api_socket()
        rows = probe.labelled(path, labels) if path else None
        if rows is not None:
            found: dict[str, dict[str, str]] = {}
            for row in rows:
                held = {str(k): str(v) for k, v in dict(row.get("Labels") or {}).items()}
                for tag in row.get("RepoTags") or []:
                    if isinstance(tag, str) and not tag.endswith(":<none>"):
                        found[tag] = held
                        self._ids[tag] = str(row.get("Id", ""))
            return found
        listed = self.runner.run(commands.images_labelled(labels))
        pairs = [line.split(None, 1) for line in listed.out.splitlines() if line.strip()]
        tagged = [(image, ref) for image, ref in pairs if not ref.endswith(":<none>")]
        refs = {ref for _, ref in tagged}
        if not listed.ok or not refs:
            return {}
        done = self.runner.run(commands.image_inspect(sorted({image for image, _ in tagged})))
        found = {}
        for line in filter(str.strip, done.out.splitlines() if done.ok else []):
            try:
                tags, _, held, *rest = (json.loads(part) for part in line.split("\t"))
            except ValueError:
                continue
            found.update({tag: dict(held or {}) for tag in tags or [] if tag in refs})
            self._ids.update({tag: str(rest[0]) for tag in tags or [] if rest})
        return found

    def same_image(self, ref: str, other: str) -> bool:
        """Whether two refs were found to name one image (by the lookups so far)."""
        found = self._ids.get(familiar(ref))
        return found is not None and found == self._ids.get(familiar(other))

    def locate(self, ref: str, remote: bool = True, local: bool = True) -> Found | None:
        """With ``local``, a local image first; then, with ``remote``, its registry (Docker
        Hub for a ref without a registry host). A registry that cannot be reached gives
        ``unverified``, not None."""
        key = f"{ref}|{remote}|{local}"
        if key not in self._memo:
            self._memo[key] = self._locate(ref, remote, local)
        return self._memo[key]

    def _locate(self, ref: str, remote: bool, local: bool) -> Found | None:
        if local:
            self.prefetch([ref])
            inline = self._local[familiar(ref)]
            if inline is not None:
                return Found(Where.LOCAL, inline)
        if not remote:
            return None
        said = self._remote.get(ref) or self._registry_lookup(ref)
        if said in (Lookup.UNREACHABLE, Lookup.SILENT):
            return Found(Where.UNVERIFIED if said is Lookup.UNREACHABLE else Where.SILENT, None)
        return Found(Where.REGISTRY, None) if said is Lookup.HELD else None

    def prefetch_remote(self, refs: Sequence[str]) -> None:
        """Ask the registries about ``refs`` all at once (``locate`` then uses the answers):
        an unreachable registry costs one timeout, not one per ref."""
        todo = sorted(set(refs) - self._remote.keys())
        if not todo:
            return
        if not self._lookup_socket():
            _ = self.sdk  # connected once, before the threads share it
        with ThreadPoolExecutor(max_workers=CLI_TAGS) as pool:
            self._remote.update(zip(todo, pool.map(self._registry_lookup, todo), strict=True))

    def _lookup_socket(self) -> str:
        """The engine's local socket, where registry lookups need no credentials ('' : the SDK
        asks, sending them)."""
        if self._lookups is None:
            environ = self.runner.environment(None)
            path = self.runner.api_socket()
            self._lookups = path if path and not probe.credentials(environ) else ""
        return self._lookups

    def _registry_lookup(self, ref: str) -> Lookup:
        """What ``ref``'s registry says of it, asked through the engine: over its local socket
        (a request), else through the SDK."""
        path = self._lookup_socket()
        if not path:
            return self.sdk.registry_lookup(ref)
        answer = probe.distribution(path, ref)
        if answer is None:  # the engine itself did not answer
            return Lookup.UNREACHABLE
        status, message = answer
        return Lookup.HELD if status == 200 else sdk.failed_lookup(status, message)

    @staticmethod
    def _socket_tag(path: str) -> Callable[[tuple[str, str]], str]:
        """Tagging a (source, target) pair on the socket at ``path``: '' or what failed."""

        def tag(pair: tuple[str, str]) -> str:
            failed = probe.tag(path, *pair)
            return f"tagging {pair[1]} failed: {failed}" if failed else ""

        return tag

    def _sdk_tag(self) -> Callable[[tuple[str, str]], str]:
        """Tagging a (source, target) pair through the SDK (it raises what failed)."""
        api = self.sdk  # connected once, before the threads share it

        def tag(pair: tuple[str, str]) -> str:
            api.tag(*pair)
            return ""

        return tag

    def tag_all(self, pairs: Sequence[tuple[str, str]], project: str = "") -> int:
        """Point each target at its source image: on the engine's local socket, a request
        each (``docker.probe``); else a handful with ``docker image tag`` at once, more through
        the SDK, whose one import costs less than a process per tag; either from a few threads
        (the engine answers them at once). With ``project``, its untagged images of ours that no
        container uses are removed at the same time (a rebuild untags the image it replaces);
        returns how many."""
        prune = [commands.prune_ours(project)] if project else []
        path = self.runner.api_socket()
        if path or len(pairs) > CLI_TAGS:
            tag = self._socket_tag(path) if path else self._sdk_tag()

            with ThreadPoolExecutor(max_workers=CLI_TAGS + 1) as pool:
                pruning = pool.submit(self.runner.run_all, prune)
                failed = [line for line in pool.map(tag, pairs) if line]
                pruned = _pruned(pruning.result())
            if failed:
                raise Failed(failed[0])
            return pruned
        argvs = [commands.image_tag(source, target) for source, target in pairs]
        results = self.runner.run_all([*argvs, *prune])
        for argv, done in zip(argvs, results, strict=False):
            if not done.ok:
                raise Failed(f"docker image tag {argv[-1]} failed: {meaningful_line(done.err)}")
        return _pruned(results[len(argvs) :])

    def image_id(self, ref: str) -> str | None:
        """The image id behind a ref, or None."""
        try:
            return self.sdk.image(ref).id
        except NotFound:
            return None


def _answer(kept: Mapping[str, Any], name: str) -> Result:
    """A kept buildx answer as the command's result (None: the command had failed)."""
    text = kept.get(name)
    return Result((), 0, str(text), "") if isinstance(text, str) else Result((), 1, "", "")


def _pruned(results: Sequence[Result]) -> int:
    """How many images ``docker image prune`` removed (0 when it failed: nothing to report)."""
    return sum(line.startswith("untagged: ") for done in results for line in done.out.splitlines())


CONTAINERD_STORE_SINCE = 24  # the first Engine major version with a containerd image store
# Engines before this crash in inline cache export when parallel builds share steps (20.10 here)
PARALLEL_INLINE_SINCE = 24
# Engines whose BuildKit serves a multi-stage build's stage images unreliably (classic store)
STAGE_IMAGES_UNRELIABLE_SINCE = 24
IMPORTED_KEPT_SINCE = 27  # ``Builder.drops_imported``: BuildKit 0.14's fix is in Engine 27


def detect_builder(
    docker: Engine, refs: Sequence[str] = (), kept: Mapping[str, Any] | None = None
) -> Builder:
    """The builder compose will use: ``docker buildx inspect``, and whether the engine stores
    images in containerd (only engines new enough can): the engine's ``/info`` over its local
    socket (``docker.probe``), else ``docker version`` and ``docker info``. Which of ``refs``
    are local images is found out at the same time: every question at once. ``kept``: buildx's
    answers of an earlier build, reused while ``buildx_key`` still matches (its two commands
    cost a quarter of a second); ``docker.buildx_answers`` holds them to keep."""
    runner = docker.runner
    wanted = docker.unknown(refs)
    key = buildx_key(runner.environment(None))
    reused = kept if kept and kept.get("key") == key else None
    asked = [] if reused else [commands.buildx_inspect(), commands.buildx_version()]
    path = runner.api_socket()  # then its images are looked up over it, after the version
    argvs = [*asked, *([commands.image_inspect(wanted)] if wanted and not path else [])]
    with ThreadPoolExecutor(max_workers=1) as pool:
        direct = pool.submit(runner.engine_info)  # the socket, beside the commands
        answers = runner.run_all(argvs)
        answered = direct.result()
    if answered is None:  # no local socket: the CLI, which also says why an engine is unreachable
        version, info = runner.run_all([commands.server_version(), commands.engine_storage()])
    else:
        version = Result((), 0, f"{answered.version}\n", "")
        info = Result((), 0, json.dumps([list(pair) for pair in answered.driver_status]), "")
    inspected = answers[len(asked) :]
    if reused:
        buildx, plugin = (_answer(reused, "inspect"), _answer(reused, "version"))
    else:
        buildx, plugin = answers[0], answers[1]
    docker.buildx_answers = {
        "key": key,
        "inspect": buildx.out if buildx.ok else None,
        "version": plugin.out if plugin.ok else None,
    }
    if not version.ok:
        why = meaningful_line(version.err or version.out) or f"exit {version.code}"
        raise UserError(f"cannot reach the Docker engine: {why}")
    old = buildx_version(plugin.out) if plugin.ok else ()
    if old and old < BUILDX_NEEDED:  # rare: only then is compose asked its version
        compose = runner.run(commands.compose_version())
        mismatch = buildx_mismatch(old, parse_version(compose.out)) if compose.ok else ""
        if mismatch:
            raise UserError(mismatch)
    if inspected:
        docker.absorb(wanted, inspected[0])
    else:
        docker.prefetch(wanted)
    found = re.match(r"\s*(\d+)\.", version.out)
    major = int(found.group(1)) if found else None
    containerd = False
    if major is None or major >= CONTAINERD_STORE_SINCE:
        try:
            status = json.loads(info.out) if info.ok else []
        except json.JSONDecodeError:
            status = []
        containerd = any("containerd" in str(value) for _, value in status or [])
    parallel_inline = major is not None and major >= PARALLEL_INLINE_SINCE
    builder = builder_from(buildx.out if buildx.ok else None, containerd, parallel_inline)
    modern = major is not None and major >= STAGE_IMAGES_UNRELIABLE_SINCE
    drops = builder.exports == ("inline",) and major is not None and major < IMPORTED_KEPT_SINCE
    return replace(builder, stage_images=containerd or not modern, drops_imported=drops)
