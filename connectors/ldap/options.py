"""The ``[connectors.<name>]`` table of the LDAP connectors (kinds ``ad`` and ``openldap``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator, model_validator

from connectors._config import ConnectorOptions
from connectors.ldap.values import is_attribute_name, normalize_dn

Kind = Literal["ad", "openldap"]

#: Per-kind defaults for options left out of the table.
DEFAULT_CORRELATION = {"ad": "employeeID", "openldap": "employeeNumber"}
DEFAULT_SIGN_IN = {"ad": "lastLogonTimestamp", "openldap": "pwdLastSuccess"}


class LdapOptions(ConnectorOptions):
    """Validated options; see the module docstring of ``connectors.ldap.connector``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    url: str
    """``ldaps://host:636`` (default port by scheme); ``ldap://`` needs start_tls or
    allow_plaintext."""
    bind_dn: str
    bind_password: str
    """A secret reference, ``env:NAME`` or ``file:/path`` (inline only in demo mode)."""
    base_dn: str
    """Where accounts and groups are searched (AD: the domain, e.g. ``DC=example,DC=org``)."""
    user_ou: str | None = None
    """Where create_account puts new accounts; default ``CN=Users,<domain>`` (AD) or
    ``ou=people,<base_dn>`` (OpenLDAP)."""
    group_ou: str | None = None
    """Joiner/mover groups must lie under this DN (default base_dn): a playbook cannot grant
    membership of groups outside it (say, Domain Admins in CN=Users)."""
    correlation_attribute: str | None = None
    """Attribute that holds the worker's identifier; default employeeID (AD) or employeeNumber
    (OpenLDAP); uid or mail work too."""
    correlation_field: Literal["worker_id", "email", "upn"] = "worker_id"
    """Which field of the HR worker is matched against correlation_attribute."""
    last_sign_in_attribute: str | None = None
    """Default lastLogonTimestamp (AD) or pwdLastSuccess (OpenLDAP, slapd ``lastbind``);
    authTimestamp for the lastbind overlay; ``""`` when the directory records no sign-ins."""
    tls_verify: bool = True
    """Certificate validation; turning it off must be written down here explicitly."""
    ca_file: Path | None = None
    """PEM bundle of the CA that issued the server certificate (default: system store)."""
    tls_server_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    """Another name the certificate may carry, for when the URL host is an address or alias
    that the certificate does not list (wildcards refused: ``*`` would disable the check)."""
    start_tls: bool = False
    allow_plaintext: bool = False
    """Permit ``ldap://`` without StartTLS (bind password in clear!). Never for AD."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """Connect and per-response timeout; a server slower than this is a transient error."""
    pool_size: int = Field(default=8, ge=1, le=64)
    """Bound on simultaneous connections (and worker threads) to the directory."""
    max_idle_seconds: float = Field(default=240.0, gt=0, le=3600)
    """Pooled connections idle longer than this are closed rather than reused; keep it below
    the server's idle timeout (AD MaxConnIdleTime: 900 s) and any firewall's."""
    va_group_dn: str | None = None
    """AD: the virtual-assistant group the fine-grained password policy applies to."""
    pso_name: str = "lifecycle-lockout"
    """AD: CN of the fine-grained policy under CN=Password Settings Container."""
    pso_precedence: int = Field(default=10, ge=1)
    manage_domain_policy: bool = True
    """AD: whether apply_policy also sets the domain-wide lockout on the domain root."""
    ppolicy_dn: str | None = None
    """OpenLDAP: the ppolicy entry (default ``cn=default,ou=policies,<base_dn>``)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("must be ldaps://host[:port] or ldap://host[:port]")
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise ValueError("only scheme, host and port are allowed")
        _ = parts.port  # raises ValueError for a bad port
        return value

    @field_validator("bind_dn", "base_dn", "user_ou", "group_ou", "va_group_dn", "ppolicy_dn")
    @classmethod
    def _dn(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                normalize_dn(value)
            except Exception as exc:  # ldap3 raises several unrelated types for bad DNs
                raise ValueError(f"not a distinguished name: {exc}") from None
        return value

    @field_validator("correlation_attribute", "last_sign_in_attribute")
    @classmethod
    def _attribute(cls, value: str | None) -> str | None:
        if value and not is_attribute_name(value):
            raise ValueError("must be an LDAP attribute name (letters, digits, hyphen)")
        return value

    @model_validator(mode="after")
    def _transport(self) -> Self:
        plain = urlsplit(self.url).scheme == "ldap"
        if not plain and self.start_tls:
            raise ValueError("start_tls applies to ldap:// URLs only (ldaps:// is already TLS)")
        if plain and not self.start_tls and not self.allow_plaintext:
            raise ValueError(
                "ldap:// sends the bind password in clear: use ldaps://, set start_tls = true, "
                "or (tests only) allow_plaintext = true"
            )
        if self.kind == "ad" and plain and not self.start_tls:
            raise ValueError("AD password resets need an encrypted connection: use ldaps://")
        if self.kind == "openldap" and (self.va_group_dn or "pso_name" in self.model_fields_set):
            raise ValueError("va_group_dn / pso_name are AD options; OpenLDAP uses ppolicy_dn")
        if self.kind == "ad" and self.ppolicy_dn:
            raise ValueError("ppolicy_dn is an OpenLDAP option; AD uses va_group_dn")
        return self

    @property
    def use_ssl(self) -> bool:
        return urlsplit(self.url).scheme == "ldaps"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (636 if self.use_ssl else 389)

    @property
    def correlation(self) -> str:
        return self.correlation_attribute or DEFAULT_CORRELATION[self.kind]

    @property
    def sign_in_attribute(self) -> str | None:
        if self.last_sign_in_attribute is None:
            return DEFAULT_SIGN_IN[self.kind]
        return self.last_sign_in_attribute or None

    @property
    def domain_dn(self) -> str:
        """The DC= components of base_dn: the AD domain root (policy lives there)."""
        from ldap3.utils.dn import parse_dn

        parts = parse_dn(self.base_dn, escape=False, strip=True)
        dcs = [f"DC={value}" for attr, value, _ in parts if attr.casefold() == "dc"]
        return ",".join(dcs) or self.base_dn

    @property
    def membership_base(self) -> str:
        """Where group memberships are searched: the whole AD domain even when base_dn is an
        OU, so that a termination removes memberships of groups kept elsewhere too."""
        return self.domain_dn if self.kind == "ad" else self.base_dn

    @property
    def accounts_ou(self) -> str:
        if self.user_ou:
            return self.user_ou
        return f"CN=Users,{self.domain_dn}" if self.kind == "ad" else f"ou=people,{self.base_dn}"

    @property
    def groups_ou(self) -> str:
        return self.group_ou or self.base_dn

    @property
    def policy_dn(self) -> str:
        return self.ppolicy_dn or f"cn=default,ou=policies,{self.base_dn}"
