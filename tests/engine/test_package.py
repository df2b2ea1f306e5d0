"""The wheel installs in a fresh virtualenv and runs from another directory."""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT, Stack, image_id, sh, user_dirs

pytestmark = [pytest.mark.engine, pytest.mark.packaging]
LOCAL = (".git", ".nox", "build", "dist", "*.egg-info", "__pycache__", "*cache", "bench-results")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel built from a copy of the checkout installed in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building writes build/ and *.egg-info/ in place
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*LOCAL))
    wheels = tmp / "wheels"
    built = sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
               str(source), check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("compose_tasks-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"compose_tasks", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    venv = tmp / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    installed = sh(str(venv / "bin" / "pip"), "install", "-q", str(wheel), check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


def test_wheel_installs_and_plans_a_project_elsewhere(stack: Stack, wheel_venv: Path) -> None:
    binary = str(wheel_venv / "bin" / "compose-tasks")
    version = sh(binary, "--version", cwd=stack.root)
    assert version.stdout.strip().startswith("compose-tasks 0.")
    dry = sh(binary, "build", "--dry-run", cwd=stack.root, check=False)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"service app: builds {stack.image('app')}:" in dry.stdout
    assert "cache_from: !override" in dry.stdout
    python = str(wheel_venv / "bin" / "python")
    nothing = sh(python, "-c", "import tasks", cwd=stack.root.parent, check=False)
    assert "No module named 'tasks'" in nothing.stderr  # the wheel installs no top-level tasks


USER_TASKS = """\
from invoke import Collection, task

from compose_tasks import ns as stack


@task
def hello(c):
    print("hello from the project's own tasks")


ns = Collection(hello)
ns.add_collection(stack, name="stack")
"""


def test_a_project_adds_the_collection_to_its_own_tasks(stack: Stack, wheel_venv: Path) -> None:
    stack.write("tasks.py", USER_TASKS)
    stack.write("invoke.yaml", "stack:\n  keep_images: 3\n")
    sha = stack.commit("the project's own tasks")
    invoke = str(wheel_venv / "bin" / "invoke")
    env = {**os.environ, **user_dirs(stack.root), "INVOKE_STACK_DEPLOY_TIMEOUT": "77"}
    listed = sh(invoke, "--list", cwd=stack.root, env=env)
    assert {"hello", "stack.build", "stack.clear-caches", "stack.deploy"} <= {
        line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()
    }
    shown = sh(invoke, "stack.config", cwd=stack.root, env=env, check=False)
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.strip()}
    assert " 3 " in lines["keep_images"] and "invoke config" in lines["keep_images"]
    assert (
        " 77 " in lines["deploy_timeout"]
        and "INVOKE_STACK_DEPLOY_TIMEOUT" in lines["deploy_timeout"]
    )
    built = sh(invoke, "stack.build", cwd=stack.root, env=env, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    assert image_id(f"{stack.image('app')}:{sha[:12]}") is not None
    assert sh(invoke, "hello", cwd=stack.root, env=env).stdout.startswith("hello from")


def test_an_editable_install_runs_the_command_too(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "source"  # editable installs write *.egg-info next to the code
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*LOCAL))
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    installed = sh(str(venv / "bin" / "pip"), "install", "-q", "-e", str(source), check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    binary = str(venv / "bin" / "compose-tasks")
    dry = sh(binary, "build", "--dry-run", cwd=stack.root, check=False)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"service app: builds {stack.image('app')}:" in dry.stdout
