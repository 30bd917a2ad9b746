"""HR intake: verify a source's signature and normalise its body to one ``HrEvent``.

One module per source kind; each exposes ``parse(name, source, body, headers, now) -> HrEvent``
and raises ``SignatureError`` or ``PayloadError``, and ``MEDIA_TYPES``, the content types its
sender posts. What holds for every source is checked here first: the body is UTF-8 and of a
content type the source sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from lifecycle.exceptions import (
    MalformedBodyError,
    UnknownSourceError,
    UnsupportedMediaTypeError,
)
from lifecycle.hr import bamboohr, standardwebhooks
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.settings import HrSettings, HrSourceSettings

__all__ = ["HrEvent", "HrEventType", "parse_event"]

Parser = Callable[[str, HrSourceSettings, bytes, Mapping[str, str], datetime, bool], HrEvent]

PARSERS: Mapping[str, Parser] = {
    "standardwebhooks": standardwebhooks.parse,
    "bamboohr": bamboohr.parse,
}
MEDIA_TYPES: Mapping[str, frozenset[str]] = {
    "standardwebhooks": standardwebhooks.MEDIA_TYPES,
    "bamboohr": bamboohr.MEDIA_TYPES,
}


def media_type(headers: Mapping[str, str]) -> str:
    """The bare media type of ``Content-Type`` (no parameters), lower-case; "" when absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("content-type", "").split(";", 1)[0].strip().lower()


def check_body(kind: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Refuse what no source of ``kind`` sends: another content type (415; a request without
    one is read as the source's format), a body that is not UTF-8 (400). Checked before the
    signature, so the answer says what is really wrong."""
    accepted = MEDIA_TYPES[kind]
    if media_type(headers) not in accepted | {""}:
        raise UnsupportedMediaTypeError(
            f"a {kind} source posts {' or '.join(sorted(accepted))}; "
            f"got {media_type(headers) or 'no Content-Type'}"
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc


def parse_event(
    hr: HrSettings,
    source: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    *,
    allow_inline_secrets: bool = False,
) -> HrEvent:
    """Verify and normalise one delivery from ``source``; nothing is stored here."""
    settings = hr.sources.get(source)
    if settings is None:
        raise UnknownSourceError(f"no HR source named {source!r} is configured")
    check_body(settings.kind, body, headers)
    return PARSERS[settings.kind](source, settings, body, headers, now, allow_inline_secrets)
