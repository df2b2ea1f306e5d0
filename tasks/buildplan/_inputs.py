"""The services a build takes, and what the engine would reject about them, checked before
anything is looked up or built: each problem is one line (``file:line`` where there is one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from compose_tasks.docker.refs import ref_error
from compose_tasks.dockerfile import contexts
from compose_tasks.dockerfile.instructions import syntax_errors, target_stage
from compose_tasks.dockerfile.reader import Reader
from compose_tasks.errors import UserError


def check_services(
    data: Mapping[str, Any], names: Sequence[str], files: str, reader: Reader
) -> None:
    """An invalid ``image:`` reference (``files``: the compose files, for the message), a
    missing build context or Dockerfile, a Dockerfile the frontend cannot parse, a
    ``build.target`` it does not have, an ``ssh`` key file that is not there."""
    for name in names:
        service = data["services"][name]
        image = str(service.get("image") or "")
        reason = ref_error(image) if image else ""
        if reason:
            raise UserError(
                f"service '{name}': image {image!r} (in {files}) is not a valid image "
                f"reference: {reason}"
            )
        build = service["build"]
        check_sources(name, build)
        check_ssh(name, build)
        dockerfile = reader.service(name, build)
        errors = syntax_errors(dockerfile) if dockerfile is not None else []
        if dockerfile is not None and errors:
            line, message = errors[0]
            raise UserError(f"service '{name}': {dockerfile.path}:{line}: {message}")
        target = str(build.get("target") or "")
        if dockerfile is not None and target and target_stage(dockerfile, target) is None:
            stages = [stage.name for stage in dockerfile.stages if stage.name]
            raise UserError(
                f"service '{name}': build.target {target!r} is not a stage of {dockerfile.path} "
                f"(named stages: {', '.join(stages) or 'none'})"
            )


def check_ssh(name: str, build: Mapping[str, Any]) -> None:
    """Each ``ssh`` key file a build names must exist (``default`` is the agent)."""
    for entry in build.get("ssh") or ():
        key, sep, paths = str(entry).partition("=")
        for path in paths.split(",") if sep else ():
            if path and not Path(path).exists():
                raise UserError(f"service '{name}': ssh key file {path} (ssh id {key}) not found")


def check_sources(name: str, build: Mapping[str, Any]) -> None:
    """A local build context and its Dockerfile must exist; say which is missing, in one line."""
    context = str(build.get("context") or ".")
    if contexts.remote(context) or build.get("dockerfile_inline"):
        return
    folder = Path(context)
    if not folder.is_dir():
        raise UserError(f"service '{name}': build context {folder} is not a folder")
    dockerfile = folder / str(build.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_file():
        raise UserError(
            f"service '{name}': no Dockerfile at {dockerfile} (set build.dockerfile or add it)"
        )
