"""A Dockerfile reader: instructions with their line numbers, stages and ARG names.

Follows the reference's rules: parser directives (``# escape=`` changes the line-continuation
character), comment and empty lines inside continuations are dropped, heredocs (``<<EOF`` …
``EOF``) belong to their instruction, and every ``FROM`` starts a new stage.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from dataclasses import dataclass, field

_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_HEREDOC_KEYWORDS = {"RUN", "COPY", "ADD"}


@dataclass(frozen=True)
class Instruction:
    """One instruction: where it starts, its keyword, flags, arguments and heredoc bodies."""

    line: int  # 1-based line of the instruction's first line
    keyword: str  # upper case
    flags: tuple[str, ...]  # leading --name[=value] options
    args: str  # the rest, continuation lines joined with a space
    heredocs: tuple[str, ...] = ()
    stage: int = -1  # index of the stage it belongs to; -1 before the first FROM

    def words(self) -> list[str]:
        """The arguments as a list: the JSON (exec) form, or split like a shell would."""
        return list(_words(self.args.strip()))

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (or '' for a bare ``--name``); None when absent."""
        for item in self.flags:
            key, _, value = item[2:].partition("=")
            if key == name:
                return value
        return None

    def command(self) -> str:
        """What a RUN executes: its arguments and any heredoc bodies."""
        return "\n".join([" ".join(self.words()), *self.heredocs])

    def arg_names(self) -> list[str]:
        """Names an ARG instruction declares (``ARG A=1 B``)."""
        return [word.split("=", 1)[0] for word in self.words() if word]


@functools.lru_cache(maxsize=4096)
def _words(text: str) -> tuple[str, ...]:
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return tuple(parsed)
    try:
        return tuple(shlex.split(text, comments=False))
    except ValueError:
        return tuple(text.split())


@dataclass(frozen=True)
class Stage:
    """One build stage: its FROM line, base image and optional name."""

    index: int
    line: int
    base: str
    name: str


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile."""

    path: str
    directives: dict[str, str] = field(default_factory=dict)
    instructions: tuple[Instruction, ...] = ()

    @property
    def stages(self) -> list[Stage]:
        out = []
        for item in self.instructions:
            if item.keyword == "FROM":
                words = item.words()
                name = words[2] if len(words) >= 3 and words[1].lower() == "as" else ""
                out.append(Stage(item.stage, item.line, words[0] if words else "", name))
        return out

    def in_stage(self, stage: int) -> list[Instruction]:
        return [item for item in self.instructions if item.stage == stage]


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """Parser directives at the top of the file, and the index of the first other line."""
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match or match.group(1).lower() in found:
            return found, index
        found[match.group(1).lower()] = match.group(2)
    return found, len(lines)


def _continues(line: str, escape: str) -> tuple[bool, str]:
    """Whether a line ends with the escape character (trailing blanks allowed), and its text."""
    stripped = line.rstrip()
    if stripped.endswith(escape):
        return True, stripped[: -len(escape)]
    return False, line


def _heredocs(rest: str) -> list[re.Match[str]]:
    """Heredoc markers (``<<EOF``, ``<<-"EOF"``) outside quotes: ``echo "<<EOF"`` is no heredoc."""
    found: list[re.Match[str]] = []
    quote = ""
    index = 0
    while index < len(rest):
        char = rest[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "<" and (match := _HEREDOC.match(rest, index)):
            found.append(match)
            index = match.end()
            continue
        index += 1
    return found


@functools.lru_cache(maxsize=256)
def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text (memoised: services sharing a Dockerfile parse it once)."""
    lines = text.removeprefix("\ufeff").splitlines()
    directives, index = _directives(lines)
    escape = directives.get("escape", "\\") or "\\"
    instructions: list[Instruction] = []
    stage = -1
    while index < len(lines):
        first = lines[index]
        start = index + 1
        index += 1
        if not first.strip() or first.lstrip().startswith("#"):
            continue
        more, part = _continues(first, escape)
        parts = [part.strip()]
        while more and index < len(lines):
            line = lines[index]
            index += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            more, part = _continues(line, escape)
            parts.append(part.strip())
        logical = " ".join(piece for piece in parts if piece)
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        heredocs: list[str] = []
        if keyword in _HEREDOC_KEYWORDS:
            for match in _heredocs(rest):
                strip_tabs, end = match.group(1) == "-", match.group(3)
                body: list[str] = []
                while index < len(lines):
                    line = lines[index]
                    index += 1
                    if (line.lstrip("\t") if strip_tabs else line) == end:
                        break
                    body.append(line)
                heredocs.append("\n".join(body))
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(start, keyword, tuple(flags), rest, tuple(heredocs), stage))
    return Dockerfile(path, directives, tuple(instructions))


def stage_refs(dockerfile: Dockerfile, stage: Stage) -> list[str]:
    """Names (or indexes) this stage builds on: its FROM, ``COPY --from``, ``RUN --mount=from=``."""
    refs = [stage.base]
    for item in dockerfile.in_stage(stage.index):
        source = item.flag("from")
        if source is not None and item.keyword in {"COPY", "ADD"}:
            refs.append(source)
        for mount in (
            flag[len("--mount=") :] for flag in item.flags if flag.startswith("--mount=")
        ):
            fields = dict(part.split("=", 1) for part in mount.split(",") if "=" in part)
            if fields.get("from"):
                refs.append(fields["from"])
    return refs


def target_stage(dockerfile: Dockerfile, target: str = "") -> Stage | None:
    """The stage a build produces: ``target`` (by name) or the last one."""
    stages = dockerfile.stages
    if not target:
        return stages[-1] if stages else None
    return next((s for s in stages if s.name.lower() == target.lower()), None)


