"""Secret references: ``env:NAME`` or ``file:/path``; inline values only in demo mode."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from lifecycle.exceptions import SecretError


def resolve_secret(
    ref: str | SecretStr, *, allow_inline: bool = False, what: str = "secret"
) -> SecretStr:
    """Resolve a secret reference to its value.

    Raises SecretError when the variable or file is missing or empty, or when an inline value is
    given where ``allow_inline`` is false (outside demo mode). The message names the reference,
    never the value.
    """
    raw = ref.get_secret_value() if isinstance(ref, SecretStr) else ref
    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if not value:
            raise SecretError(f"{what}: environment variable {name} is not set or empty")
        return SecretStr(value)
    if raw.startswith("file:"):
        path = Path(raw[5:])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read secret file {path}: {exc.strerror}") from exc
        if not value:
            raise SecretError(f"{what}: secret file {path} is empty")
        return SecretStr(value)
    if not allow_inline:
        raise SecretError(
            f"{what}: inline secrets are refused outside demo mode; use env:NAME or file:PATH"
        )
    if not raw:
        raise SecretError(f"{what}: empty secret")
    return SecretStr(raw)
