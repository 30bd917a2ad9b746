"""Secret references: ``env:NAME`` or ``file:/path``; inline values only in demo mode.

The rules are the connectors' own (``connectors.base.resolve_secret``), applied here to the
service's secrets; only the error is the service's.
"""

from __future__ import annotations

from pydantic import SecretStr

from connectors.base import ConnectorConfigError
from connectors.base import resolve_secret as resolve_reference
from lifecycle.exceptions import SecretError


def resolve_secret(
    ref: str | SecretStr, *, allow_inline: bool = False, what: str = "secret"
) -> SecretStr:
    """Resolve a secret reference to its value.

    Raises SecretError when the variable or file is missing or empty, or when an inline value is
    given where ``allow_inline`` is false (outside demo mode). The message names the reference,
    never the value.
    """
    try:
        return resolve_reference(ref, what=what, allow_inline=allow_inline)
    except ConnectorConfigError as exc:
        raise SecretError(exc.message) from exc.__cause__
