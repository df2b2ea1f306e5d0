"""The wheel installs in a fresh virtualenv and runs from another directory."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, Stack, sh

pytestmark = [pytest.mark.engine, pytest.mark.packaging]
LOCAL = (".git", ".nox", "build", "dist", "*.egg-info", "__pycache__", "*cache", "bench-results")


def test_wheel_installs_and_plans_a_project_elsewhere(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info/ in place
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL))
    wheels = tmp_path / "wheels"
    built = sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
               str(source), check=False)  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("compose_tasks-*.whl")
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    installed = sh(str(venv / "bin" / "pip"), "install", "-q", str(wheel), check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    binary = str(venv / "bin" / "compose-tasks")
    version = sh(binary, "--version", cwd=stack.root)
    assert version.stdout.strip().startswith("compose-tasks 0.")
    dry = sh(binary, "build", "--dry-run", cwd=stack.root, check=False)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"service app: builds {stack.image('app')}:" in dry.stdout
    assert "cache_from: !override" in dry.stdout


def test_an_editable_install_runs_the_command_too(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "source"  # editable installs write *.egg-info next to the code
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LOCAL))
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", str(venv))
    installed = sh(str(venv / "bin" / "pip"), "install", "-q", "-e", str(source), check=False)
    assert installed.returncode == 0, installed.stderr[-2000:]
    binary = str(venv / "bin" / "compose-tasks")
    dry = sh(binary, "build", "--dry-run", cwd=stack.root, check=False)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert f"service app: builds {stack.image('app')}:" in dry.stdout
