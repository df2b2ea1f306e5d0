"""Secrets are masked on data: valid JSON, no garbling of short or common values."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from compose_tasks.mask import (
    MASK,
    SECRET_FILE_LIMIT,
    Masker,
    is_secret,
    project_secrets,
    secret_values,
)


def test_secret_names() -> None:
    assert all(map(is_secret, ["DB_PASSWORD", "NPMTOKEN", "AWS_SECRET_ACCESS_KEY", "apiKey"]))
    assert not any(map(is_secret, ["MONKEY", "TOKENIZER_PATH", "KEYBOARD", "PORT"]))


def test_values_from_names_and_url_user_info() -> None:
    found = secret_values(
        {"API_TOKEN": "tok-123456", "DATABASE_URL": "postgres://app:s3cr3tpw@db/x", "PORT": "80"}
    )
    assert found == {"tok-123456", "s3cr3tpw"}


def test_short_and_common_values_are_not_replaced() -> None:
    found = secret_values({"API_KEY": "a", "FEATURE_TOKEN": "false", "X_SECRET": "1"})
    assert found == set()
    masker = Masker(found)
    assert masker.text("a banana is false") == "a banana is false"


def test_url_credentials_masked_anywhere() -> None:
    masker = Masker()
    text = masker.text("failed: cannot reach https://bob:pa55word@reg.io/v2/")
    assert text == f"failed: cannot reach https://bob:{MASK}@reg.io/v2/"


def test_data_masking_keeps_json_valid_and_catches_non_ascii() -> None:
    masker = Masker(["pässwörd-ü", "tok-123456"])
    data = {"args": {"TOKEN": "tok-123456"}, "entries": ["x pässwörd-ü y", 3, None, True]}
    masked = masker.data(data)
    text = json.dumps(masked)
    assert json.loads(text) == {
        "args": {"TOKEN": MASK},
        "entries": [f"x {MASK} y", 3, None, True],
    }
    assert "tok-123456" not in text
    assert "p\\u00e4ssw" not in text


def test_secrets_written_in_the_compose_file(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("file-secret-value\n")
    project = {
        "services": {
            "app": {
                "build": {"args": {"DB_PASSWORD": "hunter2hunter2", "PLAIN": "visible", "X": None}},
                "environment": {"API_KEY": "k3y-value-99", "DB_URL": "postgres://u:urlpass99@db/x"},
            }
        },
        "secrets": {"s1": {"file": str(tmp_path / "s.txt")}, "s2": {"environment": "MY_S2"}},
    }
    found = project_secrets(project, {"MY_S2": "env-secret-value"})
    assert found == {
        "hunter2hunter2",
        "k3y-value-99",
        "urlpass99",
        "file-secret-value",
        "env-secret-value",
    }
    text = Masker(found).text(json.dumps(project))
    assert "visible" in text and not any(value in text for value in found)


def test_a_large_secret_file_is_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text("x" * (SECRET_FILE_LIMIT + 1))
    assert project_secrets({"secrets": {"s": {"file": str(big)}}}, {}) == set()
    assert project_secrets({"secrets": {"s": {"file": str(tmp_path / "none")}}}, {}) == set()


@pytest.mark.parametrize(
    "text",
    [
        "a" * 1_000_000,
        "postgres://" + "a" * 1_000_000,
        "x://u:" + "p" * 1_000_000,
        ("x://" + "a" * 10) * 70_000,
        "tok-123456 " * 90_000,
        "a:" * 500_000,
    ],
)
def test_masking_a_megabyte_line_is_linear(text: str) -> None:
    masker = Masker(["tok-123456", "hunter2hunter2"])
    started = time.process_time()
    masked = masker.text(text)
    assert time.process_time() - started < 1.0  # a backtracking pattern takes minutes here
    assert "tok-123456" not in masked


def test_url_passwords_after_many_schemes() -> None:
    masker = Masker()
    text = "a://b ftp://x c://u:p@h/ git+ssh://me:se:cret@h/x http://a@b 1://u:p@h"
    assert masker.text(text) == (
        f"a://b ftp://x c://u:{MASK}@h/ git+ssh://me:{MASK}@h/x http://a@b 1://u:p@h"
    )
