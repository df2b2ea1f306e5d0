"""What every task shares: loading settings from the invoke context, and one-line errors."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from docker.errors import DockerException
from invoke.context import Context
from invoke.exceptions import Exit

from tasks.errors import UserError
from tasks.settings import SECTION, Settings, load

P = ParamSpec("P")
R = TypeVar("R")


def settings_of(c: Context, **flags: Any) -> Settings:
    """Effective settings for this run: the invoke config section, environment, .env, flags."""
    return load(dict(c.config.get(SECTION, {})), flags)


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a UserError (or an engine error) into one line on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except DockerException as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise Exit(f"error: Docker engine: {first}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as other command-line tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=141) from None

    return wrapper
