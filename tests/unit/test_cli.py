"""What every task shares: one-line errors and a quiet end on a closed pipe."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from compose_tasks.cli import one_line_errors
from compose_tasks.errors import UserError


def test_a_user_error_is_one_line_and_exit_1() -> None:
    @one_line_errors
    def task() -> None:
        raise UserError("bad\n  input")

    with pytest.raises(Exit) as stopped:
        task()
    assert (stopped.value.code, stopped.value.message) == (1, "error: bad input")


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``invoke history | head``: the reader went away, so no traceback and no message."""

    @one_line_errors
    def task() -> None:
        raise BrokenPipeError

    with (tmp_path / "stdout").open("w") as stdout:
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(Exit) as stopped:
            task()
    assert (stopped.value.code, stopped.value.message) == (141, None)


def test_other_errors_are_not_swallowed() -> None:
    @one_line_errors
    def task() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        task()