def dependency_stages(dockerfile: Dockerfile, target: str = "") -> list[Stage]:
    """The earlier stages the target stage needs, nearest first, each once.

    These are what inline cache (final stage only) loses after a builder prune.
    """
    stages = dockerfile.stages
    by_name = {stage.name.lower(): stage for stage in stages if stage.name}
    by_index = {str(stage.index): stage for stage in stages}
    final = target_stage(dockerfile, target)
    if final is None:
        return []
    found: list[Stage] = []
    pending = [final]
    while pending:
        stage = pending.pop(0)
        for ref in stage_refs(dockerfile, stage):
            needed = by_name.get(ref.lower()) or by_index.get(ref)
            if needed is not None and needed.index < stage.index and needed not in found:
                found.append(needed)
                pending.append(needed)
    return found


def stage_bases(dockerfile: Dockerfile) -> list[str]:
    """The images a Dockerfile's stages start from (earlier stages and scratch left out)."""
    names: set[str] = set()
    found: list[str] = []
    for stage in dockerfile.stages:
        if stage.base.lower() not in names and stage.base != "scratch":
            found.append(stage.base)
        if stage.name:
            names.add(stage.name.lower())
    return found


BUILD_STEPS = {"RUN", "COPY", "ADD", "WORKDIR"}  # instructions that add a step to the build


def first_steps(dockerfile: Dockerfile, target: str = "") -> frozenset[str]:
    """What two builds must have in common to share a step beyond their base images: for each
    stage the target builds, its base (an image, or the stage it extends, recursively) and its
    first build step, as text. A step's cache key includes every step before it, so builds whose
    sets do not meet share no step. Text that matches may still differ (another context, an
    ``ENV`` before it): the answer errs towards sharing."""
    stages = dockerfile.stages
    by_ref = {stage.name.lower(): stage for stage in stages if stage.name}
    by_ref.update({str(stage.index): stage for stage in stages})

    def signature(stage: Stage) -> str:
        base = by_ref.get(stage.base.lower())
        root = signature(base) if base is not None and base.index < stage.index else stage.base
        step = next((i for i in dockerfile.in_stage(stage.index) if i.keyword in BUILD_STEPS), None)
        if step is None:
            return root
        source = by_ref.get((step.flag("from") or "").lower())  # COPY --from=<stage>
        origin = [signature(source)] if source is not None and source.index < stage.index else []
        return "\n".join([root, step.keyword, *step.flags, step.args, *step.heredocs, *origin])

    final = target_stage(dockerfile, target)
    if final is None:
        return frozenset()
    built = [final, *dependency_stages(dockerfile, target)]
    return frozenset(
        signature(stage)
        for stage in built
        if any(item.keyword in BUILD_STEPS for item in dockerfile.in_stage(stage.index))
    )


# instructions that take an argument
_NEEDS_ARGS = frozenset(
    {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "LABEL", "MAINTAINER", "ONBUILD", "SHELL"}
    | {"STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
INSTRUCTIONS = _NEEDS_ARGS | {"CMD", "ENTRYPOINT", "FROM", "HEALTHCHECK", "RUN"}
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
_NOT_ONBUILD = frozenset({"ONBUILD", "FROM", "MAINTAINER"})


def syntax_errors(dockerfile: Dockerfile) -> list[tuple[int, str]]:
    """What the engine's Dockerfile frontend rejects before building anything, as (line,
    message): unknown instructions, instructions before the first FROM, malformed FROM lines and
    stage names, missing arguments. A ``# syntax=`` directive names another frontend, with rules
    of its own: nothing is reported then."""
    if "syntax" in dockerfile.directives:
        return []
    if not dockerfile.instructions:
        return [(1, "the Dockerfile has no instructions")]
    found: list[tuple[int, str]] = []
    names: set[str] = set()
    for item in dockerfile.instructions:
        message = _instruction_error(item, names)
        if message:
            found.append((item.line, message))
    return found


def _instruction_error(item: Instruction, names: set[str]) -> str:
    """What is wrong with one instruction ('' when nothing); ``names`` collects stage names."""
    keyword, words = item.keyword, item.words()
    if keyword not in INSTRUCTIONS:
        return f"unknown instruction {keyword}"
    if item.stage < 0 and keyword != "ARG":
        return f"{keyword} before the first FROM (only ARG may come first)"
    if keyword in _NEEDS_ARGS and not item.args.strip() and not item.heredocs:
        return f"{keyword} needs an argument"
    if keyword == "FROM":
        return _from_error(words, names)
    if keyword in {"COPY", "ADD"} and len(words) < 2 and not item.heredocs:
        return f"{keyword} needs a source and a destination"
    if keyword == "HEALTHCHECK" and (not words or words[0].upper() not in {"CMD", "NONE"}):
        return "HEALTHCHECK takes CMD <command> or NONE"
    if keyword == "ONBUILD" and words[0].upper() in _NOT_ONBUILD:
        return f"ONBUILD cannot trigger {words[0].upper()}"
    if keyword == "SHELL" and not item.args.strip().startswith("["):
        return 'SHELL takes the JSON form (SHELL ["/bin/sh", "-c"])'
    return ""


def _from_error(words: list[str], names: set[str]) -> str:
    if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
        return "FROM takes an image and optionally AS <name>"
    if len(words) == 3:
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            return f"invalid stage name {words[2]!r} (a letter, then letters, digits, _ - .)"
        if name in names:
            return f"duplicate stage name {words[2]!r}"
        names.add(name)
    return ""
