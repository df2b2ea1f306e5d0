"""Secrets are masked on data: valid JSON, no garbling of short or common values."""

from __future__ import annotations

import json

from tasks.mask import MASK, Masker, is_secret, secret_values


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
