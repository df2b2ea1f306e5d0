"""Every docker and compose command line, from plain data."""

from __future__ import annotations

from pathlib import Path

from compose_tasks.docker import commands
from compose_tasks.settings import load


def test_compose_argv_has_every_part_in_order() -> None:
    argv = commands.compose("/p", ["a.yml", "b.yml"], "shop", ["web", "jobs"], "/p/prod.env")
    assert argv == [
        "docker", "compose", "--project-directory", "/p", "-f", "a.yml", "-f", "b.yml",
        "-p", "shop", "--profile", "web", "--profile", "jobs", "--env-file", "/p/prod.env",
    ]  # fmt: skip
    assert commands.compose("/p", []) == ["docker", "compose", "--project-directory", "/p"]


def test_compose_of_settings_keeps_profiles_and_an_explicit_env_file(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("X=1\n")
    environ = {"COMPOSE_PROFILES": "web", "INVOKE_STACK_ENV_FILE": "prod.env"}
    settings = load({}, environ=environ, cwd=tmp_path)
    argv = commands.compose_of(settings, [tmp_path / "compose.yaml"])
    assert argv[-4:] == ["--profile", "web", "--env-file", str(tmp_path.resolve() / "prod.env")]
    plain = load({}, environ={}, cwd=tmp_path)
    (tmp_path / ".env").write_text("X=1\n")
    assert "--env-file" not in commands.compose_of(plain, [])  # compose reads .env itself


def test_context_host_is_an_argv_not_a_shell_string() -> None:
    assert commands.context_host("prod; rm -rf /")[3] == "prod; rm -rf /"


def test_a_stack_deploy_through_a_registry_pins_digests_and_passes_credentials() -> None:
    assert commands.stack_deploy("s.yml", "shop", True)[3:7] == [
        "--prune", "--resolve-image", "always", "--with-registry-auth",
    ]  # fmt: skip
    assert commands.stack_deploy("s.yml", "shop", False)[3:] == [
        "--prune", "--resolve-image", "never", "-c", "s.yml", "shop",
    ]  # fmt: skip
