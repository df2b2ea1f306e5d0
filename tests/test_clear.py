"""Pure parts of clear-caches: sizes and base-image discovery (no engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import UserError
from tasks.pipeline import base_images
from tasks.sizes import human, parse_size
from tests.support import plan_for, project


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("10GB", 10 * 1000**3), ("1GiB", 1024**3), ("2m", 2 * 1000**2), ("1.5kB", 1500)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "10i", "1e9", "-5GB", "9" * 40, "10 GiBs", ""])
def test_parse_size_rejects_nonsense(text: str) -> None:
    with pytest.raises(UserError, match="invalid size"):
        parse_size(text)


def test_human() -> None:
    assert (human(999), human(1500), human(2_500_000)) == ("999B", "1.5kB", "2.5MB")


def test_base_images_skip_stages_and_scratch(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM --platform=linux/amd64 node:20 AS build\nRUN x\nFROM build AS test\n"
        "FROM scratch\nFROM nginx:1.27\nCOPY --from=build /a /b\n"
    )
    plan = plan_for(project(web={"build": {"context": str(tmp_path)}}), tmp_path)
    assert base_images(plan) == ["node:20", "nginx:1.27"]
