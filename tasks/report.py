"""Rendering plans and results for people (tables) and programs (JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compose_tasks import mask
from compose_tasks.buildplan.depends import context_name
from compose_tasks.buildplan.model import BuildPlan
from compose_tasks.buildplan.override import override, override_yaml
from compose_tasks.docker.progress import Step
from compose_tasks.dockerfile.steps import Prediction
from compose_tasks.sizes import human

if TYPE_CHECKING:
    from compose_tasks.buildplan.pipeline import BuildResult, ServiceResult


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain left-aligned text table."""
    cells = [[str(cell) for cell in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def say(text: str, err: bool = False) -> None:
    """Print a line (to stderr when ``err``), secrets masked."""
    print(mask.active().text(text), file=sys.stderr if err else sys.stdout, flush=True)


def emit_json(data: Any) -> None:
    """Print data as JSON on stdout: secrets are masked in the data, so the JSON stays valid."""
    masked = mask.active().data(json.loads(json.dumps(data, default=str)))
    print(json.dumps(masked, indent=2), flush=True)


def plan_data(plan: BuildPlan) -> dict[str, Any]:
    """The plan as JSON data: the plan's fields, the build command and the override."""
    return {**plan.to_dict(), "override": override(plan)}


def plan_text(plan: BuildPlan) -> str:
    """The plan as people read it: cache sources per service, the command and the override."""
    out = [
        f"project {plan.project} in {plan.project_dir}",
        f"commit  {plan.commit_var}={plan.commit} ({plan.commit_source}); tag :{plan.commit_tag}",
        f"builder {plan.builder}",
    ]
    for service in plan.services:
        what = f"builds {service.build_ref}"
        if service.remote:
            what = f"up to date in the registry: {service.remote} was built from these inputs"
            what += f", tags it {service.build_ref} there" if plan.push else ", not pulled"
        elif service.reuse == service.build_ref:
            what = f"up to date: {service.reuse} was built from these inputs, not built again"
        elif service.reuse:
            what = f"inputs unchanged: tags {service.reuse} as {service.build_ref}"
        out.append(
            f"service {service.name}: {what}, then tags "
            f"{', '.join(service.promote)}; cache strategy: {service.strategy}"
        )
        for need in service.needs:
            how = f"named context {need.name}" if not need.image else f"image {need.name}"
            handed = need.image and context_name(need.name) in service.contexts
            via = ", handed over as a named context" if handed else ""
            out.append(f"  built on   {need.service} ({how}{via})")
        if service.always:
            out.append(f"  always     built: {service.always}")
        if service.prediction is not None:
            out.append(f"  predicts   {service.prediction.text()}")
        for stage in service.stages:
            now = ", up to date: not built" if stage.current else ""
            out.append(
                f"  stage      {stage.stage} -> {stage.ref} (its own inline cache image{now})"
            )
        for source in service.sources:
            out.append(f"  cache_from {source.entry}  [{source.origin}] {source.describe()}")
        if not service.sources:
            out.append("  cache_from (none)")
        for export in service.exports:
            out.append(f"  cache_to   {export.entry}  {export.describe()}")
    return "\n".join(out + warning_lines(plan))


def warning_lines(plan: BuildPlan) -> list[str]:
    """The plan's warnings and Dockerfile lint findings, a line each."""
    return [f"warning: {text}" for text in [*plan.warnings, *map(str, plan.lint)]]


def step_line(step: Step) -> str:
    """One finished step, as shown while the build runs."""
    state = "ERROR" if step.error else ("CACHED" if step.cached else f"{step.seconds:.1f}s")
    label = step.label if len(step.label) <= 70 else step.label[:67] + "..."
    return f"  {step.service:<14} {state:>7}  {label}"


def running_line(step: Step, seconds: float) -> str:
    """A step still running, as shown while the build waits on it."""
    label = step.label if len(step.label) <= 70 else step.label[:67] + "..."
    return f"  {step.service:<14} {seconds:>6.0f}s  {label} (running)"


def _not_built(row: ServiceResult) -> str:
    """Why a service was not built ('' when it was)."""
    if row.remote:
        return "up to date in the registry"
    if not row.reused:
        return ""
    return "up to date" if row.reused == row.image else f"reused {row.reused}"[:50]


def _checked(row: ServiceResult, predicted: Prediction) -> str:
    """One service's prediction against its build."""
    if row.exact:
        return f"{row.service} exact ({row.cached}/{row.steps} cached)"
    return (
        f"{row.service} predicted {predicted.cached}/{predicted.steps} cached, "
        f"got {row.cached}/{row.steps} (first rebuilt {row.first_rebuilt or '-'})"
    )


def result_table(results: Sequence[ServiceResult]) -> str:
    """The closing per-service table."""
    return table(
        ["service", "image", "steps", "cached", "rebuilt", "first rebuilt step", "time"],
        [
            [
                row.service,
                row.image,
                row.steps,
                row.cached,
                row.rebuilt,
                _not_built(row) or row.first_rebuilt[:50] or "-",
                f"{row.seconds:.1f}s",
            ]
            for row in results
        ],
    )


def build_summary(plan: BuildPlan, result: BuildResult) -> str:
    """The closing text: the per-service table and what happened to the cache tags."""
    lines = [result_table(result.services)]
    same = [row.service for row in result.services if row.reused and row.reused == row.image]
    if same:
        lines.append(
            f"not built, up to date: {', '.join(same)} (this commit's image, built from the same "
            "inputs; --rebuild builds anyway)"
        )
    reused = [
        f"{row.service} ({row.reused})"
        for row in result.services
        if row.reused and row.reused != row.image
    ]
    if reused:
        lines.append(
            f"not built, inputs unchanged since their last build: {', '.join(reused)}; "
            "re-tagged as this commit's images"
        )
    there = [
        f"{row.service} at {row.remote}"
        + (f", tagged {row.image.rpartition(':')[2]}" if row.image in result.pushed else "")
        for row in result.services
        if row.remote
    ]
    if there:
        lines.append(
            f"not built, up to date in the registry: {', '.join(there)}: 0 bytes pulled"
            + ("" if plan.push else " (without --push nothing is tagged)")
        )
    checked = [
        _checked(row, row.predicted)
        for row in result.services
        if row.exact is not None and row.predicted is not None
    ]
    if checked:
        lines.append("predicted against actual: " + "; ".join(checked))
    pulled = [f"{row.service} {human(row.pulled)}" for row in result.services if row.pulled]
    if pulled:  # measured on both image stores: the build loads what it made, every layer
        lines.append(
            f"layers downloaded by the build: {', '.join(pulled)} (each built image is loaded "
            "into the engine's image store, which holds every layer of it, cached ones too; "
            "services up to date in the registry download nothing)"
        )
    if result.retried:
        lines.append(
            f"built {', '.join(result.retried)} again: the containerd image store lost a parent "
            "snapshot while parallel builds unpacked (moby/buildkit#6521)"
        )
    if result.cache is not None:
        usage = result.cache
        pruned = f"; pruned the oldest: {', '.join(usage.pruned)}" if usage.pruned else ""
        lines.append(
            f"local cache: {human(usage.bytes)} in {usage.folder} "
            f"(limit {human(usage.limit)}, setting cache_size){pruned}"
        )
    if result.ok:
        lines.append(f"cache sources moved: {', '.join(result.promoted)}")
        if result.dangling:
            lines.append(f"removed {result.dangling} untagged image(s) of ours this build replaced")
        if result.pushed:
            lines.append(f"pushed: {', '.join(result.pushed)}")
    elif result.push_failed:
        lines.append(f"built and tagged here: {', '.join(result.promoted)}")
        lines.append(f"push failed: {result.error}")
        lines.append(
            "the registry's tags left unchanged: "
            + ", ".join(ref for service in plan.services for ref in service.promote)
        )
    else:
        names = ", ".join(result.failed) or "unknown service"
        lines.append(f"build failed in {names}: {result.error}")
        for row in result.services:
            if row.output:
                lines.append(f"last output of {row.service}'s failed step:")
                lines += [f"  | {line}" for line in row.output]
        lines.append(
            "cache tags left unchanged: "
            + ", ".join(ref for service in plan.services for ref in service.promote)
        )
    return "\n".join(lines)


def _decision(row: ServiceResult) -> str:
    if row.remote:
        return f"up to date in the registry ({row.remote})"
    if row.reused:
        return "up to date" if row.reused == row.image else f"reused {row.reused}"
    return "failed" if row.error else "built"


def step_summary(plan: BuildPlan, result: BuildResult) -> str:
    """The build as a GitHub Actions job summary (Markdown): a row per service."""
    rows = [
        "| service | decision | steps cached | time | pulled | prediction |",
        "|---|---|---|---|---|---|",
    ]
    for row in result.services:
        built = not (row.remote or row.reused)
        steps = f"{row.cached}/{row.steps}" if built else "-"
        predicted = "-"
        if row.exact is not None and row.predicted is not None:
            predicted = "exact" if row.exact else f"predicted {row.predicted.cached} cached"
        cells = [row.service, _decision(row), steps, f"{row.seconds:.1f}s", human(row.pulled)]
        rows.append("| " + " | ".join([*cells, predicted]) + " |")
    checked = [row.exact for row in result.services if row.exact is not None]
    state = "built" if result.ok else f"failed: {result.error}"
    head = f"### compose-tasks build of {plan.project} at {plan.commit_tag}: {state}"
    tail = f"\nPrediction: {sum(checked)}/{len(checked)} services exact." if checked else ""
    return "\n".join([head, "", *rows]) + tail + "\n"


def dry_run_text(plan: BuildPlan, display: str) -> str:
    """What ``--dry-run`` prints: the plan, the exact argv and the override YAML."""
    return "\n".join(
        [
            plan_text(plan),
            "",
            f"command: {display}",
            f"override ({plan.override_file}):",
            override_yaml(plan).rstrip(),
        ]
    )
