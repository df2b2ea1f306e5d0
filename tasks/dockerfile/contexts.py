"""Where a build context (or a named context) lives, as BuildKit reads it: a local folder, a git
repository, a URL of a tarball or file, an image, another service's build, an OCI layout.

A local folder is digested file by file (``fingerprint``); a git repository by the commit its
ref names now (one ``git ls-remote``, none when the ref is a commit id); an image by its local
id. A URL's content cannot be known before BuildKit fetches it: a service built from one is
built every time, and the plan says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from compose_tasks.docker import commands
from compose_tasks.docker.runner import Runner

_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
# git's own timeouts: a remote that stalls ends the lookup, never prompts for a password
_GIT_QUIET = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=10",
}
_GIT_LIMITS = ("-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=10")


class Kind(StrEnum):
    """What a context names."""

    FOLDER = "folder"
    GIT = "git repository"
    URL = "URL"
    IMAGE = "image"  # docker-image://
    SERVICE = "service"  # service:<name>
    TARGET = "target"  # target:<name> (bake)
    OCI = "OCI layout"  # oci-layout://


def kind(text: str) -> Kind:
    """What a context string names, by BuildKit's and compose's rules."""
    for prefix, found in (
        ("docker-image://", Kind.IMAGE),
        ("service:", Kind.SERVICE),
        ("target:", Kind.TARGET),
        ("oci-layout://", Kind.OCI),
    ):
        if text.startswith(prefix):
            return found
    if text.startswith(("git://", "git@", "github.com/", "ssh://")):
        return Kind.GIT
    if text.startswith(("http://", "https://")):
        return Kind.GIT if text.split("#", 1)[0].endswith(".git") else Kind.URL
    return Kind.FOLDER


def remote(text: str) -> bool:
    """Whether a build context is fetched by BuildKit itself (nothing local to read)."""
    return kind(text) in (Kind.GIT, Kind.URL)


@dataclass(frozen=True)
class GitContext:
    """A git context: the repository, the ref after ``#`` and the folder after ``:``."""

    url: str
    ref: str
    folder: str


def git_parts(text: str) -> GitContext:
    """``url#ref:folder`` in its parts (a missing ref is the remote's HEAD)."""
    url, _, fragment = text.partition("#")
    ref, _, folder = fragment.partition(":")
    if url.startswith("github.com/"):
        url = f"https://{url}"
    return GitContext(url, ref, folder)


def git_commit(runner: Runner, text: str) -> tuple[str, str]:
    """The commit a git context's ref names now, and '' — or '' and why it is not known."""
    found = git_parts(text)
    if _COMMIT.match(found.ref):
        return found.ref, ""
    ref = found.ref or "HEAD"
    argv = commands.git(*_GIT_LIMITS, "ls-remote", "--", found.url, ref, f"{ref}^{{}}")
    done = runner.run(argv, _GIT_QUIET)
    lines = [line.split("\t") for line in done.out.splitlines() if "\t" in line]
    exact = [sha for sha, name in lines if name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}")]
    peeled = [sha for sha, name in lines if name == f"refs/tags/{ref}^{{}}"]
    commit = (peeled or exact or [sha for sha, _ in lines] or [""])[0]
    if done.ok and commit:
        return commit, ""
    why = done.err.strip().splitlines()[-1] if done.err.strip() else f"no ref {ref}"
    return "", f"git ls-remote {found.url} {ref}: {why}"
