"""The Dockerfile reader and the cache lint: each rule with true and false positives."""

from __future__ import annotations

from pathlib import Path

import pytest

from compose_tasks.dockerfile.dockerignore import ignored
from compose_tasks.dockerfile.instructions import (
    dependency_stages,
    first_steps,
    parse,
    syntax_errors,
    target_stage,
)
from compose_tasks.dockerfile.lint import (
    Finding,
    dependency_step,
    lint_dockerfile,
    lint_project,
    lint_service,
)
from compose_tasks.dockerfile.reader import Reader
from tests.support import ROOT


def rules(text: str, commit_arg: str = "GIT_COMMIT_HASH") -> list[tuple[str, int | None]]:
    return [(f.rule, f.line) for f in lint_dockerfile(parse(text), commit_arg)]


# --- the reader --------------------------------------------------------------------------------


def test_continuations_comments_and_line_numbers() -> None:
    parsed = parse(
        "FROM python:3.11 AS base\n"
        "RUN apt-get update \\\n"
        "# a comment inside the continuation\n"
        "\n"
        "    && apt-get install -y curl\n"
        "COPY . .\n"
    )
    run = parsed.instructions[1]
    assert (run.line, run.keyword) == (2, "RUN")
    assert run.args == "apt-get update && apt-get install -y curl"
    assert parsed.instructions[2].line == 6
    assert parsed.stages[0].name == "base"


def test_escape_directive_changes_the_continuation_character() -> None:
    parsed = parse("# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir c:\\ `\n  && echo hi\n")
    assert parsed.directives == {"escape": "`"}
    assert parsed.instructions[1].args == "dir c:\\ && echo hi"


def test_directives_only_at_the_top() -> None:
    parsed = parse("FROM a\n# escape=`\nRUN echo \\\n  hi\n")
    assert parsed.directives == {}
    assert parsed.instructions[1].args == "echo hi"


def test_heredoc_bodies_belong_to_their_instruction() -> None:
    parsed = parse(
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11\n"
        "RUN <<EOF\n"
        "pip install -r requirements.txt\n"
        "ARG NOT_AN_INSTRUCTION\n"
        "EOF\n"
        "COPY <<-'CONF' /etc/app.conf\n"
        "\tkey = value\n"
        "\tCONF\n"
        'CMD ["python3"]\n'
    )
    keywords = [(item.line, item.keyword) for item in parsed.instructions]
    assert keywords == [(2, "FROM"), (3, "RUN"), (7, "COPY"), (10, "CMD")]
    assert "pip install" in parsed.instructions[1].command()
    assert parsed.instructions[2].heredocs == ("\tkey = value",)


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffFROM a\nARG GIT_COMMIT_HASH\nRUN pip install x\n",  # a byte-order mark
        "FROM a\r\nARG GIT_COMMIT_HASH\r\nRUN pip install x\r\n",  # CRLF line ends
        'FROM a\nRUN echo "<<EOF"\nARG GIT_COMMIT_HASH\nRUN pip install x\n',  # quoted marker
        "FROM a\nRUN echo '<<EOF' \\\n  && true\nARG GIT_COMMIT_HASH\nRUN pip install x\n",
    ],
)
def test_odd_but_valid_files_keep_their_findings(text: str) -> None:
    assert ("commit-arg", text.replace("\r", "").split("\n").index("ARG GIT_COMMIT_HASH") + 1) in (
        rules(text)
    )


def test_flags_json_form_and_arg_names() -> None:
    parsed = parse(
        "ARG BASE=python:3.11\n"
        "FROM $BASE\n"
        "COPY --from=build --chown=1:1 /out /app\n"
        'RUN ["pip", "install", "flask"]\n'
        "ARG A=1 B\n"
    )
    copy, run, arg = parsed.instructions[2:]
    assert copy.flag("from") == "build" and copy.flag("link") is None
    assert run.command() == "pip install flask"
    assert arg.arg_names() == ["A", "B"]
    assert [item.stage for item in parsed.instructions] == [-1, 0, 0, 0, 0]


