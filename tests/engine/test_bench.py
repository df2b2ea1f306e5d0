"""The benchmark runs end to end and its step counts tell the story (timings are not asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, require_registry, sh, stage_images_reliable

pytestmark = [pytest.mark.engine, pytest.mark.alone]


def test_bench_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = sh(
        sys.executable, str(ROOT / "benchmarks" / "bench.py"),
        "--repeats", "1", "--services", "5", "--out", str(out),
        "--registry", require_registry(), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = out.glob("bench-*.json")
    data = json.loads(result.read_text())
    steps = {
        (fixture, config): {key: (s[0]["cached"], s[0]["total"]) for key, s in runs.items()}
        for fixture, configs in data["builds"].items()
        for config, runs in configs.items()
    }
    # What each configuration keeps: "all" = every counted step cached, 0 = none.
    # (BuildKit may merge an identical step of the two services, so totals are not fixed.)
    expected = {
        "seed": {"cold": 0, "no-change": "all", "builder-pruned": 0, "fresh-runner": 0},
        "invoke": {"cold": 0, "builder-pruned": "all", "fresh-runner": "all"},
    }
    for (fixture, config), runs in steps.items():
        if config == "invoke":  # this commit's images are up to date: nothing built
            assert runs["no-change"] == (0, 0), fixture
        for scenario, want in {**expected[config], "after-clear": 0}.items():
            cached, total = runs[scenario]
            assert total >= 10, (fixture, config, scenario)
            partial = ("builder-pruned", "fresh-runner")
            if (
                (fixture, config) == ("multi", "invoke")
                and scenario in partial
                and not (stage_images_reliable())
            ):  # stage images serve only some runs here (the plan warns)
                assert 0 < cached <= total, (fixture, config, scenario)
                continue
            assert cached == (total if want == "all" else 0), (fixture, config, scenario)
        cached, total = runs["code-change"]
        assert 4 <= cached < total, (fixture, config)  # the dependency steps, not the code
    assert data["plan"]["services"] == 5
    assert data["affected"]["built_per_commit"] == 1  # only the changed service is built
    assert "Affected-only builds: 10 services" in done.stdout
    replay = data["prediction"]
    assert replay["service_builds"] >= 40 and replay["exact"] >= 0.95 * replay["service_builds"]
    phases = data["builds"]["single"]["invoke"]["no-change"][0]["timings"]
    assert list(phases) == ["resolve", "plan", "compose build", "tags"]
    assert "| process start, imports, settings, exit |" in done.stdout
    # the trace: a code-only commit runs compose once (the kept resolution serves the new
    # commit: no compose config); a no-change build runs no compose at all
    code = data["builds"]["single"]["invoke"]["code-change"][0]["calls"]
    assert (code["count: docker compose build"], code.get("docker compose config")) == (1, None)
    same = data["builds"]["single"]["invoke"]["no-change"][0]["calls"]
    assert not any(kind.startswith("docker compose") for kind in same)
    assert "| docker compose build | 1 |" in done.stdout
    assert "Targets (the everyday path):" in done.stdout
    fresh = "fresh runner, --rebuild: no local image, builder cache or cache folder"
    assert f"| multi | {fresh} |" in done.stdout
    assert list(out.glob("bench-*.md"))


def test_bench_fresh_runner_scenario(tmp_path: Path) -> None:
    """The fresh-runner scenario alone: the tool builds only the changed service and pulls no
    layer of the others; the seed's configuration builds all four."""
    out = tmp_path / "results"
    done = sh(
        sys.executable, str(ROOT / "benchmarks" / "bench.py"),
        "--repeats", "1", "--only", "fresh-runner", "--out", str(out), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = out.glob("bench-*.json")
    found = json.loads(result.read_text())["fresh_runner"]
    assert (found["seed"]["built"], found["invoke"]["built"]) == (4, 1)
    assert found["invoke"]["unchanged_bytes"] == 0 < found["seed"]["unchanged_bytes"]
    assert "prediction on the fresh runner: 1 of 1 service builds exact" in done.stdout
    # the scripted commits, each on a fresh runner: the prediction from the registry alone
    replay = json.loads(result.read_text())["prediction_fresh_runner"]
    assert replay["service_builds"] >= 20
    share = 0.95 if stage_images_reliable() else 0.85  # stage images serve only some runs there
    assert replay["exact"] >= share * replay["service_builds"], replay["missed"]
