"""Settings precedence, validation and masking (no engine)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from compose_tasks import mask
from compose_tasks.errors import UserError
from compose_tasks.mask import MASK
from compose_tasks.settings import SPECS, Settings, describe, load


def test_defaults(tmp_path: Path) -> None:
    settings = load({}, environ={}, cwd=tmp_path)
    assert settings.project_dir == tmp_path.resolve()
    assert settings.compose_files == ()
    assert settings.commit_arg == "GIT_COMMIT_HASH"
    assert settings.inline_cache is True
    assert settings.sources["inline_cache"] == "default"


def test_precedence_flag_env_dotenv_config_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COMPOSE_PROJECT_NAME=fromdotenv\nINVOKE_STACK_PULL=1\n")
    config = {"project_name": "fromconfig", "branch_tag": True, "pull": False}
    settings = load(config, environ={}, cwd=tmp_path)
    assert settings.project_name == "fromdotenv"
    assert settings.sources["project_name"] == "env file .env COMPOSE_PROJECT_NAME"
    assert settings.pull is True
    assert settings.branch_tag is True
    assert settings.sources["branch_tag"] == "invoke config"

    settings = load(config, environ={"COMPOSE_PROJECT_NAME": "fromenv"}, cwd=tmp_path)
    assert settings.project_name == "fromenv"
    assert settings.sources["project_name"] == "environment COMPOSE_PROJECT_NAME"

    settings = load(config, {"project_name": "fromflag"}, {"COMPOSE_PROJECT_NAME": "x"}, tmp_path)
    assert settings.project_name == "fromflag"
    assert settings.sources["project_name"] == "flag --project-name"


def test_compose_file_and_profiles_lists(tmp_path: Path) -> None:
    environ = {"COMPOSE_FILE": "a.yml:b.yml", "COMPOSE_PROFILES": "web, worker"}
    settings = load({}, environ=environ, cwd=tmp_path)
    assert settings.compose_files == ("a.yml", "b.yml")
    assert settings.profiles == ("web", "worker")
    assert load({"compose_files": ["x.yml"]}, environ={}, cwd=tmp_path).compose_files == ("x.yml",)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COMPOSE_PROJECT_NAME": "Bad Name"}, "project_name='Bad Name' (from environment"),
        ({"INVOKE_STACK_DIRTY_SUFFIX": "maybe"}, "expected true or false"),
        ({"INVOKE_STACK_COMMIT_ARG": "1-bad"}, "expected a build-arg name"),
        ({"INVOKE_STACK_PROJECT_DIR": "nope"}, "not a directory"),
        ({"INVOKE_STACK_COMMIT_ARG": "PATH"}, "not a variable with another meaning"),
        ({"INVOKE_STACK_COMMIT_ARG": "DOCKER_HOST"}, "not a variable with another meaning"),
        ({"INVOKE_STACK_DEPLOY_TIMEOUT": "9" * 40}, "a whole number from 0 to 86400"),
        ({"INVOKE_STACK_KEEP_IMAGES": "-1"}, "a whole number from 0 to 1000"),
        ({"INVOKE_STACK_BUILD_DIR": "/"}, "build_dir='/' (from environment"),
        ({"INVOKE_STACK_BUILD_DIR": ".."}, "resolves to outside the project"),
        ({"INVOKE_STACK_BUILD_DIR": "."}, "resolves to the project directory itself"),
        ({"INVOKE_STACK_BUILD_DIR": "a/../.."}, "resolves to outside the project"),
        ({"INVOKE_STACK_ENV_FILE": "../other.env"}, "env_file='../other.env'"),
        ({"INVOKE_STACK_ENV_FILE": "/etc/passwd"}, "resolves to outside the project"),
    ],
)
def test_invalid_values_name_setting_source_and_allowed(
    tmp_path: Path, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(UserError, match="invalid setting") as info:
        load({}, environ=environ, cwd=tmp_path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_secrets_masked_in_describe_and_text(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_PASSWORD=hunter2hunter2\nAPI_TOKEN=tok-123456\nPORT=8000\n")
    settings = load({}, environ={}, cwd=tmp_path)
    data = describe(settings)
    assert data["env"] == {"API_TOKEN": MASK, "DB_PASSWORD": MASK, "PORT": "8000"}
    assert settings.dotenv["PORT"] == "8000"
    text = mask.active().text("pw=hunter2hunter2 token=tok-123456")
    assert text == f"pw={MASK} token={MASK}"


def test_env_file_setting(tmp_path: Path) -> None:
    (tmp_path / "prod.env").write_text("COMPOSE_PROJECT_NAME=prod\n")
    settings = load({}, environ={"INVOKE_STACK_ENV_FILE": "prod.env"}, cwd=tmp_path)
    assert settings.project_name == "prod"


def test_symlink_escape_is_refused(tmp_path: Path) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "gen").symlink_to(tmp_path)
    with pytest.raises(UserError, match=r"build_dir='gen' .* outside the project"):
        load({"build_dir": "gen"}, environ={}, cwd=tmp_path / "proj")


def test_generated_folders_default_outside_the_project(tmp_path: Path) -> None:
    settings = load({}, environ={"XDG_CACHE_HOME": "/c"}, cwd=tmp_path)
    assert str(settings.build_dir).startswith(f"/c/compose-tasks/{tmp_path.name}-")
    inside = load({"build_dir": "gen/build"}, environ={}, cwd=tmp_path)
    assert inside.build_dir == tmp_path.resolve() / "gen" / "build"


def test_settings_fields_are_the_settings_table() -> None:
    names = [field.name for field in fields(Settings)]
    assert names == [spec.name for spec in SPECS] + ["sources", "dotenv", "cache_dir"]


@pytest.mark.parametrize(
    ("config", "environ", "dotenv", "expected"),
    [
        (
            {"keep_imagse": 3},
            {},
            "",
            "unknown setting keep_imagse (from invoke config cfg.yaml): did you mean keep_images?",
        ),
        (
            {"state_dir": "x"},
            {},
            "",
            "setting state_dir (from invoke config cfg.yaml) was removed: deploy state lives on",
        ),
        (
            {},
            {"INVOKE_STACK_KEEP_IMAGE": "3"},
            "",
            "unknown setting INVOKE_STACK_KEEP_IMAGE (from environment INVOKE_STACK_KEEP_IMAGE): "
            "did you mean INVOKE_STACK_KEEP_IMAGES?",
        ),
        (
            {},
            {"INVOKE_STACK_STATE_DIR": "x"},
            "",
            "setting INVOKE_STACK_STATE_DIR (from environment INVOKE_STACK_STATE_DIR) was removed",
        ),
        (
            {},
            {},
            "INVOKE_STACK_REGISTY=x\n",
            "(from env file .env INVOKE_STACK_REGISTY): did you mean INVOKE_STACK_REGISTRY?",
        ),
        ({"zzzqqq": 1}, {}, "", "unknown setting zzzqqq (from invoke config cfg.yaml): invoke"),
    ],
)
def test_unknown_and_removed_settings_name_key_source_and_nearest(
    tmp_path: Path, config: dict[str, object], environ: dict[str, str], dotenv: str, expected: str
) -> None:
    (tmp_path / ".env").write_text(dotenv)
    origins = {key: "invoke config cfg.yaml" for key in config}
    with pytest.raises(UserError) as error:
        load(config, environ=environ, cwd=tmp_path, origins=origins)
    assert expected in str(error.value)


def test_env_file_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    with pytest.raises(UserError, match="conf is not a regular file"):
        load({}, environ={"INVOKE_STACK_ENV_FILE": "conf"}, cwd=tmp_path)
    assert load({}, environ={"INVOKE_STACK_ENV_FILE": "absent.env"}, cwd=tmp_path).dotenv == {}