# --- commit-arg --------------------------------------------------------------------------------

EARLY_ARG = """\
FROM python:3.11
ARG GIT_COMMIT_HASH
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
"""


def test_commit_arg_before_dependency_install_is_flagged() -> None:
    findings = lint_dockerfile(parse(EARLY_ARG, "app/Dockerfile"), "GIT_COMMIT_HASH")
    assert [(f.rule, f.line) for f in findings] == [("commit-arg", 2)]
    assert str(findings[0]).startswith("app/Dockerfile:2: ARG GIT_COMMIT_HASH comes before")
    assert "line 4 (pip install)" in str(findings[0])


def test_commit_arg_after_dependency_install_is_fine() -> None:
    assert rules("FROM node:20\nCOPY package*.json ./\nRUN npm ci\nARG GIT_COMMIT_HASH\n") == []


def test_commit_arg_name_is_configurable() -> None:
    text = "FROM node:20\nARG BUILD_SHA\nRUN npm ci\n"
    assert rules(text) == []
    assert rules(text, "BUILD_SHA") == [("commit-arg", 2)]


def test_global_arg_only_counts_when_redeclared_in_the_stage() -> None:
    global_only = "ARG GIT_COMMIT_HASH\nFROM node:20\nRUN npm ci\n"
    assert rules(global_only) == []
    redeclared = "ARG GIT_COMMIT_HASH\nFROM node:20\nARG GIT_COMMIT_HASH\nRUN npm ci\n"
    assert rules(redeclared) == [("commit-arg", 3)]


def test_arg_scope_is_per_stage() -> None:
    text = (
        "FROM golang:1.22 AS build\n"
        "ARG GIT_COMMIT_HASH\n"
        "RUN go build -ldflags=-X=main.commit=$GIT_COMMIT_HASH ./...\n"
        "FROM python:3.11\n"
        "RUN pip install flask\n"
        "COPY --from=build /app /app\n"
    )
    assert rules(text) == []
    assert rules(text.replace("RUN go build", "RUN go mod download && go build")) == [
        ("commit-arg", 2)
    ]


def test_dependency_install_inside_a_heredoc_counts() -> None:
    text = (
        "FROM debian\nARG GIT_COMMIT_HASH\nRUN <<EOF\napt-get update\napt-get install -y git\nEOF\n"
    )
    assert rules(text) == [("commit-arg", 2)]


def test_any_run_after_the_arg_that_does_not_use_it_is_flagged() -> None:
    text = "FROM node:20\nARG GIT_COMMIT_HASH\n# RUN npm ci\nRUN ./setup.sh\n"
    (finding,) = lint_dockerfile(parse(text), "GIT_COMMIT_HASH")
    assert (finding.rule, finding.line) == ("commit-arg", 2)
    assert "the RUN at line 4, which does not use it" in finding.message
    uses = "FROM node:20\nARG GIT_COMMIT_HASH\nRUN echo ${GIT_COMMIT_HASH} > /v\n"
    assert rules(uses) == []


def test_stages_that_are_not_built_are_not_linted() -> None:
    text = (
        "FROM node:20 AS test\nARG GIT_COMMIT_HASH\nRUN npm ci\n"
        "FROM node:20 AS app\nCOPY package.json .\nRUN npm ci\n"
    )
    assert rules(text) == []
    findings = lint_dockerfile(parse(text), "GIT_COMMIT_HASH", target="test")
    assert [(f.rule, f.line) for f in findings] == [("commit-arg", 2)]


def test_copy_all_inherited_from_a_parent_stage() -> None:
    text = "FROM node:20 AS src\nCOPY . .\nFROM src AS deps\nRUN npm ci\n"
    assert rules(text) == [("copy-all", 2)]


