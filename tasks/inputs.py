"""The services a build takes, and what the engine would reject about them, checked before
anything is looked up or built: each problem is one line (``file:line`` where there is one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.dockerfile import syntax_errors
from tasks.errors import UserError
from tasks.lint import read_dockerfile
from tasks.refs import ref_error


def check_services(data: Mapping[str, Any], names: Sequence[str], files: str) -> None:
    """An invalid ``image:`` reference (``files``: the compose files, for the message), a
    missing build context or Dockerfile, a Dockerfile the frontend cannot parse."""
    for name in names:
        service = data["services"][name]
        image = str(service.get("image") or "")
        reason = ref_error(image) if image else ""
        if reason:
            raise UserError(
                f"service '{name}': image {image!r} (in {files}) is not a valid image "
                f"reference: {reason}"
            )
        check_sources(name, service["build"])
        dockerfile = read_dockerfile(name, service["build"], Path.cwd())
        errors = syntax_errors(dockerfile) if dockerfile is not None else []
        if dockerfile is not None and errors:
            line, message = errors[0]
            raise UserError(f"service '{name}': {dockerfile.path}:{line}: {message}")


def check_sources(name: str, build: Mapping[str, Any]) -> None:
    """A local build context and its Dockerfile must exist; say which is missing, in one line."""
    context = str(build.get("context") or ".")
    if "://" in context or context.startswith("git@") or build.get("dockerfile_inline"):
        return
    folder = Path(context)
    if not folder.is_dir():
        raise UserError(f"service '{name}': build context {folder} is not a folder")
    dockerfile = folder / str(build.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_file():
        raise UserError(
            f"service '{name}': no Dockerfile at {dockerfile} (set build.dockerfile or add it)"
        )
