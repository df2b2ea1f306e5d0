"""Reading the resolved project: the JSON form, and the YAML form where compose cannot print
JSON (compose 2.40 on an ssh key entry)."""

from __future__ import annotations

import pytest

from compose_tasks.docker.compose import load_project
from compose_tasks.docker.runner import Result
from compose_tasks.errors import UserError
from tests.fakes import FakeCli

SSH_ERROR = "json: error calling MarshalJSON for type types.SSHKey: invalid character ':'"
YAML = """\
name: shop
services:
  app:
    build:
      context: /p/app
      dockerfile: Dockerfile
      ssh:
        - 'mykey: /p/id_rsa'
        - default
"""


def compose(json_error: str, yaml: str | None) -> FakeCli:
    """``compose config``: JSON fails with ``json_error``; YAML prints ``yaml`` (or fails)."""
    printed = Result((), 0, yaml, "") if yaml is not None else Result((), 1, "", "yaml failed too")
    return FakeCli(
        answers={"docker compose config --format json": Result((), 1, "", json_error),
                 "docker compose config": printed}
    )  # fmt: skip


def test_a_project_compose_cannot_print_as_json_is_read_from_yaml() -> None:
    runner = compose(SSH_ERROR, YAML)
    data = load_project(runner, ["docker", "compose"], {})
    assert data["services"]["app"]["build"]["ssh"] == ["mykey=/p/id_rsa", "default"]
    assert [call[-1] for call in runner.calls] == ["json", "config"]


def test_a_project_compose_rejects_is_its_first_error() -> None:
    runner = compose('service "app" refers to undefined network x', None)
    with pytest.raises(UserError, match='compose config failed: service "app" refers'):
        load_project(runner, ["docker", "compose"], {})
