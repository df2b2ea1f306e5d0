"""The bench's targets table: each miss says why, from the run's own measurements."""

from __future__ import annotations

from typing import Any

from benchmarks.tables import TARGETS, big_context_side_by_side, targets, why_missed

RESULTS: dict[str, Any] = {
    "meta": {"engine": "Docker Engine 28.5.2", "store": "containerd image store"},
    "plan": {"import_invoke_seconds": 0.11, "import_tasks_seconds": 0.13},
    "medians": {"single": {"seed": {"code-change": 0.7}}, "multi": {"seed": {"code-change": 0.8}}},
    "composed": {"single": 0.95, "multi": 1.4},
}


def test_a_code_only_miss_names_the_floor_and_compose_s_own_extra_time() -> None:
    single = next(t for t in TARGETS if t.key == "invoke_over_seed_code_change")
    line = why_missed(single, RESULTS, 1.9, 1.1)
    assert "a floor of 1.16x" in line
    assert "this run: 0.52 s above that floor" in line
    assert "compose build itself 0.25 s longer under the tool than raw" in line
    assert "(the cache folder it exports, which makes the cache survive a prune)" in line
    multi = next(t for t in TARGETS if t.key == "multi_invoke_over_seed_code_change")
    unmeasured = {**RESULTS, "composed": {"single": 0.95}}
    assert "compose build itself" not in why_missed(multi, unmeasured, 1.9, 1.1)
    classic = {**RESULTS, "meta": {"engine": "Engine 28.5.2", "store": "classic image store"}}
    assert "(the inline cache it exports, and its stage targets)" in why_missed(
        multi, classic, 2.0, 1.1
    )
    old = {**RESULTS, "meta": {"engine": "Engine 20.10.24", "store": "classic image store"}}
    assert "stage targets, built one at a time on this engine" in why_missed(multi, old, 2.0, 1.1)
    assert "(the inline cache it exports)" in why_missed(single, old, 1.9, 1.1)


def test_a_cold_miss_splits_compose_s_own_time_from_the_tool_s() -> None:
    cold = next(t for t in TARGETS if t.key == "multi_cold_invoke_over_seed")
    data = {
        **RESULTS,
        "medians": {"multi": {"seed": {"cold": 4.0}, "invoke": {"cold": 5.2}}},
        "composed": {"multi:cold": 4.6},
    }
    line = why_missed(cold, data, 1.3, 1.2)
    assert line.startswith("missed by 0.10: 1.20 s above raw compose")
    assert "compose build itself 0.60 s longer under the tool (the cache folder it exports" in line
    assert "and 0.60 s outside it (Python and `import invoke` 0.11 s" in line
    older = {**data, "composed": {}}  # an older bench's results
    assert why_missed(cold, older, 1.3, 1.2) == "missed by 0.1: no reason known"


def test_start_up_splits_the_collection_s_import_from_invoke_s_program() -> None:
    startup = next(t for t in TARGETS if t.key == "startup_over_import_seconds")
    line = why_missed(startup, RESULTS, 0.07, 0.05)
    assert "takes 0.020 s above `import invoke`" in line
    assert "invoke's own program (its parser, config files) 0.050 s" in line
    assert line.endswith("missed by 0.020 s")


def test_the_table_marks_each_engine_s_value() -> None:
    data = {**RESULTS, "plan": {**RESULTS["plan"], "startup_over_import_seconds": 0.03}}
    lines = targets({"containerd": data})
    row = next(line for line in lines if line.startswith("| start-up"))
    assert "0.03 ✓" in row


def test_the_monorepo_scenario_side_by_side_has_each_engine_s_table() -> None:
    found = {
        "services": 30, "files": 10000, "ignored_mb": 200, "built_per_commit": 1,
        "cold_compose_seconds": 8.0, "cold_invoke_seconds": 6.0,
        "no_change_compose_seconds": 4.0, "no_change_invoke_seconds": 0.5,
        "no_change_over_compose": 0.12, "one_changed_compose_seconds": 4.4,
        "one_changed_invoke_seconds": 5.5, "one_changed_over_compose": 1.25,
    }  # fmt: skip
    results = {
        "host": {"meta": {"engine": "Engine 20.10.24", "store": "overlay2"}, "big_context": found},
        "classic": {"meta": {"engine": "Engine 28.5.2"}, "big_context": found},
    }
    text = big_context_side_by_side(results)
    assert "## host (Engine 20.10.24, overlay2)" in text
    assert "## classic (Engine 28.5.2, ?)" in text
    assert text.count("| one file of one service changed | 4.40 s | 5.50 s | 1.25 |") == 2
