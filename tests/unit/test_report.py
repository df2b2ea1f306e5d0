"""Rendering: tables, plan text, step lines, summaries and JSON (masked on data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compose_tasks import mask, report
from compose_tasks.buildplan.pipeline import BuildResult, ServiceResult
from compose_tasks.docker.builder import Found, Where
from compose_tasks.docker.progress import Step
from tests.support import SHA, plan_for, project


def test_table_aligns_columns() -> None:
    assert report.table(["a", "bb"], [["xxx", 1], ["y", 22]]) == "a    bb\nxxx  1\ny    22"


def test_plan_text_lists_sources_with_status_and_reason(tmp_path: Path) -> None:
    compose = project(api={"build": {"context": "/p", "cache_from": ["gone:1"]}})
    plan = plan_for(compose, tmp_path, {"shop-api:latest": Found(Where.LOCAL, True)})
    text = report.plan_text(plan)
    assert "  cache_from gone:1  [compose file] dropped: no such image locally" in text
    assert "  cache_from shop-api:latest  [latest] local image" in text
    assert f"service api: builds shop-api:{SHA[:12]}, then tags shop-api:latest" in text


def test_step_line_and_summary(tmp_path: Path) -> None:
    step = Step("api", "[2/5] RUN " + "x" * 100, cached=True)
    line = report.step_line(step)
    assert "CACHED" in line and line.endswith("...") and len(line) < 100
    plan = plan_for(project(api={"build": {"context": "/p"}}), tmp_path)
    row = ServiceResult("api", "shop-api:1", 5, 3, 2, "[4/5] COPY . .", 1.25, "")
    ok = BuildResult(True, 0, (), (row,), ("shop-api:latest",))
    assert report.build_summary(plan, ok).splitlines()[-1] == "cache sources moved: shop-api:latest"
    failed = BuildResult(False, 1, ("api",), (row,), (), error="exit code: 3")
    lines = report.build_summary(plan, failed).splitlines()
    assert lines[-2:] == [
        "build failed in api: exit code: 3",
        "cache tags left unchanged: shop-api:latest",
    ]


def test_json_is_masked_on_data_and_stays_valid(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(mask, "_active", mask.Masker(["hunter2hunter2", "false"]))
    report.emit_json({"detail": 'pw "hunter2hunter2"', "flag": "false", "n": 1})
    data = json.loads(capsys.readouterr().out)
    assert data == {"detail": f'pw "{mask.MASK}"', "flag": "false", "n": 1}
