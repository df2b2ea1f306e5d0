"""Dockerfile cache lint: the mistakes that silently turn every build into a full build.

Rules (each finding names file:line and says what to do instead):

- ``commit-arg``: the per-commit ARG is declared before a dependency-install step of the same
  stage; every RUN after an ARG sees it, so a new commit re-runs the install.
- ``copy-all``: ``COPY .``/``ADD .`` from the build context before a dependency-install step;
  any code change re-runs the install.
- ``dockerignore``: no ``.dockerignore`` (everything enters the context), or one that lets
  ``.git`` in (the context, and every ``COPY .``, changes on every commit).
- ``secret-arg``: a secret-looking build arg; build args are kept in the image history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.dockerfile import Dockerfile, Instruction, parse
from tasks.mask import is_secret

# Commands that install dependencies, as (label, pattern over the lower-cased command).
_SEP = r"[^;&|\n]*"
DEPENDENCY_STEPS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (label, re.compile(pattern))
    for label, pattern in (
        ("pip install", rf"\b(pip3?|uv\s+pip)\b{_SEP}\binstall\b"),
        ("python packages", rf"\b(poetry|pipenv|pdm)\b{_SEP}\b(install|sync)\b|\buv\s+sync\b"),
        ("conda install", rf"\b(conda|mamba|micromamba)\b{_SEP}\b(install|create|update)\b"),
        ("npm install", rf"\b(npm|pnpm|bun)\b{_SEP}\b(ci|install|i|add)\b"),
        ("yarn install", rf"\byarn\b(\s*$|\s*[;&|]|{_SEP}\b(install|add)\b)"),
        ("apt-get install", rf"\bapt(-get)?\b{_SEP}\binstall\b"),
        ("apk add", rf"\bapk\b{_SEP}\badd\b"),
        ("rpm packages", rf"\b(yum|dnf|microdnf|zypper)\b{_SEP}\binstall\b"),
        ("ruby/php packages", rf"\b(bundle|gem|composer)\b{_SEP}\binstall\b"),
        ("go mod download", r"\bgo\s+mod\s+download\b"),
        ("cargo fetch", r"\bcargo\s+fetch\b"),
        ("maven/gradle deps", r"dependency:(go-offline|resolve)|\bgradlew?\b[^;&|\n]*dependencies"),
        ("dotnet restore", r"\bdotnet\s+restore\b"),
        ("dependency script", r"install[-_]?(deps|dependencies|requirements)\b"),
        ("requirements file", r"\brequirements[\w.-]*\.txt\b"),
    )
)
_CONTEXT_ROOT = {".", "./", "*", "./*", "./."}


@dataclass(frozen=True)
class Finding:
    """One lint finding."""

    rule: str
    path: str
    line: int | None
    message: str
    remedy: str
    subject: str = ""  # what the finding is about (an ARG name, for secret-arg)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def __str__(self) -> str:
        return f"{self.where}: {self.message}; {self.remedy}"


def dependency_step(item: Instruction) -> str:
    """The kind of dependency install a RUN performs, or ''."""
    if item.keyword != "RUN":
        return ""
    text = item.command().lower()
    return next((label for label, pattern in DEPENDENCY_STEPS if pattern.search(text)), "")


def _copies_context(item: Instruction) -> bool:
    if item.keyword not in {"COPY", "ADD"} or item.flag("from") is not None or item.heredocs:
        return False
    sources = item.words()[:-1]
    return any(source in _CONTEXT_ROOT for source in sources)


def lint_dockerfile(dockerfile: Dockerfile, commit_arg: str) -> list[Finding]:
    """The Dockerfile's own findings (``commit-arg``, ``copy-all``, ``secret-arg``)."""
    findings: list[Finding] = []
    path = dockerfile.path
    for stage in sorted({item.stage for item in dockerfile.instructions}):
        items = dockerfile.in_stage(stage)
        installs = [(item, label) for item in items if (label := dependency_step(item))]
        for item in items:
            later = [(dep, label) for dep, label in installs if dep.line > item.line]
            if not later or stage < 0:
                continue
            dep, label = later[0]
            if item.keyword == "ARG" and commit_arg in item.arg_names():
                findings.append(
                    Finding(
                        "commit-arg",
                        path,
                        item.line,
                        f"ARG {commit_arg} comes before the dependency install at line "
                        f"{dep.line} ({label}): every new commit re-runs it",
                        f"declare ARG {commit_arg} after the last dependency step",
                    )
                )
            if _copies_context(item):
                findings.append(
                    Finding(
                        "copy-all",
                        path,
                        item.line,
                        f"{item.keyword} {item.args} copies the whole context before the "
                        f"dependency install at line {dep.line} ({label}): any code change "
                        "re-runs it",
                        "copy only the dependency manifests first, the rest after the install",
                    )
                )
    for item in dockerfile.instructions:
        if item.keyword != "ARG":
            continue
        for name in item.arg_names():
            if is_secret(name):
                findings.append(
                    Finding(
                        "secret-arg",
                        path,
                        item.line,
                        f"ARG {name} looks secret: build args are stored in the image history",
                        "pass it as a build secret (RUN --mount=type=secret, compose "
                        "build.secrets)",
                        name,
                    )
                )
    return sorted(findings, key=lambda finding: finding.line or 0)


