"""HR intake adapters: verify a source's authenticity exactly as its vendor documents, and turn
one delivery into items (``HrEvent``, ``Ignored``, ``Lookup``) or a ``Handshake``.

One module per source kind (``standardwebhooks``, ``bamboohr``, ``deel``, ``gusto``, ``hibob``,
``rippling``); each exposes ``parse(ctx, body, headers) -> Delivery``, raising
``SignatureError`` or ``PayloadError``; a kind whose decisions need the vendor's API also
exposes ``resolve(ctx, lookup, http)``. Nothing here stores anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

import httpx

from lifecycle.exceptions import UnknownSourceError
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
    "context_for",
    "parse_delivery",
]

Parser = Callable[[Context, bytes, Mapping[str, str]], Delivery]
Resolver = Callable[[Context, Lookup, httpx.AsyncClient], Awaitable[HrEvent | Ignored]]


@dataclass(frozen=True, slots=True)
class SourceKind:
    parse: Parser
    resolve: Resolver | None = None


KINDS: Mapping[str, SourceKind] = {
    "standardwebhooks": SourceKind(standardwebhooks.parse),
    "bamboohr": SourceKind(bamboohr.parse, bamboohr.resolve),
    "deel": SourceKind(deel.parse),
    "gusto": SourceKind(gusto.parse),
    "hibob": SourceKind(hibob.parse),
    "rippling": SourceKind(rippling.parse),
}


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
    return KINDS[ctx.source.kind].parse(ctx, body, headers)
