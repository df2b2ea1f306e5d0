"""Bad input: one clear line on stderr, exit code 1, no traceback, nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Stack, generated, image_id, invoke


def assert_one_line_error(stderr: str, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_invalid_setting(tmp_path: Path) -> None:
    done = invoke(tmp_path, "build", env={"INVOKE_STACK_DIRTY_SUFFIX": "sometimes"})
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "invalid setting dirty_suffix='sometimes'")
    assert "environment INVOKE_STACK_DIRTY_SUFFIX" in done.stderr


@pytest.mark.engine
@pytest.mark.parametrize(
    ("compose", "args", "env", "expected"),
    [
        (None, (), {}, "no compose file in"),
        ("services:\n  app: [\n", (), {}, "compose config failed: yaml"),
        ("services:\n  app:\n    build: ./app\n", ("-s", "nope"), {}, "unknown service 'nope'"),
        ("services:\n  db:\n    image: x\n", (), {}, "no service with a build section"),
        (None, (), {"COMPOSE_FILE": "missing.yml"}, "compose file not found"),
        (None, (), {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "cannot reach the Docker"),
        (None, (), {"HOME": "/nonexistent-home"}, "Compose v2 is not available"),
    ],
)
def test_bad_project_input(
    stack: Stack, compose: str | None, args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    if compose is None and not env:
        (stack.root / "compose.yaml").unlink()
    elif compose is not None:
        (stack.root / "compose.yaml").write_text(compose)
    done = invoke(stack.root, "build", *args, env=env)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, expected)
    assert generated(stack.root) == []
    assert image_id(f"{stack.image('app')}:latest") is None
