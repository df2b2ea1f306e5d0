"""The suite shares the engine: engine tests that compare what a task left against what was there
before pass while another project builds, tags and prunes beside them."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BASE_IMAGE, ROOT, sh

pytestmark = pytest.mark.engine


@pytest.fixture
def busy_neighbour(tmp_path: Path) -> Iterator[str]:
    """Another project building new images (and builder cache) on the engine, nonstop."""
    name = f"neighbour-{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nARG N\nRUN echo $N > /n\n")
    stop = threading.Event()
    built: list[int] = []

    def loop() -> None:
        while not stop.is_set():
            n = len(built)
            sh("docker", "build", "-q", "--build-arg", f"N={n}", "-t", f"{name}:{n}",
               str(tmp_path), check=False)  # fmt: skip
            sh("docker", "rmi", f"{name}:{n - 1}", check=False)
            built.append(n)

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    yield name
    stop.set()
    worker.join()
    assert len(built) >= 3, "the neighbour hardly built: the test proved nothing"
    sh("docker", "rmi", f"{name}:{len(built) - 1}", check=False)


def test_engine_tests_pass_beside_another_project_s_builds(
    busy_neighbour: str, tmp_path: Path
) -> None:
    tests = ["tests/engine/test_clear.py::test_dry_run_removes_nothing",
             "tests/engine/test_clear.py::test_non_interactive_without_yes_refuses"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'inner'}", *tests],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 passed" in done.stdout