def test_an_unnamed_dependency_stage_cannot_be_cached() -> None:
    text = "FROM golang:1.22\nRUN go mod download\nFROM scratch\nCOPY --from=0 /app /app\n"
    findings = lint_dockerfile(parse(text), "GIT_COMMIT_HASH")
    assert [(f.rule, f.line) for f in findings] == [("stage-cache", 1)]
    assert "FROM golang:1.22 AS <name>" in findings[0].remedy


# --- copy-all ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "copy",
    ["COPY . .", "COPY . /app", "ADD . /src", "COPY --chown=app:app ./ /app", 'COPY [".", "/app"]'],
)
def test_copy_of_the_whole_context_before_install_is_flagged(copy: str) -> None:
    assert rules(f"FROM node:20\nWORKDIR /app\n{copy}\nRUN npm ci\n") == [("copy-all", 3)]


@pytest.mark.parametrize(
    "text",
    [
        "FROM node:20\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\n",
        "FROM node:20 AS deps\nRUN npm ci\nFROM deps\nCOPY --from=deps . .\nRUN npm ci\n",
        "FROM node:20\nCOPY . .\nRUN npm run build\n",
        "FROM node:20\nCOPY src/ ./src\nRUN yarn install\n",
    ],
)
def test_copy_all_false_positives(text: str) -> None:
    assert rules(text) == []


@pytest.mark.parametrize(
    ("command", "installs"),
    [
        ("pip install -r requirements.txt", True),
        ("python3 -m pip install --no-cache-dir .", True),
        ("poetry install --no-root", True),
        ("uv sync --frozen", True),
        ("yarn", True),
        ("pnpm install --frozen-lockfile", True),
        ("apk add --no-cache git", True),
        ("bundle install", True),
        ("sh install-deps.sh", True),
        ("python3 install_deps.py reqs.in", True),
        ("npm run build", False),
        ("echo install the app", False),
        ("python3 -m compileall app", False),
        ("go build ./...", False),
    ],
)
def test_dependency_step_detection(command: str, installs: bool) -> None:
    run = parse(f"FROM x\nRUN {command}\n").instructions[1]
    assert bool(dependency_step(run)) is installs


# --- secret-arg --------------------------------------------------------------------------------


def test_secret_looking_args_are_flagged() -> None:
    text = "FROM node:20\nARG NPM_TOKEN\nARG API_URL DB_PASSWORD=x\nARG TOKENIZER_MODEL\n"
    findings = lint_dockerfile(parse(text), "GIT_COMMIT_HASH")
    assert [(f.rule, f.line, f.subject) for f in findings] == [
        ("secret-arg", 2, "NPM_TOKEN"),
        ("secret-arg", 3, "DB_PASSWORD"),
    ]
    assert "build secret" in findings[0].remedy


def test_secret_compose_args_not_declared_in_the_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM node:20\nARG NPM_TOKEN\n")
    (tmp_path / ".dockerignore").write_text(".git\n")
    build = {"context": str(tmp_path), "args": {"NPM_TOKEN": "x", "SENTRY_AUTH_TOKEN": "y"}}
    found = [
        (f.rule, f.subject) for f in lint_service("web", build, "GIT_COMMIT_HASH", Reader(tmp_path))
    ]
    assert found == [("secret-arg", "NPM_TOKEN"), ("secret-arg", "SENTRY_AUTH_TOKEN")]


# --- dockerignore ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "excluded"),
    [
        ([".git"], True),
        (["/.git/"], True),
        (["**/.git"], True),
        (["*"], True),
        (["./.git"], True),
        (["node_modules", "*.pyc"], False),
        ([".git", "!.git/HEAD"], False),
        (["# .git"], False),
        ([".gitignore"], False),
    ],
)
def test_dockerignore_matching(lines: list[str], excluded: bool) -> None:
    assert all(ignored(lines, path) for path in (".git", ".git/HEAD")) is excluded


