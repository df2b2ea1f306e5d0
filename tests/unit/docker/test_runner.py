"""The one command runner: output, exit codes and one-line errors (real processes, no docker)."""

from __future__ import annotations

import sys

import pytest

from compose_tasks import mask
from compose_tasks.docker.runner import NOT_FOUND, Runner, meaningful_line
from compose_tasks.errors import UserError

PY = sys.executable


def test_run_captures_and_passes_the_environment() -> None:
    done = Runner().run([PY, "-c", "import os; print(os.environ['X_RUNNER'])"], {"X_RUNNER": "1"})
    assert (done.ok, done.out.strip()) == (True, "1")


def test_a_missing_command_is_127_and_a_clear_line() -> None:
    done = Runner().run(["no-such-command-here", "x"])
    assert (done.code, done.err) == (NOT_FOUND, "no-such-command-here is not installed")
    with pytest.raises(UserError, match=r"^no-such-command-here is not installed$"):
        Runner().check(["no-such-command-here"], "it")
    with pytest.raises(UserError, match="is not installed"):
        Runner().stream(["no-such-command-here"], print)


def test_check_maps_a_failure_to_its_first_meaningful_line() -> None:
    script = (
        "import sys; sys.stderr.write('WARN[0000] version is obsolete\\n"
        "yaml: line 2: did not find expected node\\nmore\\n'); sys.exit(15)"
    )
    with pytest.raises(UserError) as info:
        Runner().check([PY, "-c", script], "compose config")
    assert str(info.value) == "compose config failed: yaml: line 2: did not find expected node"


def test_error_lines_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mask, "_active", mask.Masker(["s3cr3t-value"]))
    assert meaningful_line("invalid hostPort: s3cr3t-value") == f"invalid hostPort: {mask.MASK}"
    assert meaningful_line("") == ""
    assert meaningful_line("WARN only") == "WARN only"


def test_stream_merges_stdout_and_stderr_line_by_line() -> None:
    lines: list[str] = []
    script = "import sys; print('a', flush=True); sys.stderr.write('b\\n'); sys.exit(3)"
    assert Runner().stream([PY, "-c", script], lines.append) == 3
    assert sorted(lines) == ["a", "b"]


def test_stream_calls_on_idle_while_the_command_is_quiet() -> None:
    ticks: list[int] = []
    script = "import time; time.sleep(0.7); print('done')"
    code = Runner().stream([PY, "-c", script], print, on_idle=lambda: ticks.append(1), idle=0.2)
    assert code == 0
    assert len(ticks) >= 2


def test_run_all_keeps_the_order_of_its_commands() -> None:
    # the later a command comes, the sooner it finishes
    sleepy = "import sys, time; time.sleep(0.1 * (3 - int(sys.argv[1]))); print(sys.argv[1])"
    argvs = [[PY, "-c", sleepy, str(index)] for index in range(4)]
    results = Runner().run_all(argvs)
    assert [result.out.strip() for result in results] == ["0", "1", "2", "3"]
    assert [result.argv for result in results] == [tuple(argv) for argv in argvs]


def test_run_all_raises_what_a_command_raised() -> None:
    with pytest.raises(ValueError):
        Runner().run_all([[PY, "-c", "pass"], [PY, "-c", "print('nul\0')", "x\0y"]])
