"""Bad input, all of it: exit code 1, one error line on stderr, no traceback, nothing changed.

Each case runs the real task in a committed project. Cases before the engine is reached run in
the unit session; the rest need the engine (compose resolves the project first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compose_tasks.mask import is_secret
from tests.support import Stack, generated, image_id, invoke, sh, tree, user_dirs


@dataclass(frozen=True)
class Case:
    """One bad input: the task and flags, environment, files written first, expected text."""

    args: tuple[str, ...]
    expected: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def case(
    args: str,
    expected: str,
    env: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Case:
    return Case(tuple(args.split()), expected, env or {}, files or {})


def env(name: str, value: str, args: str = "build", expected: str = "") -> Case:
    return case(args, expected or "invalid setting", {name: value})


BAD_YAML = "stack:\n  pull: [\n"
LITERAL_SECRET = "hunter2hunter2"  # noqa: S105 (a secret written in a compose file: shown nowhere)
BUILD_RAN = ("build failed", "could not be pulled")  # these wrote the override (outside)
SETTINGS = {
    # settings from the environment
    "int-not-int": env("INVOKE_STACK_DEPLOY_TIMEOUT", "abc", "config", "deploy_timeout='abc'"),
    "int-huge": env("INVOKE_STACK_DEPLOY_TIMEOUT", "9" * 400, "config", "from 0 to 86400"),
    "lease-under-heartbeat": env(
        "INVOKE_STACK_LOCK_HEARTBEAT", "90", "deploy", "lock_heartbeat=90 (from environment"
    ),
    "int-negative": env("INVOKE_STACK_KEEP_IMAGES", "-3", "config", "from 0 to 1000"),
    "int-float": env("INVOKE_STACK_KEEP_IMAGES", "2.5", "config", "keep_images='2.5'"),
    "bool-word": env("INVOKE_STACK_PULL", "sometimes", "build", "pull='sometimes'"),
    "bool-dirty": env("INVOKE_STACK_DIRTY_SUFFIX", "maybe", "build", "dirty_suffix='maybe'"),
    "bool-inline": env("INVOKE_STACK_INLINE_CACHE", "2", "build", "inline_cache='2'"),
    "bool-branch": env("INVOKE_STACK_BRANCH_TAG", "yes please", "build", "branch_tag="),
    "project-name-case": env("COMPOSE_PROJECT_NAME", "Bad Name", "build", "project_name="),
    "project-name-dollar": env("COMPOSE_PROJECT_NAME", "x$y", "build", "project_name='x$y'"),
    "project-dir-missing": env("INVOKE_STACK_PROJECT_DIR", "nope", "build", "not a directory"),
    "build-dir-root": env("INVOKE_STACK_BUILD_DIR", "/", "clear-caches --yes", "build_dir='/'"),
    "build-dir-parent": env("INVOKE_STACK_BUILD_DIR", "..", "clear-caches --yes", "outside"),
    "build-dir-self": env("INVOKE_STACK_BUILD_DIR", ".", "build", "the project directory itself"),
    "build-dir-dotdot": env("INVOKE_STACK_BUILD_DIR", "a/../../x", "build", "outside the project"),
    "build-dir-abs": env("INVOKE_STACK_BUILD_DIR", "/tmp/elsewhere", "build", "outside"),
    "build-dir-file": env("INVOKE_STACK_BUILD_DIR", "compose.yaml", "build", "is not a folder"),
    "env-file-outside": env("INVOKE_STACK_ENV_FILE", "/etc/passwd", "config", "env_file="),
    "env-file-parent": env("INVOKE_STACK_ENV_FILE", "../x.env", "config", "outside"),
    "orchestrator-k8s": env("INVOKE_STACK_ORCHESTRATOR", "k8s", "deploy", "compose or swarm"),
    "registry-upper": env("INVOKE_STACK_REGISTRY", "Reg.IO/Team", "build", "registry="),
    "commit-arg-path": env("INVOKE_STACK_COMMIT_ARG", "PATH", "build", "another meaning"),
    "commit-arg-home": env("INVOKE_STACK_COMMIT_ARG", "HOME", "build", "another meaning"),
    "commit-arg-docker": env("INVOKE_STACK_COMMIT_ARG", "DOCKER_HOST", "build", "another meaning"),
    "commit-arg-compose": env("INVOKE_STACK_COMMIT_ARG", "COMPOSE_FILE", "build", "meaning"),
    "commit-arg-syntax": env("INVOKE_STACK_COMMIT_ARG", "1-x", "build", "a build-arg name"),
    "commit-arg-empty": env("INVOKE_STACK_COMMIT_ARG", " ", "build", "a build-arg name"),
    # settings from the env file
    "dotenv-bool": case(
        "build",
        "(from env file .env INVOKE_STACK_PULL)",
        files={".env": "INVOKE_STACK_PULL=perhaps\n"},
    ),
    "dotenv-int": case(
        "config", "from 0 to 86400", files={".env": "INVOKE_STACK_DEPLOY_TIMEOUT=1e9\n"}
    ),
    "dotenv-name": case(
        "build", "project_name='UPPER'", files={".env": "COMPOSE_PROJECT_NAME=UPPER\n"}
    ),
    "dotenv-binary": case("config", "cannot read env file", files={".env": "A=\udcff\n"}),
    # invoke config files
    "yaml-malformed": case(
        "-f cfg.yaml config", "invalid invoke configuration", files={"cfg.yaml": BAD_YAML}
    ),
    "yaml-tabs": case(
        "-f cfg.yaml config",
        "invalid invoke configuration",
        files={"cfg.yaml": "stack:\n\tpull: 1\n"},
    ),
    "yaml-list-name": case(
        "-f cfg.yaml config",
        "expected a string",
        files={"cfg.yaml": "stack:\n  project_name: [a]\n"},
    ),
    "yaml-dict-flag": case(
        "-f cfg.yaml config",
        "invalid invoke configuration",
        files={"cfg.yaml": "stack:\n  pull: {a: 1}\n"},
    ),
    "yaml-huge": case(
        "-f cfg.yaml config", "from 0 to 1000", files={"cfg.yaml": "stack:\n  keep_images: 1e400\n"}
    ),
    "yaml-bool-count": case(
        "-f cfg.yaml config",
        "keep_images=True",
        files={"cfg.yaml": "stack:\n  keep_images: true\n"},
    ),
    "yaml-build-dir": case(
        "-f cfg.yaml build", "build_dir='/'", files={"cfg.yaml": "stack:\n  build_dir: /\n"}
    ),
    "yaml-dict-files": case(
        "-f cfg.yaml config",
        "invalid invoke configuration",
        files={"cfg.yaml": "stack:\n  compose_files: {a: 1}\n"},
    ),
    # names that are no setting
    "yaml-unknown-key": case(
        "-f cfg.yaml config",
        "unknown setting keep_imagse (from invoke config cfg.yaml): did you mean keep_images?",
        files={"cfg.yaml": "stack:\n  keep_imagse: 3\n"},
    ),
    "yaml-unknown-build": case(
        "-f cfg.yaml build",
        "did you mean registry?",
        files={"cfg.yaml": "stack:\n  regsitry: 127.0.0.1:5000\n"},
    ),
    "yaml-removed-key": case(
        "-f cfg.yaml history",
        "setting state_dir (from invoke config cfg.yaml) was removed",
        files={"cfg.yaml": "stack:\n  state_dir: .state\n"},
    ),
    "env-unknown": env(
        "INVOKE_STACK_KEEP_IMAGE", "3", "config", "did you mean INVOKE_STACK_KEEP_IMAGES?"
    ),
    "env-unknown-build": env("INVOKE_STACK_PUSHH", "1", "build", "did you mean INVOKE_STACK_PUSH?"),
    "env-unknown-far": env(
        "INVOKE_STACK_ZZZQQQ", "1", "deploy", "invoke config lists the settings"
    ),
    "env-removed": env("INVOKE_STACK_STATE_DIR", ".state", "deploy", "was removed"),
    "dotenv-unknown": case(
        "build",
        "(from env file .env INVOKE_STACK_REGISTY): did you mean INVOKE_STACK_REGISTRY?",
        files={".env": "INVOKE_STACK_REGISTY=127.0.0.1:5000\n"},
    ),
    "dotenv-removed": case(
        "history", "was removed", files={".env": "INVOKE_STACK_STATE_DIR=.state\n"}
    ),
    "env-file-folder": env("INVOKE_STACK_ENV_FILE", "app", "build", "is not a regular file"),
    "cache-size-word": env("INVOKE_STACK_CACHE_SIZE", "lots", "build", "a size such as 10GB"),
    "cache-size-negative": env("INVOKE_STACK_CACHE_SIZE", "-1GB", "config", "cache_size="),
    # command-line values
    "keep-storage-i": case("clear-caches --yes --keep-storage 10i", "invalid size '10i'"),
    "keep-storage-neg": case("clear-caches --yes --keep-storage -5GB", "invalid size"),
    "keep-storage-exp": case("clear-caches --yes --keep-storage 1e9", "invalid size"),
    "keep-storage-word": case("clear-caches --yes --keep-storage lots", "invalid size"),
    "sha-subshell": case("deploy --sha $(x)", "invalid --sha '$(x)'"),
    "sha-path": case("deploy --sha ../../etc", "invalid --sha"),
    "sha-option": case("deploy --sha=-x", "invalid --sha '-x'"),
    "to-space": case("rollback --to=a;b", "invalid --to 'a;b'"),
    "to-long": case(f"rollback --to {'a' * 200}", "invalid --to"),
    "context-option": case("deploy --context -x", "invalid --context '-x'"),
    "context-slash": case("history --context ../x", "invalid --context"),
    "timeout-nan": case("deploy --timeout nan", "invalid --timeout 'nan'"),
    "timeout-inf": case("rollback --timeout 1e999", "invalid --timeout"),
    "timeout-neg": case("deploy --timeout -1", "invalid --timeout"),
    "timeout-word": case("deploy --timeout soon", "invalid --timeout"),
    # git state given by variables
    "commit-subshell": env("GIT_COMMIT_HASH", "$(id)", "build", "invalid GIT_COMMIT_HASH"),
    "commit-space": env("GIT_COMMIT_HASH", "a b", "build", "invalid GIT_COMMIT_HASH"),
    "commit-newline": env("GITHUB_SHA", "abc\ndef", "build", "invalid GITHUB_SHA"),
    "commit-quote": env("CI_COMMIT_SHA", "abc'", "build", "invalid CI_COMMIT_SHA"),
}

ENGINE = {
    # compose files
    "no-compose-file": case("build", "no compose file in", files={"compose.yaml": ""}),
    "compose-yaml": case(
        "build", "compose config failed", files={"compose.yaml": "services:\n  app: [\n"}
    ),
    "compose-secret-error": case(
        "build",
        "compose config failed",
        {"PORT_TOKEN": "s3cr3t-port"},
        files={
            "compose.yaml": "services:\n  app:\n    build: ./app\n    ports: ['${PORT_TOKEN}:80']\n"
        },
    ),
    "compose-missing-file": case("build", "compose file not found", {"COMPOSE_FILE": "nope.yml"}),
    "unknown-service": case("build -s nope", "unknown service 'nope'"),
    "no-build-section": case(
        "build",
        "no service with a build section",
        files={"compose.yaml": "services:\n  db:\n    image: x\n"},
    ),
    "image-only-service": case(
        "build -s db",
        "has no build section",
        files={"compose.yaml": "services:\n  db:\n    image: x\n  app:\n    build: ./app\n"},
    ),
    "missing-context": case(
        "build",
        "is not a folder",
        files={"compose.yaml": "services:\n  app:\n    build: ./nowhere\n"},
    ),
    "missing-dockerfile": case("build", "no Dockerfile at", files={"app/Dockerfile": ""}),
    "unknown-service-with-profiles": case(
        "build -s ghost",
        "unknown service 'ghost'",
        {"COMPOSE_PROFILES": "x"},
        files={"compose.yaml": "services:\n  app:\n    build: ./app\n    profiles: [y]\n"},
    ),
    # image references the engine rejects
    "image-uppercase": case(
        "build",
        "image 'MyOrg/App:1' (in compose.yaml) is not a valid image reference: the repository",
        files={"compose.yaml": "services:\n  app:\n    build: ./app\n    image: MyOrg/App:1\n"},
    ),
    "image-bad-tag": case(
        "build --dry-run",
        "invalid tag '-x'",
        files={"compose.yaml": "services:\n  app:\n    build: ./app\n    image: app:-x\n"},
    ),
    "image-empty-component": case(
        "clear-caches --yes",
        "invalid name component ''",
        files={"compose.yaml": "services:\n  app:\n    build: ./app\n    image: a//b\n"},
    ),
    "image-deploy": case(
        "deploy",
        "must be lowercase",
        files={"compose.yaml": "services:\n  app:\n    build: ./app\n    image: Shop/app\n"},
    ),
    # Dockerfiles the frontend rejects: file:line before anything is built
    "dockerfile-typo": case(
        "build",
        "service 'app': app/Dockerfile:1: unknown instruction FORM",
        files={"app/Dockerfile": "FORM busybox:1.36\n"},
    ),
    "dockerfile-typo-dry-run": case(
        "build --dry-run",
        "app/Dockerfile:2: unknown instruction RUNN",
        files={"app/Dockerfile": "FROM busybox:1.36\nRUNN true\n"},
    ),
    "dockerfile-typo-deploy": case(
        "deploy",
        "app/Dockerfile:2: unknown instruction CPY",
        files={"app/Dockerfile": "FROM busybox:1.36\nCPY a b\n"},
    ),
    "dockerfile-typo-one-service": case(
        "build -s app --dry-run",
        "app/Dockerfile:1: unknown instruction FRM",
        files={"app/Dockerfile": "FRM busybox:1.36\n"},
    ),
    "dockerfile-no-from": case(
        "build", "app/Dockerfile:1: RUN before the first FROM", files={"app/Dockerfile": "RUN x\n"}
    ),
    "dockerfile-no-instructions": case(
        "build", "has no instructions", files={"app/Dockerfile": "# nothing yet\n"}
    ),
    "dockerfile-duplicate-stage": case(
        "build",
        "app/Dockerfile:2: duplicate stage name 'deps'",
        files={"app/Dockerfile": "FROM busybox:1.36 AS deps\nFROM busybox:1.36 AS deps\n"},
    ),
    "dockerfile-from-as": case(
        "build",
        "app/Dockerfile:1: FROM takes an image and optionally AS <name>",
        files={"app/Dockerfile": "FROM busybox:1.36 AS\n"},
    ),
    "dockerfile-stage-name": case(
        "build", "invalid stage name '2nd'", files={"app/Dockerfile": "FROM busybox:1.36 AS 2nd\n"}
    ),
    "dockerfile-copy-one-argument": case(
        "build",
        "app/Dockerfile:2: COPY needs a source and a destination",
        files={"app/Dockerfile": "FROM busybox:1.36\nCOPY deps.txt\n"},
    ),
    "dockerfile-healthcheck": case(
        "build",
        "HEALTHCHECK takes CMD <command> or NONE",
        files={"app/Dockerfile": "FROM busybox:1.36\nHEALTHCHECK wget localhost\n"},
    ),
    "dockerfile-typo-with-a-secret-arg": case(
        "build",
        "unknown instruction FORM",
        files={
            "compose.yaml": "services:\n  app:\n    build:\n      context: ./app\n"
            f"      args: [DB_PASSWORD={LITERAL_SECRET}]\n",
            "app/Dockerfile": f"FORM busybox:1.36\nRUN echo {LITERAL_SECRET}\n",
        },
    ),
    # build sections compose takes that would fail late, inside the build
    "target-missing": case(
        "build --dry-run",
        "service 'app': build.target 'prod' is not a stage of app/Dockerfile (named stages: none)",
        files={"compose.yaml": "services:\n  app:\n    build: {context: ./app, target: prod}\n"},
    ),
    "ssh-key-missing": case(
        "build",
        "ssh key file",
        files={
            "compose.yaml": "services:\n  app:\n    build: {context: ./app, ssh: [k=./nokey]}\n"
        },
    ),
    "from-no-image": case(
        "build --dry-run",
        "reads '127.0.0.1:5000/nosuch/dep:1' (FROM or --from), which is no stage, named context "
        "or image: not on this engine, and its registry has none",
        files={"app/Dockerfile": "FROM 127.0.0.1:5000/nosuch/dep:1\nRUN true\n"},
    ),
    "services-in-a-cycle": case(
        "build --dry-run",
        "services build on each other in a cycle: a -> b -> a",
        files={
            "compose.yaml": "name: cyc\nservices:\n  a:\n    build: ./a\n  b:\n    build: ./b\n",
            "a/Dockerfile": "FROM cyc-b\n",
            "b/Dockerfile": "FROM cyc-a:latest\n",
        },
    ),
    # Dockerfiles that parse but cannot build
    "dockerfile-bad-json": case(
        "build", "build failed", files={"app/Dockerfile": 'FROM busybox:1.36\nCOPY ["a" /b\n'}
    ),
    "dockerfile-failing-run": case(
        "build", "build failed", files={"app/Dockerfile": "FROM busybox:1.36\nRUN exit 3\n"}
    ),
    "dockerfile-crlf-failing": case(
        "build",
        "build failed",
        files={"app/Dockerfile": "\ufeffFROM busybox:1.36\r\nRUN exit 4\r\n"},
    ),
    # the engine and the deploy state
    "engine-unreachable": case(
        "build", "cannot reach the Docker", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    ),
    "engine-ssh-unreachable": case(
        "history",
        "cannot reach the Docker engine at ssh://root@127.0.0.1:1:",
        {"DOCKER_HOST": "ssh://root@127.0.0.1:1"},
    ),
    "engine-ssh-unreachable-build": case(
        "build", "cannot reach the Docker", {"DOCKER_HOST": "ssh://root@127.0.0.1:1"}
    ),
    "compose-missing": case(
        "build",
        "Compose v2 is not available",
        {"HOME": "/nonexistent-home", "DOCKER_CONFIG": "/nonexistent-home/.docker"},
    ),
    "context-unknown": case("deploy --context no-such-context", "unknown docker context"),
    "push-without-registry": case("build --push", "--push needs a registry"),
    "base-image-unpullable": case(
        "build",
        "base image nosuch-base-image:1 is not on this engine and could not be pulled",
        files={"app/Dockerfile": "FROM nosuch-base-image:1\nRUN true\n"},
    ),
}


def run_case(root: Path, item: Case) -> None:
    for name, text in item.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text:
            path.write_text(text, errors="surrogateescape")
        else:
            path.unlink(missing_ok=True)
    if item.files:
        sh("git", "add", "-A", cwd=root)
        sh("git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm",
           "bad input", "--allow-empty", cwd=root)  # fmt: skip
    before = tree(root), tree(Path(user_dirs(root)["XDG_CACHE_HOME"]).parent)
    done = invoke(root, *item.args, env=item.env)
    assert done.returncode == 1, done.stdout[-1500:] + done.stderr[-1500:]
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert item.expected in lines[0]
    for name, value in item.env.items():
        if is_secret(name):
            assert value not in done.stdout + done.stderr
    assert LITERAL_SECRET not in done.stdout + done.stderr
    after = tree(root), tree(Path(user_dirs(root)["XDG_CACHE_HOME"]).parent)
    if not any(words in item.expected for words in BUILD_RAN):
        assert after == before  # nothing written, nothing removed
    else:
        assert after[0] == before[0]  # the project is untouched


def test_the_table_is_large() -> None:
    assert len(SETTINGS) + len(ENGINE) >= 100


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed one-service project that needs no engine to create or remove."""
    root = tmp_path / "proj"
    stack = Stack(root, "badinput")
    root.mkdir()
    stack.write("compose.yaml", "name: badinput\nservices:\n  app:\n    build: ./app\n")
    stack.add_service("app")
    sh("git", "init", "-q", "-b", "main", cwd=root)
    sh("git", "-c", "user.email=t@example.invalid", "-c", "user.name=t", "commit", "-qm", "x",
       "--allow-empty", cwd=root)  # fmt: skip
    sh("git", "add", "-A", cwd=root)
    return root


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_bad_input_before_the_engine(project: Path, name: str) -> None:
    run_case(project, SETTINGS[name])


