"""The doctor and config tasks on stand-ins: every check runs, nothing needs a daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from invoke.context import MockContext
from invoke.exceptions import Exit

from compose_tasks import _doctor, _show_config, doctor, show_config
from compose_tasks.docker import engine
from compose_tasks.docker.sdk import Sdk
from compose_tasks.errors import UserError
from compose_tasks.settings import load
from tests.fakes import FakeCli, FakeDocker


def checks_of(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    return {
        check["name"]: check["status"] for check in json.loads(capsys.readouterr().out)["checks"]
    }


def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: FakeCli) -> None:
    """A one-service project the doctor checks through ``cli``."""
    root = tmp_path / "shop"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM busybox:1.36\nCOPY . /app\n")
    (root / "compose.yaml").write_text("services:\n  api:\n    build: .\n")
    settings = load({}, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, cwd=root)
    cli.project = {"name": "shop", "services": {"api": {"build": {"context": str(root)}}}}
    monkeypatch.setattr(_doctor, "settings_of", lambda c: settings)
    monkeypatch.setattr(_doctor, "Runner", lambda: cli)


def test_doctor_runs_every_check_on_a_stand_in_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shop(tmp_path, monkeypatch, FakeCli([], local=["busybox:1.36"]))
    monkeypatch.setattr(engine, "connect", lambda runner, host: Sdk(FakeDocker()))
    doctor.doctor(MockContext(), json=True)
    found = checks_of(capsys)
    assert found["engine"] == "ok" and found["project"] == "ok" and found["compose"] == "ok"
    assert "cache" in " ".join(found) and found["git"] == "warn"  # not a git checkout
    with pytest.raises(Exit):
        doctor.doctor(MockContext(), strict=True)  # the warning fails a strict run


def test_doctor_without_an_engine_fails_that_check_and_skips_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shop(tmp_path, monkeypatch, FakeCli([]))

    def unreachable(runner: object, host: str) -> Sdk:
        raise UserError("cannot reach the Docker engine at the default socket: refused")

    monkeypatch.setattr(engine, "connect", unreachable)
    with pytest.raises(Exit):
        doctor.doctor(MockContext(), json=True)
    found = checks_of(capsys)
    assert (found["engine"], found["cache"]) == ("fail", "skip")


def test_config_shows_each_setting_with_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".env").write_text("INVOKE_STACK_KEEP_IMAGES=3\nAPI_TOKEN=s3cr3t-value\n")
    settings = load({}, environ={}, cwd=tmp_path)
    monkeypatch.setattr(_show_config, "settings_of", lambda c: settings)
    show_config.config(MockContext(), json=True)
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["settings"]}
    assert rows["keep_images"]["value"] == 3
    assert rows["keep_images"]["source"] == "env file .env INVOKE_STACK_KEEP_IMAGES"
    show_config.config(MockContext())
    text = capsys.readouterr().out
    assert "keep_images" in text and "s3cr3t-value" not in text and "API_TOKEN" in text
