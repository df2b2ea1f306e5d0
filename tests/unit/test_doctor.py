"""The pure parts of ``invoke doctor``: versions, cache-source verdicts and the rendering."""

from __future__ import annotations

import pytest

from compose_tasks._doctor import Check, Verdict, render, rollout_check, source_check
from compose_tasks.buildplan.model import CacheSource, Status
from compose_tasks.docker.builder import buildx_mismatch, buildx_version, parse_version


def test_versions_compare_numerically() -> None:
    assert parse_version("v2.40.3") == (2, 40, 3)
    assert parse_version("2.24.0-desktop.1") == (2, 24, 0)
    assert parse_version("2.9") < (2, 24) < parse_version("2.37.1")


@pytest.mark.parametrize(
    ("source", "status", "words"),
    [
        (CacheSource("app:latest", "latest", Status.LOCAL, inline=True), "ok", "can serve"),
        (CacheSource("app:latest", "latest", Status.LOCAL, inline=False), "warn", "cannot serve"),
        (
            CacheSource("app:latest", "latest", Status.DROPPED, "no such image"),
            "warn",
            "the next build is cold",
        ),
        (
            CacheSource("type=gha", "compose file", Status.DROPPED, "'gha' cache needs buildx"),
            "warn",
            "compose would ignore it",
        ),
        (
            CacheSource("type=local,src=/c", "compose file", Status.BACKEND, "local cache"),
            "ok",
            "read by",
        ),
    ],
)
def test_cache_source_verdicts(source: CacheSource, status: str, words: str) -> None:
    check = source_check("app", source)
    assert (check.name, check.status) == ("cache app", status)
    assert words in check.detail


def test_render_shows_remedies_for_problems_and_counts() -> None:
    text = render(
        [
            Check("engine", Verdict.OK, "Docker Engine 27.0", "unused"),
            Check("git", Verdict.WARN, "tree dirty", "commit it"),
            Check("compose", Verdict.FAIL, "missing", "install it"),
        ]
    )
    assert text.splitlines() == [
        "ok    engine   Docker Engine 27.0",
        "warn  git      tree dirty",
        "               fix: commit it",
        "fail  compose  missing",
        "               fix: install it",
        "doctor: 1 ok, 1 warn, 1 fail",
    ]


def test_missing_latest_is_fine_when_another_source_serves() -> None:
    missing = CacheSource("app:latest", "latest", Status.DROPPED, "no such image")
    check = source_check("app", missing, others_serve=True)
    assert (check.status, check.detail) == (
        "ok",
        "app:latest [latest]: no such image (another source serves)",
    )


def test_compose_240_beside_a_buildx_older_than_017_is_one_line_with_the_way_out() -> None:
    assert buildx_version("github.com/docker/buildx v0.13.1 788433953af10f2a") == (0, 13, 1)
    assert buildx_version("github.com/docker/buildx 0.29.1+ds1 1.29.1+ds1") == (0, 29, 1)
    why = buildx_mismatch((0, 13, 1), (2, 40, 3))
    assert why.startswith("docker buildx 0.13.1 is older than 0.17, which compose 2.40.3 needs")
    assert "upgrade buildx to 0.17 or later" in why and "\n" not in why
    assert buildx_mismatch((0, 13, 1), (2, 39, 4)) == ""  # that compose still builds with it
    assert buildx_mismatch((0, 17, 0), (2, 40, 3)) == ""
    assert buildx_mismatch((), (2, 40, 3)) == ""  # no buildx: compose's internal builder


def test_deploy_check_names_what_rolls_and_what_is_recreated() -> None:
    services = {
        "web": {"build": {"context": "."}},
        "api": {"build": {"context": "."}, "ports": [{"target": 80, "published": "8080"}]},
        "proxy": {"image": "nginx", "ports": [{"target": 80, "published": "80"}]},
    }
    check = rollout_check(services)
    assert check.status == "warn"
    assert check.detail == (
        "rolls without downtime: web; recreated when changed: proxy (it publishes host port 80); "
        "recreated on every deploy: api (it publishes host port 8080)"
    )
    assert "proxy in front" in check.remedy
    quiet = rollout_check({"web": services["web"], "proxy": services["proxy"]})
    assert quiet.status == "ok"
