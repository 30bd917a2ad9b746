"""Every response the acceptance suite sees is one the OpenAPI document declares.

The suite's HTTP calls go through httpx (``Service.get``, ``httpx.post`` ...); a session fixture
(``conftest.py``) wraps ``httpx.Client.send`` to note, for each response from a lifecycle
service, the method, path, status and content type (and ``Allow`` on a 405); the fuzz test adds
what schemathesis sent. At the end of the session each one is looked up in ``app.openapi()``:
its route template and method, the status, and the media type under that status. Error answers
must be ``application/problem+json``; a 405 must carry ``Allow``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PORTS: set[int] = set()
"""Ports of the lifecycle services the suite started (other servers are not checked)."""


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    status: int
    content_type: str
    allow: str | None = None


SEEN: set[Seen] = set()


def note(method: str, path: str, status: int, content_type: str, allow: str | None) -> None:
    media = content_type.split(";", 1)[0].strip().lower()
    SEEN.add(Seen(method.upper(), path, status, media, allow))


def _templates(document: dict[str, Any]) -> list[tuple[re.Pattern[str], str]]:
    found = []
    for template in document["paths"]:
        pattern = re.escape(template)
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
        found.append((re.compile(f"^{pattern}$"), template))
    # Literal routes before templated ones (/v1/hr/events before /v1/hr/{source}/events).
    found.sort(key=lambda item: item[1].count("{"))
    return found


def undeclared(document: dict[str, Any], seen: set[Seen]) -> list[str]:
    """What was seen but is not in the document (empty: the document tells the truth)."""
    templates = _templates(document)
    problems: list[str] = []
    for s in sorted(seen, key=lambda s: (s.path, s.method, s.status)):
        template = next((t for p, t in templates if p.match(s.path)), None)
        own_json = s.path == "/readyz" and s.status == 503  # its report, not a problem
        if s.status >= 400 and s.content_type != "application/problem+json" and not own_json:
            problems.append(f"{s.method} {s.path} -> {s.status} as {s.content_type}")
        if s.status == 405 and not s.allow:
            problems.append(f"{s.method} {s.path} -> 405 without Allow")
        if template is None or s.method.lower() not in document["paths"][template]:
            continue  # no such route (404) or method (405): checked above
        responses = document["paths"][template][s.method.lower()]["responses"]
        declared = responses.get(str(s.status)) or responses.get("default")
        where = f"{s.method} {template} -> {s.status}"
        if declared is None:
            problems.append(f"{where}: status not declared")
            continue
        media = set(declared.get("content", {}))
        if media and s.content_type not in media:
            problems.append(f"{where}: {s.content_type} not declared ({', '.join(sorted(media))})")
    return problems


def document_of(workdir: Path, config: str) -> dict[str, Any]:
    """The OpenAPI document of a service built on ``config`` (in-process, not started)."""
    from lifecycle.service import Service
    from lifecycle.settings import load_settings
    from lifecycle.web import create_app

    path = workdir / "lifecycle.toml"
    path.write_text(config)
    service = Service.build(load_settings(path))
    try:
        document: dict[str, Any] = create_app(service, background=False).openapi()
    finally:
        service.store.dispose()
    return document
