"""Pieces every HR source adapter uses: header access, signature comparison, the timestamp
window, JSON and form bodies, and dates in the organisation's time zone. No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from urllib.parse import parse_qsl

from pydantic import SecretStr

from lifecycle.exceptions import MalformedBodyError, PayloadError, SignatureError
from lifecycle.secrets import resolve_secret
from lifecycle.settings import HrSourceSettings

MAX_FORM_FIELDS = 2000
MAX_NESTING = 8


@dataclass(frozen=True, slots=True)
class Context:
    """What an adapter is given besides the request: the source's name and settings, the time
    of receipt, whether inline secrets are allowed (demo mode) and the organisation's zone."""

    name: str
    source: HrSourceSettings
    now: datetime
    allow_inline: bool = False
    zone: tzinfo = UTC

    def secret(self) -> SecretStr:
        return resolve_secret(
            self.source.secret,
            allow_inline=self.allow_inline,
            what=f"[hr.sources.{self.name}].secret",
        )


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def content_type(headers: Mapping[str, str]) -> str:
    return lowered(headers).get("content-type", "").split(";", 1)[0].strip().lower()


def hmac_digest(key: SecretStr | str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    raw = key.get_secret_value() if isinstance(key, SecretStr) else key
    raw_bytes = raw if isinstance(raw, bytes) else raw.encode()
    return hmac.new(raw_bytes, message, getattr(hashlib, algorithm)).digest()


def same_hex(expected: bytes, given: str) -> bool:
    """Constant-time comparison of a digest with a hex string (case-insensitive)."""
    try:
        candidate = bytes.fromhex(given.strip())
    except ValueError:
        return False
    return hmac.compare_digest(expected, candidate)


def same_base64(expected: bytes, given: str) -> bool:
    """Constant-time comparison of a digest with a base64 string."""
    try:
        candidate = base64.b64decode(given.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(expected, candidate)


def parse_instant(value: object, what: str) -> datetime:
    """A point in time as vendors send it: Unix seconds (int, float or digits) or ISO 8601
    (``Z``, ``+00:00`` or ``+0000``; a naive value is UTC). Raises PayloadError."""
    if isinstance(value, bool):
        raise PayloadError(f"{what} is not a time")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise PayloadError(f"{what} is out of range") from exc
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise PayloadError(f"{what} is not a time")
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (OverflowError, OSError) as exc:
        raise PayloadError(f"{what} is out of range") from exc
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PayloadError(f"{what} is neither Unix seconds nor ISO 8601") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_window(sent: datetime, ctx: Context, what: str) -> None:
    """A signed delivery time must be within ``tolerance_seconds`` of now (replay bound)."""
    tolerance = ctx.source.tolerance_seconds
    if abs((ctx.now - sent).total_seconds()) > tolerance:
        raise SignatureError(f"{what} is more than {tolerance} s from now (replayed or stale)")


def signed_instant(value: str | None, ctx: Context, what: str) -> datetime:
    """Parse a signed delivery timestamp and check the window; SignatureError otherwise."""
    if not value:
        raise SignatureError(f"{what} is required")
    try:
        sent = parse_instant(value, what)
    except PayloadError as exc:
        raise SignatureError(exc.message) from exc
    check_window(sent, ctx, what)
    return sent


def start_of(value: object, ctx: Context, what: str) -> datetime | None:
    """An effective or termination date: a date-only value is the start of that day in the
    organisation's time zone; a date-time is taken as given. Empty (or BambooHR's
    ``0000-00-00``) is ``None``."""
    if value is None or value == "" or value == "0000-00-00":
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise PayloadError(f"{what} is not a date")
    text = value.strip()
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError as exc:
            raise PayloadError(f"{what} must be YYYY-MM-DD") from exc
        return datetime.combine(day, time.min, ctx.zone).astimezone(UTC)
    return parse_instant(text, what)


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The body as a JSON object; PayloadError says what is wrong."""
    try:
        value = json.loads(body)
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"{what} body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{what} body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        # json.loads recurses once per nesting level; no HR system nests anywhere near this.
        raise MalformedBodyError(f"{what} body is JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise PayloadError(f"{what} body must be a JSON object")
    return value


def form_fields(body: bytes, what: str) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body with PHP-style nested keys
    (``data[changedFields][0]=firstName``) as nested dicts; list indices stay string keys."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"{what} form body is not valid UTF-8") from exc
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError as exc:
        raise PayloadError(f"{what} form body is malformed: {exc}") from exc
    result: dict[str, Any] = {}
    for key, value in pairs:
        path = _key_path(key, what)
        node = result
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PayloadError(f"{what} form key {key!r} conflicts with another")
            node = child
        if isinstance(node.get(path[-1]), dict):
            raise PayloadError(f"{what} form key {key!r} conflicts with another")
        node[path[-1]] = value
    return result


def _key_path(key: str, what: str) -> list[str]:
    head, bracket, rest = key.partition("[")
    parts = [head]
    while bracket:
        inner, closing, rest = rest.partition("]")
        if not closing:
            raise PayloadError(f"{what} form key {key!r} is malformed")
        parts.append(inner)
        head, bracket, rest = rest.partition("[")
        if head:
            raise PayloadError(f"{what} form key {key!r} is malformed")
    if not parts[0] or len(parts) > MAX_NESTING:
        raise PayloadError(f"{what} form key {key!r} is malformed")
    return parts


def as_list(value: object) -> list[Any]:
    """A JSON list, or a form's ``{"0": a, "1": b}`` in index order."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        try:
            return [value[k] for k in sorted(value, key=int)]
        except ValueError as exc:
            raise PayloadError("a list was expected") from exc
    raise PayloadError("a list was expected")


def text_or_none(value: object, limit: int = 320) -> str | None:
    """A short scalar as text (numbers become their digits); anything else is ``None``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text[:limit] if text else None
    return None
