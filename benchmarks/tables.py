"""The benchmark's tables: one engine's results, and the engines side by side."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import big_context, fresh_runner
from benchmarks.builds import CONFIGS, DEPENDENCY_SECONDS, FIXTURES, SCENARIOS, SERVICES
from benchmarks.harness import Cell, Sample, ratio
from benchmarks.replay import missed
from compose_tasks.docker.engine import PARALLEL_INLINE_SINCE


def summarize(
    cells: dict[str, dict[str, Cell]], multi: dict[str, dict[str, Cell]]
) -> dict[str, float]:
    return {
        "invoke_over_seed_fresh_runner": ratio(
            cells["invoke"]["fresh-runner"].median, cells["seed"]["fresh-runner"].median
        ),
        "multi_invoke_over_seed_builder_pruned": ratio(
            multi["invoke"]["builder-pruned"].median, multi["seed"]["builder-pruned"].median
        ),
        "multi_invoke_over_seed_fresh_runner": ratio(
            multi["invoke"]["fresh-runner"].median, multi["seed"]["fresh-runner"].median
        ),
        "multi_cold_invoke_over_seed": ratio(
            multi["invoke"]["cold"].median, multi["seed"]["cold"].median
        ),
        "seed_warm_over_cold": ratio(
            cells["seed"]["no-change"].median, cells["seed"]["cold"].median
        ),
        "invoke_warm_over_cold": ratio(
            cells["invoke"]["no-change"].median, cells["invoke"]["cold"].median
        ),
        "invoke_over_seed_no_change": ratio(
            cells["invoke"]["no-change"].median, cells["seed"]["no-change"].median
        ),
        "invoke_over_seed_builder_pruned": ratio(
            cells["invoke"]["builder-pruned"].median, cells["seed"]["builder-pruned"].median
        ),
        "invoke_over_seed_code_change": ratio(
            cells["invoke"]["code-change"].median, cells["seed"]["code-change"].median
        ),
        "multi_invoke_over_seed_code_change": ratio(
            multi["invoke"]["code-change"].median, multi["seed"]["code-change"].median
        ),
        "no_change_over_seed_seconds": round(
            cells["invoke"]["no-change"].median - cells["seed"]["no-change"].median, 3
        ),
    }


def markdown(
    meta: dict[str, str], fixtures: dict[str, dict[str, dict[str, Cell]]],
    ratios: dict[str, float], plan: dict[str, float | int], repeats: int,
    affected: dict[str, float | int], replay: dict[str, Any],
) -> str:  # fmt: skip
    lines = [
        f"# Build benchmark ({meta['date']})",
        "",
        f"{meta['engine']}, {meta['compose']}, {meta['cpus']} CPUs. Fixture: {len(SERVICES)} "
        f"services, dependency step sleeps {DEPENDENCY_SECONDS} s, code layer after "
        f"ARG GIT_COMMIT_HASH. Wall time is the median of {repeats} runs; steps are cached/total "
        "over both services (FROM not counted).",
        "",
        "| fixture | scenario | seed config, raw compose | cached | invoke build | cached |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for fixture, cells in fixtures.items():
        for key, title in SCENARIOS:
            seed, ours = cells["seed"][key], cells["invoke"][key]
            lines.append(
                f"| {fixture} | {title} | {seed.median:.2f} s | {seed.steps} | "
                f"{ours.median:.2f} s | {ours.steps} |"
            )
    lines += [
        "",
        "| ratio | value |",
        "|---|---:|",
        f"| warm/cold, seed (no change ÷ cold) | {ratios['seed_warm_over_cold']} |",
        f"| warm/cold, invoke build | {ratios['invoke_warm_over_cold']} |",
        f"| invoke/seed, no-change build | {ratios['invoke_over_seed_no_change']} |",
        f"| invoke/seed, builder pruned | {ratios['invoke_over_seed_builder_pruned']} |",
        f"| invoke/seed, fresh runner | {ratios['invoke_over_seed_fresh_runner']} |",
        "| multi-stage: invoke/seed, builder pruned | "
        f"{ratios['multi_invoke_over_seed_builder_pruned']} |",
        "| multi-stage: invoke/seed, fresh runner | "
        f"{ratios['multi_invoke_over_seed_fresh_runner']} |",
        "| multi-stage: invoke/seed, cold (cost of the stage cache targets) | "
        f"{ratios['multi_cold_invoke_over_seed']} |",
        "",
        f"Planning a generated {plan['services']}-service project (`invoke build --dry-run "
        "--json`: settings, git, the resolved project, one image lookup for every ref, Dockerfile "
        f"lint, the JSON plan): {plan['plan_seconds']:.2f} s reusing the resolved project, "
        f"{plan['plan_cold_seconds']:.2f} s when compose config must run, against "
        f"{plan['compose_config_seconds']:.2f} s for one `docker compose config` (ratios "
        f"{plan['plan_over_config']} and {plan['plan_cold_over_config']}). Starting the tasks "
        f"and doing nothing (`invoke --list`: Python, invoke, the task modules) takes "
        f"{plan['startup_seconds']:.2f} s.",
        "",
        f"Affected-only builds: {affected['services']} services, each new commit changing one. "
        f"`invoke build --affected` {affected['affected_seconds']:.2f} s (built "
        f"{affected['built_per_commit']} service, re-tagged the rest) against "
        f"{affected['compose_seconds']:.2f} s for raw `docker compose build` (ratio "
        f"{affected['affected_over_compose']}); a new commit that changes nothing: "
        f"{affected['no_change_affected_seconds']:.2f} s (compose not run) against "
        f"{affected['no_change_compose_seconds']:.2f} s (ratio "
        f"{affected['no_change_affected_over_compose']}).",
        "",
        f"Prediction: {replay['commits']} scripted commits (each changing one input: a source "
        "file, a dependency list, an ignored file, an arg from `.env`, a RUN line, the base "
        "image, a step added, an untracked file, a compose arg) on four services (multi-stage, "
        "`context: .`, `build.target`): the plan's prediction (which steps rebuild, how many "
        f"come from cache) was exact for {replay['exact']} of {replay['service_builds']} service "
        f"builds ({replay['exact_ratio']:.0%}).",
        *missed(replay),
        "",
        "Where a warm no-change `invoke build` spends its time (single fixture, medians; "
        "`timings` of `invoke build --json`, the rest is process start, imports and exit):",
        "",
        "| phase | seconds |",
        "|---|---:|",
        *breakdown(fixtures["single"]["invoke"]["no-change"]),
        "",
        "Where the time goes, every command and engine call (`calls` of `invoke build --json`):",
        *profiles(fixtures),
        "",
        "Targets (the everyday path):",
        "",
        *targets(
            {
                meta["engine"]: {
                    "meta": meta,
                    "ratios": ratios,
                    "plan": plan,
                    "affected": affected,
                    "medians": medians(fixtures),
                    "composed": composed(fixtures),
                }
            }
        ),
    ]
    return "\n".join(lines) + "\n"


def medians(fixtures: dict[str, dict[str, dict[str, Cell]]]) -> dict[str, Any]:
    """Each cell's median wall time, as the results' ``medians`` hold them."""
    return {
        fixture: {
            config: {key: round(cell.median, 3) for key, cell in scenarios.items()}
            for config, scenarios in cells.items()
        }
        for fixture, cells in fixtures.items()
    }


def composed(fixtures: dict[str, dict[str, dict[str, Cell]]]) -> dict[str, float]:
    """Per fixture, the median time of the ``docker compose build`` that ``invoke build`` ran
    on a code-only commit (what compose itself took under the tool), and as ``<fixture>:cold``
    on the cold build."""
    out = {}
    for fixture, cells in fixtures.items():
        for scenario, key in (("code-change", fixture), ("cold", f"{fixture}:cold")):
            cell = cells.get("invoke", {}).get(scenario)
            inside = [
                sample.calls.get("docker compose build", 0.0)
                for sample in (cell.samples if cell else [])
                if sample.calls
            ]
            if inside:
                out[key] = round(statistics.median(inside), 3)
    return out


def profile(cell: Cell) -> list[str]:
    """Table rows: each kind of command or engine call of a scenario's ``invoke build`` (mean
    per run: how many, seconds, share of the median wall time), then the time no call ran."""
    runs = [sample.calls for sample in cell.samples if sample.calls]
    if not runs:
        return ["| (no trace: results of an older bench) | | | |"]
    wall = cell.median
    kinds = sorted(
        {key for run in runs for key in run if key != "covered" and not key.startswith("count: ")},
        key=lambda kind: -sum(run.get(kind, 0.0) for run in runs),
    )
    rows = []
    for kind in kinds:
        seconds = sum(run.get(kind, 0.0) for run in runs) / len(runs)
        count = sum(run.get(f"count: {kind}", 0.0) for run in runs) / len(runs)
        rows.append(f"| {kind} | {count:g} | {seconds:.3f} | {seconds / wall:.0%} |")
    idle = wall - statistics.median(run.get("covered", 0.0) for run in runs)
    rows.append(
        f"| no call running: Python start, imports, planning in process, exit | | {idle:.3f} | "
        f"{idle / wall:.0%} |"
    )
    return rows


def profiles(fixtures: dict[str, dict[str, dict[str, Cell]]]) -> list[str]:
    """Where a no-change and a code-only ``invoke build`` spend their time, per fixture."""
    lines = []
    for fixture, cells in fixtures.items():
        for key in ("no-change", "code-change"):
            cell = cells["invoke"][key]
            lines += [
                "",
                f"{fixture}, {dict(SCENARIOS)[key]}: {cell.median:.2f} s (raw compose "
                f"{cells['seed'][key].median:.2f} s). Calls at once each count whole.",
                "",
                "| command or engine call | per run | seconds | share of wall |",
                "|---|---:|---:|---:|",
                *profile(cell),
            ]
    return lines


def breakdown(cell: Cell) -> list[str]:
    """Table rows: the median of each phase, and of the wall time outside them."""
    phases = list(cell.samples[0].timings)
    rows = []
    for phase in phases:
        rows.append(
            f"| {phase} | {statistics.median(s.timings[phase] for s in cell.samples):.3f} |"
        )
    rest = statistics.median(s.seconds - sum(s.timings.values()) for s in cell.samples)
    rows.append(f"| process start, imports, settings, exit | {rest:.3f} |")
    rows.append(f"| total (wall) | {cell.median:.3f} |")
    return rows


@dataclass(frozen=True)
class Target:
    """One everyday-path target: where its value is in an engine's results, its goal (a number,
    or a function of the results), and for a ratio to compose, compose's own seconds (a ratio
    cannot go below what Python and ``import invoke`` alone add to them)."""

    title: str
    section: str
    key: str
    goal: float | Callable[[dict[str, Any]], float]
    base: Callable[[dict[str, Any]], float] | None = None


def _median(fixture: str, scenario: str) -> Callable[[dict[str, Any]], float]:
    return lambda data: float(data["medians"][fixture]["seed"][scenario])


TARGETS = (
    Target("code-only commit, single-stage (÷ raw compose)", "ratios",
           "invoke_over_seed_code_change", 1.1, _median("single", "code-change")),
    Target("code-only commit, multi-stage (÷ raw compose)", "ratios",
           "multi_invoke_over_seed_code_change", 1.1, _median("multi", "code-change")),
    Target("no change, two services (s above raw compose; goal: `import invoke`)", "ratios",
           "no_change_over_seed_seconds",
           lambda data: float(data["plan"]["import_invoke_seconds"])),
    Target("no change, ten services (÷ raw compose)", "affected",
           "no_change_affected_over_compose", 1.0),
    Target("planning 100 services (÷ `compose config`)", "plan", "plan_over_config", 1.5,
           lambda data: float(data["plan"]["compose_config_seconds"])),
    Target("cold multi-stage, every stage cached (÷ the seed's config)", "ratios",
           "multi_cold_invoke_over_seed", 1.2, _median("multi", "cold")),
    Target("start-up (s above `python -c 'import invoke'`)", "plan",
           "startup_over_import_seconds", 0.05),
)  # fmt: skip


def _engine_major(data: dict[str, Any]) -> int:
    found = re.search(r"Engine (\d+)\.", str(data.get("meta", {}).get("engine", "")))
    return int(found.group(1)) if found else 0


def _kept(data: dict[str, Any], multi: bool) -> str:
    """What the tool's build does beyond raw compose's on an engine, to keep the cache through
    a prune."""
    if multi and 0 < _engine_major(data) < PARALLEL_INLINE_SINCE:
        return "its stage targets, built one at a time on this engine: moby/moby#40752"
    if "containerd" in str(data.get("meta", {}).get("store", "")):
        return "the cache folder it exports, which makes the cache survive a prune"
    return "the inline cache it exports" + (", and its stage targets" if multi else "")


def why_missed(target: Target, data: dict[str, Any], value: float, goal: float) -> str:
    """One line on why an engine misses a target, with the measurement that shows it."""
    startup = float(data.get("plan", {}).get("import_invoke_seconds", 0.0))
    if target.base is not None and "medians" in data:
        base = target.base(data)
        floor = (base + startup) / base if base else float("inf")
        if floor > goal:
            above = (value - floor) * base
            fixture = "multi" if target.key.startswith("multi_") else "single"
            inside = float(data.get("composed", {}).get(fixture, 0.0))
            export = (
                f"; of it, compose build itself {inside - base:.2f} s longer under the tool "
                f"than raw ({_kept(data, fixture == 'multi')})"
                if target.key.endswith("code_change") and inside - base > 0.05
                else ""
            )
            return (
                f"below reach: Python and `import invoke` alone take {startup:.2f} s against "
                f"{base:.2f} s of compose, a floor of {floor:.2f}x (this run: {above:.2f} s "
                f"above that floor{export})"
            )
    staged = target.key in ("multi_invoke_over_seed_code_change", "multi_cold_invoke_over_seed")
    if staged and 0 < _engine_major(data) < PARALLEL_INLINE_SINCE:
        return (
            "this engine builds a service and its stage targets one at a time: its BuildKit "
            "crashes dockerd when builds sharing steps export inline cache at once "
            "(moby/moby#40752); Engine 24+ builds them together"
        )
    cold = data.get("composed", {}).get("multi:cold")
    if target.key == "multi_cold_invoke_over_seed" and cold is not None:
        raw = float(data["medians"]["multi"]["seed"]["cold"])
        wall = float(data["medians"]["multi"]["invoke"]["cold"])
        return (
            f"missed by {value - goal:.2f}: {wall - raw:.2f} s above raw compose, of it compose "
            f"build itself {float(cold) - raw:.2f} s longer under the tool ({_kept(data, True)}) "
            f"and {wall - float(cold):.2f} s outside it (Python and `import invoke` "
            f"{startup:.2f} s; a cold build plans from nothing: compose config, buildx's answers)"
        )
    plan = data.get("plan", {})
    if target.key == "startup_over_import_seconds" and "import_tasks_seconds" in plan:
        modules = float(plan["import_tasks_seconds"]) - startup
        return (
            f"importing the task collection (declarations, settings) takes {modules:.3f} s "
            f"above `import invoke`, invoke's own program (its parser, config files) "
            f"{value - modules:.3f} s: missed by {value - goal:.3f} s"
        )
    return f"missed by {value - goal:.3g}: no reason known"


def targets(results: dict[str, Any]) -> list[str]:
    """The targets table: each engine's value, ✓ at or under its goal, ✗ over it; then a line
    for each miss, saying why."""
    names = list(results)
    lines = [
        "| target | goal | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    misses = []
    for target in TARGETS:
        cells = []
        for name in names:
            data = results[name]
            value = data.get(target.section, {}).get(target.key)
            if value is None:  # results of an older bench
                cells.append("-")
                continue
            goal = target.goal(data) if callable(target.goal) else target.goal
            extra = f" (≤ {goal:g})" if callable(target.goal) else ""
            cells.append(f"{value:g} {'✓' if value <= goal else '✗'}{extra}")
            if value > goal:
                misses.append(f"- {name}, {target.title}: {why_missed(target, data, value, goal)}")
        shown = "see cells" if callable(target.goal) else f"≤ {target.goal:g}"
        lines.append(f"| {target.title} | {shown} | " + " | ".join(cells) + " |")
    return [*lines, *(["", *misses] if misses else [])]


def fresh_side_by_side(results: dict[str, Any]) -> str:
    """The fresh-runner scenario per engine, one row per engine and configuration."""
    lines = [
        f"# Fresh runner on {len(results)} engines ({time.strftime('%Y-%m-%d')})",
        "",
        f"{fresh_runner.SERVICES} services, one changed; another runner built and pushed them "
        "before; this runner has only the registry. Medians.",
        "",
        "| engine | configuration | services built | bytes pulled, unchanged | bytes pulled, "
        "changed | time | predicted exactly |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, data in results.items():
        found = data["fresh_runner"]
        for config in ("seed", "invoke"):
            row = found[config]
            samples = row["samples"]
            exact = sum(s["predicted_exactly"] for s in samples)
            predicted = f"{exact}/{sum(s['built'] for s in samples)}" if config == "invoke" else "-"
            lines.append(
                f"| {name} ({data['meta'].get('store', '?')}) | {config} | {row['built']:.0f} | "
                f"{row['unchanged_bytes']:.0f} | {row['changed_bytes']:.0f} | "
                f"{row['seconds']:.2f} s | {predicted} |"
            )
    lines += ["", "Prediction on fresh runners, the scripted commits (each built by a new runner):"]
    for name, data in results.items():
        replay = data["prediction_fresh_runner"]
        lines.append(f"- {name}: {replay['exact']} of {replay['service_builds']} exact")
        lines += [f"  {line}" for line in missed(replay)]
    return "\n".join(lines) + "\n"


def big_context_side_by_side(results: dict[str, Any]) -> str:
    """The monorepo scenario per engine, each engine's table under its name."""
    lines = [f"# Monorepo context on {len(results)} engines ({time.strftime('%Y-%m-%d')})"]
    for name, data in results.items():
        meta = data["meta"]
        lines += ["", f"## {name} ({meta.get('engine', '?')}, {meta.get('store', '?')})", ""]
        lines += big_context.table(data["big_context"])
    return "\n".join(lines) + "\n"


