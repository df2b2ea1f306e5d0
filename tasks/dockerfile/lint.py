"""Dockerfile cache lint: the mistakes that silently turn every build into a full build.

Only the stages a build produces are read: the target (``build.target``, else the last stage)
and every stage it depends on, each with what it inherits through ``FROM <stage>``. Rules (each
finding names file:line and says what to do instead):

- ``commit-arg``: the per-commit ARG is declared before a RUN of the same stage that does not use
  it, or before a dependency install; every RUN after an ARG re-runs when the ARG changes.
- ``copy-all``: ``COPY .``/``ADD .`` from the build context before a dependency install (also
  one inherited from a parent stage); any code change re-runs the install.
- ``stage-cache``: a stage the target needs has no name, so it cannot get its own cache image.
- ``dockerignore``: a built stage copies broad context paths (``.``, a folder) while the context
  holds what should not go in (``.git``, ``node_modules``, ``.env``) and no ``.dockerignore``
  excludes it.
- ``secret-arg``: a secret-looking build arg; build args are kept in the image history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compose_tasks.dockerfile import contexts
from compose_tasks.dockerfile.dockerignore import ignored
from compose_tasks.dockerfile.instructions import (
    Dockerfile,
    Instruction,
    Stage,
    dependency_stages,
    target_stage,
)
from compose_tasks.dockerfile.reader import Reader, display_path
from compose_tasks.mask import is_secret

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


def _uses(item: Instruction, arg: str) -> bool:
    return bool(re.search(rf"\$(?:{arg}\b|\{{{arg}\b)", item.command()))


def _built(dockerfile: Dockerfile, target: str) -> list[tuple[Stage, list[Instruction]]]:
    """The stages a build produces, each with its instructions after what it inherits."""
    final = target_stage(dockerfile, target)
    if final is None:
        return []
    stages = sorted([final, *dependency_stages(dockerfile, target)], key=lambda s: s.index)
    by_name = {stage.name.lower(): stage for stage in dockerfile.stages if stage.name}
    out = []
    for stage in stages:
        chain = [stage]
        while (parent := by_name.get(chain[-1].base.lower())) and parent.index < chain[-1].index:
            chain.append(parent)
        items = [item for link in reversed(chain) for item in dockerfile.in_stage(link.index)]
        out.append((stage, [item for item in items if item.keyword != "FROM"]))
    return out


def _commit_arg(path: str, stage: Stage, items: list[Instruction], arg: str) -> list[Finding]:
    own = [item for item in items if item.stage == stage.index]
    for item in own:
        if item.keyword != "ARG" or arg not in item.arg_names():
            continue
        for later in (run for run in own if run.keyword == "RUN" and run.line > item.line):
            label = dependency_step(later)
            if label:
                why = f"the dependency install at line {later.line} ({label})"
            elif not _uses(later, arg):
                why = f"the RUN at line {later.line}, which does not use it"
            else:
                continue
            return [
                Finding(
                    "commit-arg",
                    path,
                    item.line,
                    f"ARG {arg} comes before {why}: every new commit re-runs it (a commit "
                    "touching only other code or another service too)",
                    f"declare ARG {arg} right before the first step that uses it",
                )
            ]
    return []


def _copy_all(path: str, items: list[Instruction]) -> list[Finding]:
    installs = [(item, label) for item in items if (label := dependency_step(item))]
    for position, item in enumerate(items):
        later = [(dep, label) for dep, label in installs if items.index(dep) > position]
        if later and _copies_context(item):
            dep, label = later[0]
            return [
                Finding(
                    "copy-all",
                    path,
                    item.line,
                    f"{item.keyword} {item.args} copies the whole context before the "
                    f"dependency install at line {dep.line} ({label}): any code change "
                    "re-runs it",
                    "copy only the dependency manifests first, the rest after the install",
                )
            ]
    return []


def _unnamed(path: str, dockerfile: Dockerfile, target: str) -> list[Finding]:
    return [
        Finding(
            "stage-cache",
            path,
            stage.line,
            f"stage {stage.index} (FROM {stage.base}) is needed by the build but has no name: "
            "it cannot be built as its own cache image, so its steps rebuild after a prune",
            f"name it: FROM {stage.base} AS <name>",
        )
        for stage in dependency_stages(dockerfile, target)
        if not stage.name
    ]


def lint_dockerfile(dockerfile: Dockerfile, commit_arg: str, target: str = "") -> list[Finding]:
    """The Dockerfile's own findings, for the stages a build of ``target`` produces."""
    findings: list[Finding] = []
    path = dockerfile.path
    for stage, items in _built(dockerfile, target):
        findings += _commit_arg(path, stage, items, commit_arg)
        findings += _copy_all(path, items)
    findings += _unnamed(path, dockerfile, target)
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
    unique = {str(finding): finding for finding in findings}
    return sorted(unique.values(), key=lambda finding: finding.line or 0)


