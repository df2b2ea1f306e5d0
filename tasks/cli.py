"""What every task shares: its work loaded when it runs, settings from the invoke context, and
one-line errors."""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

from compose_tasks import mask
from compose_tasks.errors import CacheGate, EngineError, Failed, UserError
from compose_tasks.settings import SECTION, Settings, load

P = ParamSpec("P")
R = TypeVar("R")


def runs(module: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """The declared task's work: the function of its name in ``module`` (relative to the
    declaring module's package), imported when the task runs. ``invoke --list`` and ``--help``
    load the declarations only, and a task loads the code of its own work only."""

    def declare(declared: Callable[P, R]) -> Callable[P, R]:
        package = declared.__module__.rpartition(".")[0]

        @functools.wraps(declared)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            work: Callable[P, R] = getattr(
                importlib.import_module(module, package), declared.__name__
            )
            return work(*args, **kwargs)

        return run

    return declare


def settings_of(c: Context, **flags: Any) -> Settings:
    """Effective settings for this run: the invoke config section, environment, .env, flags."""
    return load(dict(c.config.get(SECTION, {})), flags, origins=config_origins(c))


def config_origins(c: Context) -> dict[str, str]:
    """The invoke config file each key of the settings section came from (runtime file first)."""
    origins: dict[str, str] = {}
    for level in ("system", "user", "project", "runtime"):  # lowest to highest precedence
        section = (getattr(c.config, f"_{level}", None) or {}).get(SECTION) or {}
        path = getattr(c.config, f"_{level}_path", None)
        for key in section if isinstance(section, dict) else ():
            origins[key] = f"invoke config {path}" if path else "invoke config"
    return origins


def _line(text: str) -> str:
    """One line, secrets masked."""
    return mask.active().text(" ".join(text.split()))


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors (``compose_tasks.errors``) into one line on stderr and exit code 1 (3 for the
    cache gate)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CacheGate as exc:
            raise Exit(_line(f"error: cache gate: {exc}"), code=3) from None
        except (UserError, Failed) as exc:
            raise Exit(_line(f"error: {exc}"), code=1) from None
        except EngineError as exc:
            raise Exit(_line(f"error: Docker engine: {exc}"), code=1) from None
        except BrokenPipeError:
            # The reader went away (``| head``): stop quietly, as other command-line tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=141) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


Hook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
_PARSER = f"invoke{os.sep}parser{os.sep}"
_CONFIG = (f"invoke{os.sep}config.py", f"invoke{os.sep}env.py")


def config_error_hook(previous: Hook) -> Hook:
    """An excepthook that turns invoke's own config and parser errors (a malformed
    ``invoke.yaml``, an uncastable ``INVOKE_*`` variable or flag value) into one line; they are
    raised before any task runs."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        frames = traceback.extract_tb(tb)
        names = [frame.filename for frame in frames]
        if issubclass(kind, Exception) and any(
            name.endswith(_CONFIG) or _PARSER in name for name in names
        ):
            parser = any(_PARSER in name for name in names)
            what = "command line" if parser else "invoke configuration"
            print(_line(f"error: invalid {what}: {exc}"), file=sys.stderr)
            return  # the interpreter exits with code 1
        previous(kind, exc, tb)

    return hook
