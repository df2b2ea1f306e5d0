"""Reading the resolved project: the JSON form, and the YAML form where compose cannot print
JSON (compose 2.40 on an ssh key entry)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from compose_tasks.docker.compose import load_project
from compose_tasks.docker.runner import Result, Runner
from compose_tasks.errors import UserError

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


class Compose(Runner):
    """``compose config``: JSON fails with ``json_error``; YAML prints ``yaml`` (or fails)."""

    def __init__(self, json_error: str, yaml: str | None) -> None:
        super().__init__()
        self.json_error, self.yaml = json_error, yaml
        self.calls: list[list[str]] = []

    def run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Result:
        self.calls.append(list(argv))
        if "json" in argv:
            return Result(tuple(argv), 1, "", self.json_error)
        if self.yaml is None:
            return Result(tuple(argv), 1, "", "yaml failed too")
        return Result(tuple(argv), 0, self.yaml, "")


def test_a_project_compose_cannot_print_as_json_is_read_from_yaml() -> None:
    runner = Compose(SSH_ERROR, YAML)
    data = load_project(runner, ["docker", "compose"], {})
    assert data["services"]["app"]["build"]["ssh"] == ["mykey=/p/id_rsa", "default"]
    assert [call[-1] for call in runner.calls] == ["json", "config"]


def test_a_project_compose_rejects_is_its_first_error() -> None:
    runner = Compose('service "app" refers to undefined network x', None)
    with pytest.raises(UserError, match='compose config failed: service "app" refers'):
        load_project(runner, ["docker", "compose"], {})
