"""Per-step cache keys of a Dockerfile build, to tell before building which steps BuildKit will
take from its cache.

BuildKit numbers the steps of each stage the build reaches (``[deps 2/4] WORKDIR /w``: FROM is
1, then each RUN, COPY, ADD and WORKDIR) and finds a step in its cache when the step and
everything before it are the same. A step's key here chains its parent's key with what the step
reads: a COPY or ADD its instruction and the blob ids of the context files its sources match
(after ``.dockerignore``), or the key of the stage it copies from; a RUN its command, every ENV
and ARG value it sees, its user, working directory, shell and mounts (a bind of the context: the
files it binds); a WORKDIR its path. The first step of a stage chains the base image's id or
the key of the stage it extends. Keys are recorded on the image (``org.compose-tasks.steps``),
with a short hash of each ARG and ENV value (never a value; secret ones left out), so the next
plan can say which steps will rebuild and why.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from compose_tasks import mask
from compose_tasks.dockerfile.instructions import (
    BUILD_STEPS,
    Dockerfile,
    Instruction,
    Stage,
    dependency_stages,
    stage_refs,
    target_stage,
)

_VAR = re.compile(
    r"\\\$"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?(?P<op>[-+])(?P<word>[^}]*))?\}"
    r"|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
)
_COPY_FLAGS = ("chown", "chmod", "link", "parents", "exclude", "keep-git-dir", "checksum")


def expand(text: str, values: Mapping[str, str]) -> str:
    """``$NAME``, ``${NAME}``, ``${NAME:-word}`` and ``${NAME:+word}`` replaced as the
    Dockerfile frontend does in COPY, ADD, WORKDIR, USER, ENV and ARG (``\\$`` stays ``$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("plain")
        value = values.get(name)
        if match.group("op") == "-":
            return value if value else expand(match.group("word"), values)
        if match.group("op") == "+":
            return expand(match.group("word"), values) if value else ""
        return value or ""

    return _VAR.sub(one, text)


def _short(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PlannedStep:
    """One build step as the plan sees it."""

    position: str  # the stage word and step number BuildKit shows: "deps 2", "3"
    label: str  # "[deps 2/4] COPY a.txt ./", values expanded where BuildKit expands them
    key: str  # this step and every step before it
    parts: tuple[str, str, str]  # hashes of its instruction, the values it sees, its files
    names: tuple[str, ...] = ()  # the ARG and ENV names a RUN sees
    sources: tuple[str, ...] = ()  # what a COPY or ADD reads, as written
    base: str = ""  # the first step of a stage: the image or stage it starts from
    reads: frozenset[str] = frozenset()  # the context files it reads
    origin: str = ""  # COPY --from: the stage or image it copies from


@dataclass(frozen=True)
class Inputs:
    """What the keys read besides the Dockerfile."""

    args: Mapping[str, str]  # build args (compose's, resolved, and the tool's)
    files: Mapping[str, str]  # the context's files: relative path -> kind and blob id
    base_id: Callable[[str], str]  # an image ref -> its local id ('' when not here)
    named: Mapping[str, str] = field(default_factory=dict)  # additional_contexts -> digest


@dataclass
class _State:
    """One stage as the frontend walks it."""

    key: str
    content: str  # what the stage's files come from (``COPY --from`` compares content)
    env: dict[str, str]
    args: dict[str, str]
    user: str = ""
    workdir: str = "/"
    shell: tuple[str, ...] = ("/bin/sh", "-c")
    values: dict[str, str] = field(default_factory=dict)  # every ARG/ENV value seen: for vars


def _stage_word(dockerfile: Dockerfile, stage: Stage) -> str:
    """The stage's name in BuildKit's step labels: its own, ``stage-<index>`` when the build
    has other states (another stage, or an image or named context a ``COPY --from`` or a
    mount reads), else none."""
    if stage.name:
        return stage.name
    stages = dockerfile.stages
    names = {s.name.lower() for s in stages if s.name} | {str(s.index) for s in stages}
    others = any(ref.lower() not in names for s in stages for ref in stage_refs(dockerfile, s)[1:])
    return f"stage-{stage.index}" if len(stages) > 1 or others else ""


def _matches(pattern: str, files: Mapping[str, str]) -> dict[str, str]:
    """The context files a COPY source names: a file, a folder's files, or a wildcard."""
    clean = pattern.strip().lstrip("/")
    while clean.startswith("./"):
        clean = clean[2:]
    clean = clean.rstrip("/")
    if clean in ("", "."):
        return dict(files)
    if not any(char in clean for char in "*?["):  # a file or a folder: by its path
        inside = clean + "/"
        return {
            rel: entry for rel, entry in files.items() if rel == clean or rel.startswith(inside)
        }
    wanted = clean.split("/")
    found = {}
    for rel, entry in files.items():
        parts = rel.split("/")
        if len(parts) >= len(wanted) and all(
            fnmatch.fnmatchcase(part, want) for part, want in zip(parts, wanted, strict=False)
        ):
            found[rel] = entry
    return found


def plan_steps(
    dockerfile: Dockerfile, target: str, inputs: Inputs
) -> tuple[list[PlannedStep], dict[str, str]]:
    """The steps a build of ``target`` (the last stage when empty) runs, stage by stage in
    file order, each with its key; and every ARG and ENV value those stages see."""
    final = target_stage(dockerfile, target)
    if final is None:
        return [], {}
    reached = {final.index} | {stage.index for stage in dependency_stages(dockerfile, target)}
    stages = dockerfile.stages
    by_ref = {stage.name.lower(): stage for stage in stages if stage.name}
    by_ref.update({str(stage.index): stage for stage in stages})
    meta = global_args(dockerfile, inputs.args)
    done: dict[int, _State] = {}
    out: list[PlannedStep] = []
    values: dict[str, str] = {}
    for stage in stages:
        if stage.index not in reached:
            continue
        base = expand(stage.base, meta)
        parent = by_ref.get(base.lower())
        extends = parent is not None and parent.index < stage.index and parent.index in done
        if parent is not None and extends:
            before = done[parent.index]
            state = _State(
                before.key,
                before.content,
                dict(before.env),
                dict(before.args),
                before.user,
                before.workdir,
                before.shell,
                dict(before.values),
            )
        else:
            root = inputs.named.get(base) or ("scratch" if base == "scratch" else "")
            root = _short("from", root or inputs.base_id(base) or base)
            state = _State(root, root, {}, {})
        items = dockerfile.in_stage(stage.index)
        # BuildKit counts the FROM of a stage that starts from an image, not from a stage
        number = 0 if extends else 1
        total = number + sum(item.keyword in BUILD_STEPS for item in items)
        word = _stage_word(dockerfile, stage)
        for item in items:
            if item.keyword not in BUILD_STEPS:
                _configure(item, state, meta, inputs.args)
                continue
            number += 1
            step = _step(item, state, done, by_ref, inputs, stage.index)
            position = f"{word} {number}".strip()
            shown = f"[{word + ' ' if word else ''}{number}/{total}] {step.shown}"
            state.key = _short(state.key, step.parts)
            state.content = _short(state.content, step.parts[0], step.parts[2], step.used)
            first = base if number == (1 if extends else 2) else ""
            out.append(
                PlannedStep(
                    position,
                    shown,
                    state.key,
                    step.parts,
                    step.names,
                    step.sources,
                    first,
                    step.reads,
                    step.origin,
                )
            )
        done[stage.index] = state
        values.update(state.values)
    return out, values


def global_args(dockerfile: Dockerfile, given: Mapping[str, str]) -> dict[str, str]:
    """The values of the ARGs before the first FROM, which FROM lines may use."""
    meta: dict[str, str] = {}
    for item in dockerfile.in_stage(-1):
        if item.keyword == "ARG":
            _declare(item, meta, meta, given)
    return meta


def _declare(
    item: Instruction, into: dict[str, str], visible: Mapping[str, str], given: Mapping[str, str]
) -> None:
    """An ARG: each name takes the given build arg, else its default, else an earlier value."""
    for word in item.words():
        name, has_default, default = word.partition("=")
        if name in given and given[name] is not None:
            into[name] = str(given[name])
        elif has_default:
            into[name] = expand(default, visible)
        elif name in visible:
            into[name] = visible[name]


def _configure(
    item: Instruction, state: _State, meta: Mapping[str, str], given: Mapping[str, str]
) -> None:
    """The instructions that change what later steps see: ARG, ENV, USER, SHELL."""
    seen = {**state.args, **state.env}
    if item.keyword == "ARG":
        _declare(item, state.args, {**meta, **seen}, given)
        state.values.update(state.args)
    elif item.keyword == "ENV":
        words = item.words()
        if len(words) >= 2 and "=" not in words[0]:
            words = [f"{words[0]}={' '.join(words[1:])}"]  # the legacy ENV name value form
        for word in words:
            name, _, value = word.partition("=")
            state.env[name] = expand(value, seen)
        state.values.update(state.env)
    elif item.keyword == "USER":
        state.user = expand(item.args.strip(), seen)
    elif item.keyword == "SHELL":
        state.shell = tuple(item.words())


@dataclass(frozen=True)
class _Step:
    shown: str  # as BuildKit shows it
    parts: tuple[str, str, str]  # hashes of the instruction, the values it sees, its files
    names: tuple[str, ...] = ()  # the names a RUN sees
    sources: tuple[str, ...] = ()  # what a COPY or ADD reads, as written
    used: str = ""  # a RUN: the values its command names (what its output likely depends on)
    reads: frozenset[str] = frozenset()  # the context files it reads
    origin: str = ""  # COPY --from: the stage or image


def _step(
    item: Instruction,
    state: _State,
    done: Mapping[int, _State],
    by_ref: Mapping[str, Stage],
    inputs: Inputs,
    index: int,
) -> _Step:
    """One build step's inputs. ``COPY --from`` a stage compares the content it copies, which
    a RUN that re-ran for a value its command never names is taken to have left as it was."""
    seen = {**state.args, **state.env}

    def source(ref: str) -> str:
        stage = by_ref.get(ref.lower())
        if stage is not None and stage.index < index and stage.index in done:
            return done[stage.index].content
        return inputs.named.get(ref) or inputs.base_id(ref) or ref

    if item.keyword == "WORKDIR":
        path = expand(item.args.strip(), seen)
        state.workdir = path if path.startswith("/") else f"{state.workdir.rstrip('/')}/{path}"
        return _Step(f"WORKDIR {path}", (_short("WORKDIR", state.workdir, state.user), "", ""))
    if item.keyword == "RUN":
        mounts = [flag for flag in item.flags if flag.startswith("--mount=")]
        binds = [_mount_files(flag, inputs, source) for flag in mounts]
        mounted = [found for found, _ in binds]
        names = tuple(sorted(seen))
        values = _short(sorted(_hidden(seen).items()), state.user, state.workdir, state.shell)
        shown = "RUN " + expand(
            " ".join(item.words()) if item.args.startswith("[") else item.args, seen
        )
        text = _short(item.flags, item.args, item.heredocs)
        command = "\n".join([item.args, *item.heredocs])
        used = sorted(
            (k, v) for k, v in _hidden(seen).items() if re.search(rf"\${{?{k}\b", command)
        )
        context = _short(used, state.user, state.workdir, state.shell)
        reads = frozenset(rel for _, files in binds for rel in files)
        return _Step(shown, (text, values, _short(mounted)), names, (), context, reads)
    words = [expand(word, seen) for word in item.words()]
    flags = [expand(flag, seen) for flag in item.flags if flag[2:].split("=")[0] in _COPY_FLAGS]
    origin = item.flag("from")
    sources, dest = (words[:-1], words[-1]) if len(words) > 1 else (words, "")
    if not dest.startswith("/"):
        dest = f"{state.workdir.rstrip('/')}/{dest}"
    text = _short(item.keyword, flags, sources, dest)
    shown = " ".join([item.keyword, *item.flags, *item.words()])  # as written
    if item.heredocs:
        return _Step(shown, (text, "", _short(item.heredocs)))
    if origin is not None:
        origin = expand(origin, seen)
        return _Step(shown, (text, "", _short(source(origin), sources)), origin=origin)
    if item.keyword == "ADD" and any("://" in src or src.startswith("git@") for src in sources):
        return _Step(shown, (text, "", _short(sources)))  # BuildKit checks a URL each build
    matched = [_matches(src, inputs.files) for src in sources]
    files = _short([sorted(found.items()) for found in matched])
    reads = frozenset(rel for found in matched for rel in found)
    return _Step(shown, (text, "", files), (), tuple(sources), "", reads)


def _mount_files(
    flag: str, inputs: Inputs, source: Callable[[str], str]
) -> tuple[str, Mapping[str, str]]:
    """What a RUN mount brings in, as a hash and the context files it binds: a bind of the
    context, those files; of a stage or image, its key; a cache, secret, ssh or tmpfs mount
    nothing but its options."""
    fields = dict(part.split("=", 1) for part in flag[len("--mount=") :].split(",") if "=" in part)
    if fields.get("type", "bind") != "bind":
        return "", {}
    if fields.get("from"):
        return source(fields["from"]), {}
    files = _matches(fields.get("source", "."), inputs.files)
    return _short(sorted(files.items())), files


# --- what the image records, and the prediction ------------------------------------------


def encode(steps: Sequence[PlannedStep]) -> str:
    """The steps as the image's label records them: position, key and part hashes."""
    return json.dumps([[s.position, s.key, *s.parts] for s in steps], separators=(",", ":"))


def _hidden(values: Mapping[str, str]) -> dict[str, str]:
    """The values with every secret one (by name, or held by the masker) left out of what a
    key hashes: a recorded key must not let anyone confirm a guessed secret."""
    secret = set(mask.active().values)
    return {
        name: mask.MASK if mask.is_secret(name) or value in secret else value
        for name, value in values.items()
    }


def value_hashes(values: Mapping[str, str]) -> dict[str, str]:
    """A short hash of each ARG and ENV value, for naming which one changed (secrets left out:
    a name that looks secret, or a value the masker holds)."""
    return {
        name: _short(name, value)[:8]
        for name, value in sorted(_hidden(values).items())
        if value != mask.MASK
    }


@dataclass(frozen=True)
class Prediction:
    """What the plan expects BuildKit to do with a service's steps."""

    steps: int
    cached: int
    rebuilt: tuple[str, ...]  # positions, in build order
    first: str = ""  # the first rebuilt step's label
    why: str = ""  # what changed for it

    def text(self) -> str:
        if not self.rebuilt:
            return f"all {self.steps} steps from cache"
        return f"rebuilds from {self.first}: {self.why}; {self.cached}/{self.steps} from cache"


def stage_of(position: str) -> str:
    """The stage word of a step's position: ``deps 2`` -> ``deps``, ``3`` -> ``''``."""
    return position.rpartition(" ")[0]


def position_of(label: str) -> str:
    """The position (stage word and step number) in a step label BuildKit showed."""
    inside = label[1:].partition("]")[0].split() if label.startswith("[") else []
    if not inside or "/" not in inside[-1]:
        return ""
    number = inside[-1].partition("/")[0]
    return f"{inside[-2]} {number}" if len(inside) >= 2 else number


def exact(prediction: Prediction, rebuilt_labels: Sequence[str], total: int) -> bool:
    """Whether a build rebuilt just the steps predicted (and so took the rest from cache)."""
    rebuilt = {position_of(label) for label in rebuilt_labels}
    return total == prediction.steps and rebuilt == set(prediction.rebuilt)


def decode(label: str) -> list[list[str]]:
    """A recorded steps label ([] when absent or unreadable)."""
    try:
        data = json.loads(label) if label else []
    except ValueError:
        return []
    ok = isinstance(data, list) and all(isinstance(row, list) and len(row) == 5 for row in data)
    return [[str(part) for part in row] for row in data] if ok else []


def predict(
    steps: Sequence[PlannedStep],
    known: set[str],
    previous: Sequence[Sequence[str]],
    before: Mapping[str, str],
    now: Mapping[str, str],
    changed: Callable[[], Collection[str]] = tuple,
    services: Mapping[str, str] | None = None,
    lacking: Collection[str] = (),
) -> Prediction:
    """Which steps come from the cache (their key is one an image here was built with) and, for
    the first that does not, why: against ``previous`` (the service's last build's steps), the
    value hashes then (``before``) and now, and the context files changed since (``changed``,
    asked only when files are the reason); ``services`` maps the names a build reads another
    service's result by to that service (its change is the reason); ``lacking``: keys whose
    cache records have no layer: served while a later step is, run again when a step of their
    stage after them runs (it needs their result to start from; that is then the reason)."""
    runs = [step.key not in known for step in steps]
    for at in range(len(steps) - 1, 0, -1):
        parent, step = steps[at - 1], steps[at]
        same = stage_of(parent.position) == stage_of(step.position)
        if runs[at] and same and parent.key in lacking:
            runs[at - 1] = True
    rebuilt = [step for step, run in zip(steps, runs, strict=True) if run]
    if not rebuilt:
        return Prediction(len(steps), len(steps), ())
    first = rebuilt[0]
    return Prediction(
        len(steps),
        len(steps) - len(rebuilt),
        tuple(step.position for step in rebuilt),
        first.label,
        LACKING
        if first.key in lacking
        else _why(
            first,
            {row[0]: row for row in previous},
            before,
            now,
            bool(previous),
            changed,
            services or {},
        ),
    )


LACKING = (
    "the registry's image lacks its cache record (the build that pushed it took this step from "
    "the registry's cache, and this engine's BuildKit exports such steps without their layers: "
    "moby/buildkit#2274)"
)


def _why(
    step: PlannedStep,
    previous: Mapping[str, Sequence[str]],
    before: Mapping[str, str],
    now: Mapping[str, str],
    built: bool,
    changed: Callable[[], Collection[str]],
    services: Mapping[str, str],
) -> str:
    row = previous.get(step.position)
    if not built:
        return "no earlier build of this service here"
    if row is None:
        return "a new step"
    if row[2] != step.parts[0]:
        return "the instruction changed"
    if row[4] != step.parts[2] and step.origin in services:
        return f"{services[step.origin]} changed (it copies from {step.origin})"
    if row[4] != step.parts[2] and step.origin:
        return f"what it copies from {step.origin} changed"
    if row[4] != step.parts[2]:
        files = changed()
        gone = dict.fromkeys(files, "")  # deleted files too: matched by the sources
        named = sorted(
            step.reads.intersection(files).union(*(_matches(src, gone) for src in step.sources))
        )
        if named:
            more = f" and {len(named) - 3} more" if len(named) > 3 else ""
            return f"changed {', '.join(named[:3])}{more}"
        return f"files changed in {', '.join(step.sources) or 'what it reads'}"
    if row[3] != step.parts[1]:
        names = [name for name in step.names if before.get(name) != now.get(name)]
        return f"changed: {', '.join(names)}" if names else "its args, env or user changed"
    if step.base in services:
        return f"{services[step.base]} changed (its base {step.base})"
    if step.base:
        return f"its base {step.base} changed"
    return "not in the cache of any image here"
