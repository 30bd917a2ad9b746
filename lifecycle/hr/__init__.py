"""HR intake: verify a source's signature and normalise its body to one ``HrEvent``.

One module per source kind; each exposes ``parse(name, source, body, headers, now) -> HrEvent``
and raises ``SignatureError`` or ``PayloadError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from lifecycle.exceptions import UnknownSourceError
from lifecycle.hr import bamboohr, standardwebhooks
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.settings import HrSettings, HrSourceSettings

__all__ = ["HrEvent", "HrEventType", "parse_event"]

Parser = Callable[[str, HrSourceSettings, bytes, Mapping[str, str], datetime, bool], HrEvent]

PARSERS: Mapping[str, Parser] = {
    "standardwebhooks": standardwebhooks.parse,
    "bamboohr": bamboohr.parse,
}


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
    return PARSERS[settings.kind](source, settings, body, headers, now, allow_inline_secrets)