def _context(tmp_path: Path, ignore: str | None, git: bool = True) -> list[Finding]:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    if git:
        (tmp_path / ".git").mkdir()
    if ignore is not None:
        (tmp_path / ".dockerignore").write_text(ignore)
    return lint_service("app", {"context": str(tmp_path)}, "GIT_COMMIT_HASH", Reader(tmp_path))


def test_missing_dockerignore_is_flagged(tmp_path: Path) -> None:
    findings = _context(tmp_path, None)
    assert [f.rule for f in findings] == ["dockerignore"]
    assert findings[0].message.startswith("no .dockerignore: COPY . /app (line 2) sends .git")


def test_dockerignore_only_matters_for_broad_copies(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "src").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY package.json app.py /app/\n")
    build = {"context": str(tmp_path)}
    assert lint_service("app", build, "GIT_COMMIT_HASH", Reader(tmp_path)) == []
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCOPY src /app/src\n")
    (finding,) = lint_service("app", build, "GIT_COMMIT_HASH", Reader(tmp_path))
    assert "sends .git, node_modules" in finding.message


def test_dockerignore_letting_git_in_is_flagged(tmp_path: Path) -> None:
    findings = _context(tmp_path, "node_modules\n")
    assert [(f.rule, f.path) for f in findings] == [("dockerignore", ".dockerignore")]