def side_by_side(results: dict[str, Any], repeats: int) -> str:
    """One row per scenario, the seed's and invoke's time and cached steps per engine."""
    names = list(results)
    lines = [f"# Build benchmark on {len(names)} engines ({time.strftime('%Y-%m-%d')})", ""]
    for name in names:
        meta = results[name]["meta"]
        lines.append(
            f"- **{name}**: {meta['engine']}, {meta.get('store', '?')}, {meta.get('buildx', '?')}, "
            f"{meta['compose']}"
        )
    lines += [
        "",
        f"Wall time: median of {repeats} runs; cached/total steps over both services.",
        "",
        "| fixture | scenario | "
        + " | ".join(f"{n}: seed | {n}: invoke build" for n in names)
        + " |",
        "|---|---|" + "---:|---:|" * len(names),
    ]
    for fixture in FIXTURES:
        for key, title in SCENARIOS:
            cells = []
            for name in names:
                for config in CONFIGS:
                    samples = results[name]["builds"][fixture][config][key]
                    median = results[name]["medians"][fixture][config][key]
                    steps = " or ".join(sorted({f"{s['cached']}/{s['total']}" for s in samples}))
                    cells.append(f"{median:.2f} s, {steps}")
            lines.append(f"| {fixture} | {title} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in results[names[0]]["ratios"]:
        lines.append(
            f"| {key} | " + " | ".join(str(results[n]["ratios"][key]) for n in names) + " |"
        )
    plan_keys = ("plan_over_config", "startup_seconds")
    for key in plan_keys:
        lines.append(f"| {key} | " + " | ".join(str(results[n]["plan"][key]) for n in names) + " |")
    lines += ["", "Targets (the everyday path):", "", *targets(results)]
    for name in names:
        lines += ["", f"Where the time goes on {name}:", *profiles(cells_of(results[name]))]
    return "\n".join(lines) + "\n"


def cells_of(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Cell]]]:
    """An engine's results (JSON) as the cells its run had."""
    return {
        fixture: {
            config: {
                key: Cell([Sample(**sample) for sample in samples])
                for key, samples in scenarios.items()
            }
            for config, scenarios in configs.items()
        }
        for fixture, configs in data["builds"].items()
    }