def _ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over slash-separated context paths."""
    out = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**/", index):
            out += "(?:.*/)?"
            index += 3
            continue
        if pattern.startswith("**", index):
            out += ".*"
            index += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(f"^{out}(?:/.*)?$")


def ignored(patterns: Sequence[str], path: str) -> bool:
    """Whether a context path is excluded by .dockerignore lines (the last match wins)."""
    result = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        cleaned = line[1:].strip() if negate else line
        cleaned = cleaned.strip("/")
        while cleaned.startswith("./"):
            cleaned = cleaned[2:]
        if cleaned and _ignore_pattern(cleaned).match(path):
            result = not negate
    return result


def display_path(path: Path, base: Path) -> str:
    """A path relative to ``base`` when it lies inside it."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def lint_context(context: Path, dockerfile: Path, base: Path) -> list[Finding]:
    """The ``dockerignore`` rule for one build context."""
    candidates = [dockerfile.parent / f"{dockerfile.name}.dockerignore", context / ".dockerignore"]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        return [
            Finding(
                "dockerignore",
                display_path(context, base) or ".",
                None,
                "no .dockerignore: everything in the folder (.git, .env, local builds) "
                "enters the build context",
                "add a .dockerignore that excludes at least .git",
            )
        ]
    if not (context / ".git").exists():
        return []
    lines = found.read_text(errors="replace").splitlines()
    leaks = [path for path in (".git", ".git/HEAD", ".git/index") if not ignored(lines, path)]
    if not leaks:
        return []
    return [
        Finding(
            "dockerignore",
            display_path(found, base),
            None,
            f"{leaks[0]} is not excluded: the context, and any COPY of it, changes on every commit",
            "add the line .git",
        )
    ]


def lint_service(name: str, build: Mapping[str, Any], commit_arg: str, base: Path) -> list[Finding]:
    """Every finding for one compose service's build section (as ``compose config`` prints it)."""
    context_text = str(build.get("context") or ".")
    if "://" in context_text or context_text.startswith("git@"):
        return []
    context = base / context_text
    args = build.get("args") or {}
    findings: list[Finding] = []
    if build.get("dockerfile_inline"):
        parsed = parse(str(build["dockerfile_inline"]), f"{name}: dockerfile_inline")
        findings += lint_dockerfile(parsed, commit_arg)
        dockerfile = context / "Dockerfile"
    else:
        dockerfile = context / str(build.get("dockerfile") or "Dockerfile")
        try:
            text = dockerfile.read_text(errors="replace")
        except OSError as exc:
            return [
                Finding(
                    "unreadable",
                    display_path(dockerfile, base),
                    None,
                    f"cannot read the Dockerfile: {exc.strerror}",
                    "fix build.context / build.dockerfile",
                )
            ]
        findings += lint_dockerfile(parse(text, display_path(dockerfile, base)), commit_arg)
    findings += lint_context(context, dockerfile, base)
    flagged = {finding.subject for finding in findings if finding.rule == "secret-arg"}
    for arg in map(str, args):
        if is_secret(arg) and arg not in flagged:
            findings.append(
                Finding(
                    "secret-arg",
                    f"service {name}",
                    None,
                    f"build arg {arg} looks secret: build args are stored in the image history",
                    "pass it as a build secret (compose build.secrets, RUN --mount=type=secret)",
                    arg,
                )
            )
    return findings


def lint_project(
    project: Mapping[str, Any], services: Sequence[str], commit_arg: str, base: Path
) -> list[Finding]:
    """Findings for the named services of a resolved project; a shared Dockerfile counts once."""
    seen: dict[str, Finding] = {}
    linted: set[str] = set()
    for name in services:
        build = project["services"][name].get("build") or {}
        key = json.dumps(build, sort_keys=True, default=str)
        if key in linted and not build.get("dockerfile_inline"):
            continue
        linted.add(key)
        for finding in lint_service(name, build, commit_arg, base):
            seen.setdefault(str(finding), finding)
    return list(seen.values())
