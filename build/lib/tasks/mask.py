"""Secret masking on data: values are replaced in structures before anything is printed or saved.

Secret values come from variables whose names look secret (``*_TOKEN``, ``*PASSWORD*``,
``*SECRET*``, ``*_KEY``…) in the env file and the process environment, and from the password
part of URLs (``postgres://app:pw@db/x``) in any of their values. Values shorter than
``MIN_LENGTH`` or equal to a common word are never string-replaced (``API_KEY=a`` must not mask
every "a"). Credentials inside URLs are masked wherever they appear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "******"
MIN_LENGTH = 4
COMMON = frozenset(
    {"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "empty", "test", "example"}
)
# A name looks secret when one of its words is, or ends in, one of these (DB_PASSWORD,
# NPMTOKEN, AWS_SECRET_ACCESS_KEY, PRIVATE_KEY); MONKEY or TOKENIZER_PATH do not.
_SECRET_NAME = re.compile(
    r"(?:^|_)[A-Z0-9]*(?:PASSWORD|PASSWD|PASSPHRASE|TOKEN|SECRET|APIKEY|ACCESSKEY|PRIVATEKEY)S?"
    r"(?:_|$)|(?:^|_)(?:KEY|PRIVATE|CREDENTIALS?|AUTH)(?:_|$)"
)
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<pw>[^@\s/]+)@")


def is_secret(name: str) -> bool:
    """Whether a variable or build-arg name looks like it holds a secret."""
    return bool(_SECRET_NAME.search(re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).upper()))


def maskable(value: str) -> bool:
    """Whether a value is distinctive enough to be replaced wherever it appears."""
    return len(value) >= MIN_LENGTH and value.strip().lower() not in COMMON


def url_password(value: str) -> str:
    """The password in a URL's user-info, or ''."""
    if "://" not in value or "@" not in value:
        return ""
    try:
        return urlsplit(value.strip()).password or ""
    except ValueError:
        return ""


def secret_values(*sources: Mapping[str, str]) -> set[str]:
    """Every secret value in these variable maps."""
    found: set[str] = set()
    for variables in sources:
        for name, value in variables.items():
            if not value:
                continue
            if is_secret(name):
                found.add(value)
            password = url_password(value)
            if password:
                found.add(password)
    return {value for value in found if maskable(value)}


class Masker:
    """Replaces known secret values (longest first) and URL passwords in strings and data."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = sorted({v for v in values if maskable(v)}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return _URL_CREDENTIALS.sub(lambda m: m["head"] + MASK + "@", text)

    def data(self, value: Any) -> Any:
        """A copy of ``value`` with every string in it masked (dict keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.data(item) for item in value]
        return value


_active = Masker(secret_values(os.environ))


def use(*sources: Mapping[str, str]) -> None:
    """Mask the secrets of these variable maps (and the environment's) from now on."""
    global _active
    _active = Masker(secret_values(os.environ, *sources))


def active() -> Masker:
    """The process's masker: every output path goes through it."""
    return _active
