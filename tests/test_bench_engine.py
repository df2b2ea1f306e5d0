"""The benchmark runs end to end and its step counts tell the story (timings are not asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, sh

pytestmark = pytest.mark.engine


def test_bench_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = sh(
        sys.executable, str(ROOT / "benchmarks" / "bench.py"),
        "--repeats", "1", "--services", "5", "--out", str(out),
    )  # fmt: skip
    [result] = out.glob("bench-*.json")
    data = json.loads(result.read_text())
    steps = {
        config: {key: (s[0]["cached"], s[0]["total"]) for key, s in runs.items()}
        for config, runs in data["builds"].items()
    }
    # Two services of 5 counted steps each; 3 of each are dependency steps.
    assert steps["seed"] == {
        "cold": (0, 10),
        "no-change": (10, 10),
        "code-change": (6, 10),
        "builder-pruned": (0, 10),
        "after-clear": (0, 10),
    }
    assert steps["invoke"] == {**steps["seed"], "builder-pruned": (10, 10)}
    assert data["plan"]["services"] == 5
    assert "| builder cache pruned, previous image present |" in done.stdout
    assert list(out.glob("bench-*.md"))