MATTERS = (".git", "node_modules", ".env")  # context entries that bust caches or leak


def broad_copies(dockerfile: Dockerfile, target: str, context: Path) -> list[Instruction]:
    """COPY/ADD from the context of ``.`` or a folder, in the stages a build produces."""
    found = []
    for _, items in _built(dockerfile, target):
        for item in items:
            if item.keyword not in {"COPY", "ADD"} or item.flag("from") is not None:
                continue
            sources = item.words()[:-1] if not item.heredocs else []
            if any(
                source in _CONTEXT_ROOT or source.endswith("/") or (context / source).is_dir()
                for source in sources
            ):
                found.append(item)
    return sorted(set(found), key=lambda item: item.line)


def lint_context(
    context: Path, dockerfile: Path, base: Path, copies: Sequence[Instruction]
) -> list[Finding]:
    """The ``dockerignore`` rule: what matters in the context and is sent by a broad copy."""
    if not copies:
        return []
    candidates = [dockerfile.parent / f"{dockerfile.name}.dockerignore", context / ".dockerignore"]
    found = next((path for path in candidates if path.is_file()), None)
    lines = found.read_text(errors="replace").splitlines() if found else []
    present = [name for name in MATTERS if (context / name).exists()]
    leaks = [name for name in present if not ignored(lines, name)]
    if ".git" in present and ".git" not in leaks:
        leaks += [path for path in (".git/HEAD", ".git/index") if not ignored(lines, path)][:1]
    if not leaks:
        return []
    copy = copies[0]
    names = ", ".join(dict.fromkeys(leak.split("/")[0] for leak in leaks))
    where = display_path(found, base) if found else display_path(context, base) or "."
    what = f"{leaks[0]} is not excluded" if found else "no .dockerignore"
    return [
        Finding(
            "dockerignore",
            where,
            None,
            f"{what}: {copy.keyword} {copy.args} (line {copy.line}) sends {', '.join(leaks)} "
            "into the build, so the step and all after it rebuild when they change",
            f"add {names} to .dockerignore" if found else f"add a .dockerignore with {names}",
        )
    ]


def lint_service(
    name: str, build: Mapping[str, Any], commit_arg: str, reader: Reader
) -> list[Finding]:
    """Every finding for one compose service's build section (as ``compose config`` prints it),
    its Dockerfile from the run's ``reader``."""
    context_text = str(build.get("context") or ".")
    if contexts.remote(context_text):
        return []
    base = reader.base
    context = base / context_text
    dockerfile = context / str(build.get("dockerfile") or "Dockerfile")
    parsed = reader.service(name, build)
    if parsed is None:
        return [
            Finding(
                "unreadable",
                display_path(dockerfile, base),
                None,
                "cannot read the Dockerfile",
                "fix build.context / build.dockerfile",
            )
        ]
    target = str(build.get("target") or "")
    findings = lint_dockerfile(parsed, commit_arg, target)
    findings += lint_context(context, dockerfile, base, broad_copies(parsed, target, context))
    flagged = {finding.subject for finding in findings if finding.rule == "secret-arg"}
    for arg in map(str, build.get("args") or {}):
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
    project: Mapping[str, Any], services: Sequence[str], commit_arg: str, reader: Reader
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
        for finding in lint_service(name, build, commit_arg, reader):
            seen.setdefault(str(finding), finding)
    return list(seen.values())
