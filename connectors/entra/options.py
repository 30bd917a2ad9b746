"""The ``[connectors.<name>]`` table of the Entra connector (``kind = "entra"``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connectors._config import ConnectorOptions
from connectors.entra.model import OBJECT_ID
from connectors.entra.policy import CaState

CorrelationAttribute = Literal["employeeId", "userPrincipalName", "mail"]


class EntraOptions(ConnectorOptions):
    """``[connectors.<name>]`` with ``kind = "entra"``."""

    kind: Literal["entra"] = "entra"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    """A secret reference, ``env:NAME`` or ``file:/path``."""
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    correlation_attribute: CorrelationAttribute = "employeeId"
    va_group_id: str | None = None
    """The virtual-assistant group the Conditional Access policy targets."""
    break_glass_ids: list[str] = Field(default_factory=list)
    """Object ids of emergency-access accounts, always excluded from the policy."""
    ca_state: CaState = "report-only"
    ca_policy_name: str = "lifecycle: require MFA for virtual assistants"
    upn_domain: str | None = None
    """Domain for new accounts' userPrincipalName when the worker has no UPN."""
    usage_location: str | None = Field(default=None, min_length=2, max_length=2)
    """Two-letter country code set on new accounts; Graph requires one to assign licences."""
    sign_in_activity: bool = True
    """Read ``signInActivity`` (needs AuditLog.Read.All and Entra ID P1)."""
    session_revocation_delay_seconds: int = Field(default=300, ge=0)
    """How long after revokeSignInSessions Microsoft allows for every session to end."""
    max_concurrency: int = Field(default=8, ge=1, le=64)
    """Graph requests in flight at once (also the executor's limit when set here)."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    batch_retry_attempts: int = Field(default=4, ge=1, le=10)
    """Sends of a ``$batch`` whose items Graph throttled (only those items are re-sent)."""
    batch_retry_initial_seconds: float = Field(default=0.5, ge=0)
    """Wait before re-sending throttled ``$batch`` items that came without Retry-After."""
    inline_retry_after_max_seconds: float = Field(default=10.0, ge=0)
    """A throttled ``$batch`` item's Retry-After up to this is waited for in the connector;
    longer (and every throttled single request) goes back to the executor."""

    @field_validator("va_group_id", "break_glass_ids")
    @classmethod
    def _object_ids(cls, value: str | list[str] | None) -> str | list[str] | None:
        for item in [value] if isinstance(value, str) else value or []:
            if not OBJECT_ID.fullmatch(item):
                raise ValueError(f"{item!r} is not an Entra object id (a GUID)")
        return value

    @field_validator("authority_host", "graph_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (msal and bearer tokens need TLS)")
        return value.rstrip("/")
