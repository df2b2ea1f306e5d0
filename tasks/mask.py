"""Secret masking on data: values are replaced in structures before anything is printed or saved.

Secret values come from variables whose names look secret (``*_TOKEN``, ``*PASSWORD*``,
``*SECRET*``, ``*_KEY``…) in the env file, the process environment and the resolved compose
project (build args, service environment, top-level secrets), and from the password part of
URLs (``postgres://app:pw@db/x``) in any of their values. Values shorter than ``MIN_LENGTH`` or
equal to a common word are never string-replaced (``API_KEY=a`` must not mask every "a").
Credentials inside URLs are masked wherever they appear. Masking is linear in the text: plain
substring replacement and a forward scan for ``://``, no pattern that can backtrack.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MASK = "******"
MIN_LENGTH = 4
COMMON = frozenset(
    {"true", "false", "yes", "no", "on", "off", "none", "null", "nil", "empty", "test", "example"}
)
# A name looks secret when one of its words is, or ends in, one of these (DB_PASSWORD,
# NPMTOKEN, AWS_SECRET_ACCESS_KEY, PRIVATE_KEY); MONKEY or TOKENIZER_PATH do not.
_SECRET_ENDINGS = ("PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "SECRET")
_SECRET_SUFFIXES = tuple(
    word + plural
    for word in (*_SECRET_ENDINGS, "APIKEY", "ACCESSKEY", "PRIVATEKEY")
    for plural in ("", "S")
)
_SECRET_WORDS = frozenset({"KEY", "PRIVATE", "CREDENTIAL", "CREDENTIALS", "AUTH"})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SCHEME = frozenset(string.ascii_letters + string.digits + "+.-")
SECRET_FILE_LIMIT = 64 * 1024  # a compose secret file larger than this is not read


def is_secret(name: str) -> bool:
    """Whether a variable or build-arg name looks like it holds a secret."""
    words = _CAMEL.sub(r"\1_\2", name).upper().split("_")
    return any(word in _SECRET_WORDS or word.endswith(_SECRET_SUFFIXES) for word in words)


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


def project_secrets(data: Mapping[str, Any], environ: Mapping[str, str]) -> set[str]:
    """The secret values a resolved compose project holds: secret-looking build args and
    environment entries (and URL passwords in any of them), and its top-level secrets' values
    (``environment:`` from ``environ``, ``file:`` when small enough to read)."""
    maps: list[Mapping[str, str]] = []
    for service in (data.get("services") or {}).values():
        for entries in ((service.get("build") or {}).get("args"), service.get("environment")):
            if isinstance(entries, Mapping):
                maps.append({str(k): str(v) for k, v in entries.items() if v is not None})
    found = secret_values(*maps)
    for secret in (data.get("secrets") or {}).values():
        if not isinstance(secret, Mapping):
            continue
        if secret.get("environment"):
            found.add(environ.get(str(secret["environment"]), ""))
        if secret.get("file"):
            found.update(_file_secret(Path(str(secret["file"]))))
    return {value for value in found if maskable(value)}


def _file_secret(path: Path) -> list[str]:
    """A secret file's content and its lines, stripped; nothing for an unreadable or large file."""
    try:
        if not path.is_file() or path.stat().st_size > SECRET_FILE_LIMIT:
            return []
        text = path.read_text(errors="replace").strip()
    except OSError:
        return []
    return [text, *(line.strip() for line in text.splitlines())]


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` masked, in one pass."""
    out: list[str] = []
    done = 0  # text[:done] is in out
    at = text.find("://")
    while at != -1:
        start = at
        while start > done and text[start - 1] in _SCHEME:
            start -= 1
        user_end = _scan(text, at + 3, "/:@")
        if any(c.isalpha() for c in text[start:at]) and text[user_end : user_end + 1] == ":":
            pw_end = _scan(text, user_end + 1, "/@")
            if pw_end > user_end + 1 and text[pw_end : pw_end + 1] == "@":
                out += [text[done : user_end + 1], MASK]
                done = pw_end
                at = text.find("://", pw_end)
                continue
        at = text.find("://", at + 3)
    return "".join([*out, text[done:]])


def _scan(text: str, index: int, stops: str) -> int:
    """The first index from ``index`` on that holds a stop character or white space."""
    while index < len(text) and text[index] not in stops and not text[index].isspace():
        index += 1
    return index


class Masker:
    """Replaces known secret values (longest first) and URL passwords in strings and data."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = sorted({v for v in values if maskable(v)}, key=len, reverse=True)

    def text(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, MASK)
        return mask_url_passwords(text)

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


def add(values: Iterable[str]) -> None:
    """Mask these values too, from now on."""
    global _active
    _active = Masker([*_active.values, *values])


def active() -> Masker:
    """The process's masker: every output path goes through it."""
    return _active
