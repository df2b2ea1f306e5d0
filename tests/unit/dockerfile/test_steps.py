"""Per-step keys and the cache prediction, on Dockerfile text alone (no engine)."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from compose_tasks import mask
from compose_tasks.dockerfile import steps
from compose_tasks.dockerfile.instructions import parse
from compose_tasks.dockerfile.steps import Inputs, PlannedStep, Prediction

MULTI = """\
FROM base:1 AS deps
WORKDIR /app
COPY package.txt ./
RUN install
FROM deps AS build
COPY src/ ./src/
RUN bundle > out.txt
FROM base:1
COPY --from=build /app/out.txt /srv/out.txt
ARG GIT_COMMIT_HASH=unknown
ENV MODE=prod
RUN echo "$GIT_COMMIT_HASH" > /srv/version
"""
FILES = {"package.txt": "f 1", "src/a.txt": "f 2", "src/b.txt": "f 3", "README.md": "f 4"}
CODE = ["build 1", "build 2", "stage-2 2", "stage-2 3"]


def planned(
    text: str = MULTI,
    target: str = "",
    args: Mapping[str, str] | None = None,
    files: Mapping[str, str] = FILES,
    bases: Mapping[str, str] | None = None,
) -> list[PlannedStep]:
    ids = {"base:1": "sha256:b1", **(bases or {})}
    given = {"GIT_COMMIT_HASH": "c1", **(args or {})}
    found, _ = steps.plan_steps(parse(text), target, Inputs(given, files, lambda r: ids.get(r, "")))
    return found


def rebuilt(before: list[PlannedStep], after: list[PlannedStep]) -> list[str]:
    """What a build after ``before`` would rebuild: the positions whose key is new."""
    known = {step.key for step in before}
    return [step.position for step in after if step.key not in known]


def test_labels_number_the_steps_as_buildkit_shows_them() -> None:
    assert [step.label for step in planned()] == [
        "[deps 2/4] WORKDIR /app",
        "[deps 3/4] COPY package.txt ./",
        "[deps 4/4] RUN install",
        "[build 1/2] COPY src/ ./src/",  # a stage extending a stage: its FROM is not counted
        "[build 2/2] RUN bundle > out.txt",
        "[stage-2 2/3] COPY --from=build /app/out.txt /srv/out.txt",
        '[stage-2 3/3] RUN echo "c1" > /srv/version',  # values expanded, as BuildKit shows
    ]
    single = planned("FROM base:1\nWORKDIR /w\nRUN make\n")
    assert [step.position for step in single] == ["2", "3"]
    # an image (or named context) a COPY --from reads is a build state too: the stage is named
    image = planned("FROM base:1\nWORKDIR /w\nCOPY --from=base:1 /bin/true /t\n")
    assert [step.position for step in image] == ["stage-0 2", "stage-0 3"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"args": {"GIT_COMMIT_HASH": "c2"}}, ["stage-2 3"]),  # only the RUN that sees it
        ({"files": {**FILES, "src/a.txt": "f 9"}}, CODE),
        ({"files": {**FILES, "src/new.txt": "f 8"}}, CODE),
        ({"files": {**FILES, "README.md": "f 9"}}, []),  # no COPY reads it
        ({"files": {**FILES, "package.txt": "x 1"}}, ["deps 3", "deps 4", *CODE]),  # its mode
        ({"bases": {"base:1": "sha256:b2"}}, ["deps 2", "deps 3", "deps 4", *CODE]),
        ({"args": {"UNDECLARED": "x"}}, []),  # an arg no ARG declares reaches no step
    ],
)  # fmt: skip
def test_one_changed_input_rebuilds_the_steps_that_read_it(
    change: dict[str, dict[str, str]], expected: list[str]
) -> None:
    assert rebuilt(planned(), planned(**change)) == expected  # type: ignore[arg-type]


def test_copy_from_a_stage_compares_what_it_copies() -> None:
    text = "FROM base:1 AS b\nARG V\nRUN build\nFROM base:1\nCOPY --from=b /out /out\n"
    before = planned(text, args={"V": "1"})
    # the RUN re-runs for a value its command never names: its output is taken as unchanged
    assert rebuilt(before, planned(text, args={"V": "2"})) == ["b 2"]
    named = text.replace("RUN build", "RUN build $V")
    assert rebuilt(planned(named, args={"V": "1"}), planned(named, args={"V": "2"})) == [
        "b 2",
        "stage-1 2",
    ]


def test_target_leaves_later_stages_out_and_env_reaches_runs_only() -> None:
    text = "FROM base:1 AS one\nENV A=1\nCOPY . /x\nRUN a\nFROM one AS two\nRUN b\n"
    assert [step.position for step in planned(text, "one")] == ["one 2", "one 3"]
    changed = text.replace("ENV A=1", "ENV A=2")
    assert rebuilt(planned(text, "one"), planned(changed, "one")) == ["one 3"]


def test_substitution_in_copy_and_workdir() -> None:
    assert steps.expand("${A}/${B:-x}/$C/${D:+y}/\\$E", {"A": "a", "C": "c", "D": "d"}) == (
        "a/x/c/y/$E"
    )
    text = "FROM base:1\nARG DIR=src\nWORKDIR /w/$DIR\nCOPY ${DIR}/ ./\n"
    assert [step.label for step in planned(text)] == [
        "[2/3] WORKDIR /w/src",
        "[3/3] COPY ${DIR}/ ./",
    ]
    assert rebuilt(planned(text), planned(text, args={"DIR": "src"})) == []
    assert rebuilt(planned(text), planned(text, files={**FILES, "src/b.txt": "f 0"})) == ["3"]


def test_a_bind_mount_of_the_context_reads_its_files() -> None:
    text = "FROM base:1\nRUN --mount=type=bind,source=src,target=/s make\n"
    assert rebuilt(planned(text), planned(text, files={**FILES, "src/a.txt": "f 7"})) == ["2"]
    assert rebuilt(planned(text), planned(text, files={**FILES, "package.txt": "f 7"})) == []


def test_the_label_round_trips_and_the_prediction_names_what_changed() -> None:
    before = planned()
    previous = steps.decode(steps.encode(before))
    assert [row[0] for row in previous] == [step.position for step in before]
    known = {row[1] for row in previous}
    values = {"GIT_COMMIT_HASH": "c1", "MODE": "prod"}
    now = planned(args={"GIT_COMMIT_HASH": "c2"})
    found = steps.predict(
        now,
        known,
        previous,
        steps.value_hashes(values),
        steps.value_hashes({**values, "GIT_COMMIT_HASH": "c2"}),
    )
    assert (found.steps, found.cached, found.rebuilt) == (7, 6, ("stage-2 3",))
    assert found.why == "changed: GIT_COMMIT_HASH"
    assert found.text().startswith('rebuilds from [stage-2 3/3] RUN echo "c2"')
    files = planned(files={**FILES, "src/b.txt": "f 5"})
    assert steps.predict(files, known, previous, {}, {}).why == "files changed in src/"
    named = steps.predict(files, known, previous, {}, {}, lambda: {"src/b.txt", "other.txt"})
    assert named.why == "changed src/b.txt"
    fresh = steps.predict(before, set(), [], {}, {})
    assert (fresh.cached, fresh.why) == (0, "no earlier build of this service here")
    assert steps.predict(before, known, previous, {}, {}).text() == "all 7 steps from cache"
    assert steps.decode("not json") == [] and steps.decode('[["x"]]') == []


def test_a_step_whose_record_lacks_its_layer_runs_again_only_under_a_step_of_its_stage() -> None:
    """``lacking``: the registry's image holds these steps' records without layers. Served
    while the step after them is; run again when a step of their stage after them runs."""
    before = planned()
    known = {step.key for step in before}
    lacking = {step.key for step in before if step.position in ("deps 2", "deps 3", "build 1")}
    assert steps.predict(before, known, [], {}, {}, lacking=lacking).rebuilt == ()
    code = planned(args={"GIT_COMMIT_HASH": "c2"})  # stage-2 3 runs: no lacking step under it
    assert steps.predict(code, known, [], {}, {}, lacking=lacking).rebuilt == ("stage-2 3",)
    source = planned(files={**FILES, "src/a.txt": "f 9"})  # build 1 runs: deps is not its stage
    found = steps.predict(source, known, [], {}, {}, lacking=lacking)
    assert found.rebuilt == tuple(CODE) and found.why != steps.LACKING
    install = planned(files={**FILES, "package.txt": "f 9"})  # deps 3 runs on deps 2
    found = steps.predict(install, known, [], {}, {}, lacking=lacking)
    assert found.rebuilt[0] == "deps 2" and found.why == steps.LACKING


def test_value_hashes_leave_secrets_out() -> None:
    mask.add(["s3cr3t-value"])
    hashes = steps.value_hashes({"API_TOKEN": "abc", "PLAIN": "s3cr3t-value", "LEVEL": "2"})
    assert list(hashes) == ["LEVEL"] and "2" not in json.dumps(hashes)
    # nor does a step key hash one: it could confirm a guess
    text = "FROM base:1\nARG NPM_TOKEN\nARG LEVEL\nRUN install\n"
    one = planned(text, args={"NPM_TOKEN": "guess-1", "LEVEL": "1"})
    assert rebuilt(one, planned(text, args={"NPM_TOKEN": "guess-2", "LEVEL": "1"})) == []
    assert rebuilt(one, planned(text, args={"NPM_TOKEN": "guess-1", "LEVEL": "2"})) == ["2"]


def test_exact_compares_the_rebuilt_positions() -> None:
    prediction = Prediction(3, 1, ("build 1", "2"))
    labels = ["[build 1/2] COPY . .", "[ 2/12] RUN x"]
    assert steps.exact(prediction, labels, 3)
    assert not steps.exact(prediction, labels[:1], 3)
    assert not steps.exact(prediction, labels, 4)
    assert steps.position_of("[linux/amd64 deps 3/4] RUN x") == "deps 3"
    assert steps.position_of("no brackets") == ""


def test_a_service_built_on_another_names_it_when_it_changed() -> None:
    """``FROM dep`` (a ``service:`` context) and ``COPY --from=shop-base`` (another service's
    image): the key follows that service's digest, and the reason names the service."""
    services = {"dep": "base", "shop-base": "base"}

    def why(text: str) -> Prediction:
        def keyed(digest: str) -> list[PlannedStep]:
            built_on = {name: f"service:base@{digest}" for name in services}
            found, _ = steps.plan_steps(
                parse(text), "", Inputs({}, FILES, lambda ref: built_on.get(ref, ""), built_on)
            )
            return found

        previous = steps.decode(steps.encode(keyed("d1")))
        known = {row[1] for row in previous}
        assert steps.predict(keyed("d1"), known, previous, {}, {}, tuple, services).rebuilt == ()
        return steps.predict(keyed("d2"), known, previous, {}, {}, tuple, services)

    based = why("FROM dep\nCOPY package.txt /p\n")
    assert (based.rebuilt, based.why) == (("2",), "base changed (its base dep)")
    copied = why("FROM busybox:1.36\nCOPY --from=shop-base /x /x\n")
    assert copied.why == "base changed (it copies from shop-base)"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("package.json", ["package.json"]),
        ("./src/", ["src/a.py", "src/lib/b.py"]),
        ("src/lib", ["src/lib/b.py"]),
        ("*.json", ["package-lock.json", "package.json"]),
        ("src/*.py", ["src/a.py"]),
        ("src/?ib", ["src/lib/b.py"]),
        ("s[rx]c/a.py", ["src/a.py"]),
        ("srcx", []),
        (".", ["package-lock.json", "package.json", "src/a.py", "src/lib/b.py"]),
    ],
)
def test_a_copy_source_names_a_file_a_folder_or_a_wildcard(source: str, found: list[str]) -> None:
    files = {name: f"f {name}" for name in
             ("package.json", "package-lock.json", "src/a.py", "src/lib/b.py")}  # fmt: skip
    assert sorted(steps._matches(source, files)) == found
