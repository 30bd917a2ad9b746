"""HR intake adapters: verify a source's authenticity exactly as its vendor documents, and turn
one delivery into items (``HrEvent``, ``Ignored``, ``Lookup``) or a ``Handshake``.

One module per source kind (``standardwebhooks``, ``bamboohr``, ``deel``, ``gusto``, ``hibob``,
``rippling``); each exposes ``parse(ctx, body, headers) -> Delivery``, raising
``SignatureError`` or ``PayloadError``, and ``MEDIA_TYPES``, the content types its sender
posts; a kind whose decisions need the vendor's API also exposes ``resolve(ctx, lookup,
http)``. What holds for every source is checked here first: the body is UTF-8 and of a content
type the source sends. Nothing here stores anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import httpx

from lifecycle.exceptions import MalformedBodyError, UnknownSourceError, UnsupportedMediaTypeError
from lifecycle.hr import bamboohr, deel, gusto, hibob, rippling, standardwebhooks
from lifecycle.hr.common import Context
from lifecycle.hr.event import (
    Delivery,
    Handshake,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    Lookup,
)
from lifecycle.settings import HrSettings

__all__ = [
    "KINDS",
    "Context",
    "Delivery",
    "Handshake",
    "HrEvent",
    "HrEventType",
    "Ignored",
    "Item",
    "Lookup",
    "SourceKind",
    "check_body",
    "context_for",
    "media_type",
    "parse_delivery",
]

Parser = Callable[[Context, bytes, Mapping[str, str]], Delivery]
Resolver = Callable[[Context, Lookup, httpx.AsyncClient], Awaitable[HrEvent | Ignored]]


@dataclass(frozen=True, slots=True)
class SourceKind:
    parse: Parser
    media_types: frozenset[str]
    resolve: Resolver | None = None


KINDS: Mapping[str, SourceKind] = {
    "standardwebhooks": SourceKind(standardwebhooks.parse, standardwebhooks.MEDIA_TYPES),
    "bamboohr": SourceKind(bamboohr.parse, bamboohr.MEDIA_TYPES, bamboohr.resolve),
    "deel": SourceKind(deel.parse, deel.MEDIA_TYPES),
    "gusto": SourceKind(gusto.parse, gusto.MEDIA_TYPES),
    "hibob": SourceKind(hibob.parse, hibob.MEDIA_TYPES),
    "rippling": SourceKind(rippling.parse, rippling.MEDIA_TYPES),
}


def media_type(headers: Mapping[str, str]) -> str:
    """The bare media type of ``Content-Type`` (no parameters), lower-case; "" when absent."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("content-type", "").split(";", 1)[0].strip().lower()


def check_body(kind: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Refuse what no source of ``kind`` sends: another content type (415; a request without
    one is read as the source's format), a body that is not UTF-8 (400). Checked before the
    signature, so the answer says what is really wrong."""
    accepted = KINDS[kind].media_types
    if media_type(headers) not in accepted | {""}:
        raise UnsupportedMediaTypeError(
            f"a {kind} source posts {' or '.join(sorted(accepted))}; "
            f"got {media_type(headers) or 'no Content-Type'}"
        )
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc


def context_for(
    hr: HrSettings,
    source: str,
    now: datetime,
    *,
    allow_inline_secrets: bool = False,
    zone: tzinfo = UTC,
) -> Context:
    settings = hr.sources.get(source)
    if settings is None:
        raise UnknownSourceError(f"no HR source named {source!r} is configured")
    return Context(source, settings, now, allow_inline_secrets, zone)


def parse_delivery(
    hr: HrSettings,
    source: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    *,
    allow_inline_secrets: bool = False,
    zone: tzinfo = UTC,
) -> Delivery:
    """Verify and parse one delivery from ``source``; nothing is stored here."""
    ctx = context_for(hr, source, now, allow_inline_secrets=allow_inline_secrets, zone=zone)
    check_body(ctx.source.kind, body, headers)
    return KINDS[ctx.source.kind].parse(ctx, body, headers)
