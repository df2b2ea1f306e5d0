"""Affected-only builds on a real engine: each kind of build input, changed alone, rebuilds
exactly the services it feeds; the others are re-tagged from their last build, and with
nothing to build compose is not run at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support import BASE_IMAGE, Stack, build_json, services, sh

pytestmark = pytest.mark.engine

SHARED = f"""\
FROM {BASE_IMAGE} AS base
COPY . /app
FROM base AS final
ARG MODE=x
ARG GIT_COMMIT_HASH=unknown
RUN echo "$MODE $GIT_COMMIT_HASH" > /version
"""


def named_contexts() -> bool:
    """Whether the engine's BuildKit takes ``additional_contexts`` (20.10's does not)."""
    version = sh("docker", "version", "--format", "{{.Server.Version}}").stdout
    return int(version.split(".")[0]) >= 23


@pytest.fixture
def three(stack: Stack) -> Iterator[Stack]:
    """``a`` and ``b`` share one Dockerfile; ``c`` has its own, a base image of the project's
    own and (where BuildKit takes them) a named context."""
    base = f"{stack.name}-base:1"
    extra = "      additional_contexts: {extra: ./extra}\n" if named_contexts() else ""
    copy = "COPY --from=extra . /extra\n" if extra else ""
    sh("docker", "tag", BASE_IMAGE, base)
    stack.write(
        "compose.yaml",
        f"name: {stack.name}\nservices:\n"
        "  a:\n    build:\n      context: ./a\n      dockerfile: ../shared/Dockerfile\n"
        "      target: final\n      args: {MODE: '${MODE:-x}'}\n"
        "  b:\n    build:\n      context: ./b\n      dockerfile: ../shared/Dockerfile\n"
        "      args: {LEVEL: '1'}\n"
        f"  c:\n    build:\n      context: ./c\n{extra}",
    )
    stack.write("shared/Dockerfile", SHARED)
    # contents of this stack's own: no step of an earlier run's build can match (BuildKit
    # keeps those steps after their images are gone)
    stack.write("a/main.py", f"print('a {stack.name}')\n")
    stack.write("b/main.py", f"print('b {stack.name}')\n")
    stack.write("b/.dockerignore", "*.log\n")
    stack.write("c/Dockerfile", f"FROM {base}\nCOPY . /app\n{copy}")
    stack.write("c/main.py", f"print('c {stack.name}')\n")
    stack.write("extra/data.txt", "1\n")
    stack.commit("three services")
    yield stack
    sh("docker", "image", "rm", "-f", base, f"{stack.name}-base:2", check=False)


def compose(stack: Stack) -> str:
    return (stack.root / "compose.yaml").read_text()


def built(stack: Stack) -> set[str]:
    """``invoke build --affected``: the services compose built (the rest were re-tagged)."""
    result = build_json(stack.root, "--affected")
    rows = services(result)
    reused = {name for name, row in rows.items() if row["reused"]}
    for name in reused:  # a reused image is this commit's image too
        ref = rows[name]["image"]
        assert sh("docker", "image", "inspect", ref, check=False).returncode == 0, ref
    names = set(rows) - reused
    argv = result["plan"]["argv"]
    assert sorted(name for name in rows if name in argv) == sorted(names)
    return names


def test_each_input_rebuilds_exactly_the_services_it_feeds(three: Stack) -> None:
    stack = three
    assert built(stack) == {"a", "b", "c"}
    sh("git", "commit", "--allow-empty", "-qm", "nothing changed", cwd=stack.root)
    assert built(stack) == set()  # new commit, same inputs: compose is not run
    steps: list[tuple[str, Callable[[], None], set[str]]] = [
        ("a context file", lambda: stack.write("a/main.py", "print('a2')\n"), {"a"}),
        ("a file .dockerignore excludes", lambda: stack.write("b/debug.log", "x\n"), set()),
        ("an untracked new file", lambda: stack.write("c/new.py", "x\n"), {"c"}),
        ("the shared Dockerfile", lambda: stack.write("shared/Dockerfile", SHARED + "\n# x\n"),
         {"a", "b"}),
        (".env interpolated into an arg", lambda: stack.write(".env", "MODE=y\n"), {"a"}),
        ("a compose arg", lambda: stack.write(
            "compose.yaml", compose(stack).replace("LEVEL: '1'", "LEVEL: '2'")), {"b"}),
        ("the target", lambda: stack.write(
            "compose.yaml", compose(stack).replace("target: final", "target: base")),
         {"a"}),
    ]  # fmt: skip
    if named_contexts():
        steps.append(("a named context", lambda: stack.write("extra/data.txt", "2\n"), {"c"}))
    for what, change, expected in steps:
        change()
        assert built(stack) == expected, what
    # a base image re-tagged to new content
    stack.write("newbase/Dockerfile", f"FROM {BASE_IMAGE}\nRUN echo 2 > /base\n")
    sh("docker", "build", "-q", "-t", f"{stack.name}-base:2", str(stack.root / "newbase"))
    sh("docker", "tag", f"{stack.name}-base:2", f"{stack.name}-base:1")
    assert built(stack) == {"c"}, "a base image re-tagged"


def test_the_plan_predicts_each_step_and_an_unchanged_commit_is_not_built(three: Stack) -> None:
    stack = three
    first = services(build_json(stack.root))
    assert all(row["exact"] for row in first.values()), first  # nothing known: all rebuilt
    same = services(build_json(stack.root))
    assert {name: (row["reused"], row["steps"]) for name, row in same.items()} == {
        name: (row["image"], 0) for name, row in first.items()
    }  # this commit's images, from the same inputs: not built, compose not run
    stack.write("a/main.py", f"print('a2 {stack.name}')\n")
    stack.commit("a changed")
    plan = {
        s["name"]: s["prediction"] for s in build_json(stack.root, "--dry-run")["plan"]["services"]
    }
    assert plan["a"]["why"] == "changed main.py"
    assert plan["a"]["first"].startswith("[base 2/2] COPY . /app")
    assert plan["b"]["why"] == "changed: GIT_COMMIT_HASH"  # its RUN sees the commit arg
    assert plan["b"]["rebuilt"] == ["final 1"]
    assert plan["c"]["rebuilt"] == []  # no step sees the commit: all from cache
    rows = services(build_json(stack.root))
    assert {name: row["exact"] for name, row in rows.items()} == {"a": True, "b": True, "c": True}
    assert rows["b"]["cached"] == rows["b"]["steps"] - 1


def test_the_first_affected_build_after_ordinary_builds_reuses_their_images(
    three: Stack,
) -> None:
    """Ordinary builds record the digest ``--affected`` compares (the commit arg left out)."""
    stack = three
    ordinary = services(build_json(stack.root))
    assert not any(row["reused"] for row in ordinary.values())
    stack.write("a/main.py", f"print('a3 {stack.name}')\n")
    stack.commit("a changed")
    assert built(stack) == {"a"}  # b and c: the ordinary build's images, re-tagged