def project_images(stack: Stack) -> set[str]:
    """The engine's images of this project (by name or compose's label): the engine is shared,
    other builds may add theirs meanwhile."""
    found = set()
    for query in (f"reference={stack.name}*", f"label=com.docker.compose.project={stack.name}"):
        listed = sh("docker", "images", "-q", "--no-trunc", "--filter", query).stdout.split()
        found.update(listed)
    return found


@pytest.mark.engine
@pytest.mark.parametrize("name", sorted(ENGINE))
def test_bad_input_with_the_engine(stack: Stack, name: str) -> None:
    images = project_images(stack)
    run_case(stack.root, ENGINE[name])
    assert image_id(f"{stack.image('app')}:latest") is None
    assert project_images(stack) == images
    assert generated(stack.root) == [] or any(w in ENGINE[name].expected for w in BUILD_RAN)


@pytest.mark.engine
def test_corrupt_history_is_one_line(stack: Stack) -> None:
    assert invoke(stack.root, "history").returncode == 0
    name = f"compose-tasks-history-{stack.name}-bad"
    sh("docker", "volume", "create", "--label", "org.compose-tasks.state=history",
       "--label", f"org.compose-tasks.project={stack.name}",
       "--label", 'org.compose-tasks.entry={"time": "t", "action"', name)  # fmt: skip
    try:
        run_case(stack.root, case("history", "corrupt deploy history on the target"))
    finally:
        sh("docker", "volume", "rm", name)
