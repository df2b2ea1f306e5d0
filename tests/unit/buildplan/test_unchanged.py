"""What the plan finds already built: which image of ours serves a service (no docker)."""

from __future__ import annotations

from pathlib import Path

from compose_tasks.buildplan._unchanged import _same_inputs
from compose_tasks.docker.refs import (
    LABEL_COMMIT,
    LABEL_INPUTS,
    LABEL_PROJECT,
    LABEL_SERVICE,
    LABEL_TOOL,
    TOOL,
)
from tests.support import plan_for, project


def test_a_stage_cache_image_never_serves_as_its_service_image(tmp_path: Path) -> None:
    """A stage image carries its service's labels (same inputs, same commit) but holds another
    stage: re-tagging it as the service's image would ship the wrong stage. Tags that sort
    before the commit's own (``cache-build`` < ``e0…``) are not taken."""
    build = {"context": "/p", "target": "runtime"}
    plan = plan_for(project(web={"build": build}), tmp_path, stages={"web": ["deps", "build"]})
    (web,) = plan.services
    labels = {
        LABEL_TOOL: TOOL, LABEL_PROJECT: plan.project, LABEL_SERVICE: "web",
        LABEL_INPUTS: "d1", LABEL_COMMIT: "e0" * 20,
    }  # fmt: skip
    ours = {stage.ref: labels for stage in web.stages}
    assert _same_inputs(web, "d1", ours, plan.project, "") == ""
    ours[f"{web.image}:e0e0e0e0e0e0"] = labels
    assert _same_inputs(web, "d1", ours, plan.project, "") == f"{web.image}:e0e0e0e0e0e0"