def test_dockerignore_is_fine_when_it_excludes_git_or_there_is_no_git(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert _context(tmp_path / "a", ".git\n") == []
    assert _context(tmp_path / "b", "node_modules\n", git=False) == []


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    (tmp_path / "web.Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "web.Dockerfile.dockerignore").write_text(".git\n")
    (tmp_path / ".git").mkdir()
    build = {"context": str(tmp_path), "dockerfile": "web.Dockerfile"}
    assert lint_service("web", build, "GIT_COMMIT_HASH", Reader(tmp_path)) == []


def test_unreadable_dockerfile_and_remote_context(tmp_path: Path) -> None:
    missing = lint_service("app", {"context": str(tmp_path)}, "GIT_COMMIT_HASH", Reader(tmp_path))
    assert [f.rule for f in missing] == ["unreadable"]
    remote = {"context": "https://github.com/example/app.git#main"}
    assert lint_service("app", remote, "GIT_COMMIT_HASH", Reader(tmp_path)) == []


def test_inline_dockerfile_and_shared_dockerfiles_count_once(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text(".git\n")
    (tmp_path / "Dockerfile").write_text(EARLY_ARG)
    project = {
        "services": {
            "a": {"build": {"context": str(tmp_path)}},
            "b": {"build": {"context": str(tmp_path)}},
            "c": {"build": {"context": str(tmp_path), "dockerfile_inline": EARLY_ARG}},
        }
    }
    findings = lint_project(project, ["a", "b", "c"], "GIT_COMMIT_HASH", Reader(tmp_path))
    assert [(f.path, f.line) for f in findings] == [("Dockerfile", 2), ("c: dockerfile_inline", 2)]


def test_the_demo_stack_is_clean() -> None:
    for service in ("backend", "frontend"):
        context = ROOT / "demo" / service
        assert (
            lint_service(service, {"context": str(context)}, "GIT_COMMIT_HASH", Reader(ROOT)) == []
        )


MULTI = """\
FROM node:20 AS deps
COPY package.json ./
RUN npm ci
FROM deps AS build
COPY . .
RUN npm run build
FROM maven:3 AS unused
RUN mvn dependency:go-offline
FROM busybox:1.36 AS tools
FROM nginx:1.27
COPY --from=build /app/dist /usr/share/nginx/html
RUN --mount=type=bind,from=tools,source=/bin/sh,target=/x true
"""


def test_dependency_stages_follow_from_copy_from_and_mounts() -> None:
    parsed = parse(MULTI)
    names = [stage.name for stage in dependency_stages(parsed)]
    assert names == ["build", "tools", "deps"]
    assert [s.name for s in dependency_stages(parsed, "build")] == ["deps"]
    assert dependency_stages(parsed, "deps") == []
    assert dependency_stages(parsed, "nope") == []
    assert target_stage(parsed, "BUILD") is not None


def test_copy_from_an_index_and_an_image() -> None:
    parsed = parse(
        "FROM a\nRUN x\nFROM b AS second\nCOPY --from=0 /a /a\nCOPY --from=img:1 /b /b\n"
    )
    assert [stage.index for stage in dependency_stages(parsed)] == [0]


def test_builds_share_steps_only_when_a_stage_starts_alike() -> None:
    def steps(text: str, target: str = "") -> frozenset[str]:
        return first_steps(parse(text), target)

    api = steps("FROM busybox:1.36\nLABEL a=1\nWORKDIR /api\nRUN make\n")
    web = steps("FROM busybox:1.36\nWORKDIR /web\nRUN make\n")
    worker = steps("FROM busybox:1.36\nENV ROLE=worker\nWORKDIR /api\nRUN other\n")
    assert not api & web  # only the base image in common: nothing shared
    assert api & worker  # same first step: may share (ENV is not compared; errs to sharing)
    assert not steps('FROM busybox:1.36\nCMD ["sh"]\n')  # no step of its own

    multi = "FROM node:20 AS deps\nCOPY package.json .\nRUN npm ci\nFROM deps AS build\n"
    multi += "COPY . .\nRUN npm run build\nFROM nginx:1\nCOPY --from=build /dist /srv\n"
    final, deps_only = steps(multi), steps(multi, "deps")
    assert len(final) == 3 and deps_only < final  # a stage target shares its stage
    assert not final & steps(multi.replace("package.json", "yarn.lock"))  # differs from the root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FORM busybox:1.36\n", [(1, "unknown instruction FORM")]),
        ("RUN true\n", [(1, "RUN before the first FROM (only ARG may come first)")]),
        ("ARG V=1\nFROM a:$V AS x\nFROM b AS X\n", [(3, "duplicate stage name 'X'")]),
        ("FROM a\n\nFROM b AS\n", [(3, "FROM takes an image and optionally AS <name>")]),
        ("FROM a as 1x\n", [(1, "invalid stage name '1x' (a letter, then letters, digits, "
                                "_ - .)")]),
        ("FROM a\nCOPY onlyone\nEXPOSE\n", [(2, "COPY needs a source and a destination"),
                                            (3, "EXPOSE needs an argument")]),
        ("FROM a\nHEALTHCHECK --interval=3s x\n", [(2, "HEALTHCHECK takes CMD <command> or NONE")]),
        ("FROM a\nONBUILD FROM b\n", [(2, "ONBUILD cannot trigger FROM")]),
        ("FROM a\nSHELL sh -c\n", [(2, 'SHELL takes the JSON form (SHELL ["/bin/sh", "-c"])')]),
        ("", [(1, "the Dockerfile has no instructions")]),
        ("# only a comment\n", [(1, "the Dockerfile has no instructions")]),
        ("# syntax=docker/dockerfile:1-labs\nFORM x\n", []),  # another frontend's rules
        ("\ufeffFROM --platform=linux/amd64 a AS b\r\nRUN exit 4\r\n", []),
        ("FROM a\nCOPY <<EOF /x\nhi\nEOF\nonbuild run true\nHEALTHCHECK NONE\n", []),
        ('FROM a\nCOPY ["a" /b\nWORKDIR /my dir\nUSER 1:1\nCMD\n', []),  # fails later, or runs
    ],
)  # fmt: skip
def test_dockerfile_syntax_errors_the_frontend_rejects(
    text: str, expected: list[tuple[int, str]]
) -> None:
    assert syntax_errors(parse(text)) == expected
